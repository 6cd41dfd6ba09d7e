//! End-to-end serving benchmark: samples/s per subset kind at 256 and 512 px through
//! real gRPC on loopback, the share of time per pipeline stage, the daemon's RSS at
//! 1 and 16 streams, and serving samples/s with and without a reshard job running
//! (through the Admin service). Run with `cargo bench --bench serve`, or only the last
//! part with `cargo bench --bench serve -- reshard`; the dataset (Pico-Banana's sizes:
//! ~1024x768 JPEG sources, ~1 MP PNG edits) is generated once under
//! `target/bench-data/`.

#[path = "support/daemon.rs"]
mod daemon;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use editfeed::config::ServeConfig;
use editfeed::dataset::synth::{synth_sample, SynthOptions};
use editfeed::dataset::writer::{DatasetWriter, ShardTarget, WriteOptions};
use editfeed::pipeline::timing;
use editfeed::plan::{Phase, StreamSpec};
use editfeed::transport::proto::v1 as pb;

const SAMPLES: u64 = 60;

fn dataset() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/serve-60");
    if dir.join("manifest.json").exists() {
        return dir;
    }
    let opts = SynthOptions {
        samples: SAMPLES,
        ..Default::default()
    };
    let mut w = DatasetWriter::create(
        &dir,
        WriteOptions {
            target: ShardTarget::Samples(16),
            level: 3,
            compress_literals: false,
            overwrite: true,
        },
    )
    .unwrap();
    for (subset, n) in opts.split() {
        for i in 0..n {
            w.add(&synth_sample(&opts, subset, i)).unwrap();
        }
    }
    w.finish().unwrap();
    dir
}

fn request(subset: &str, size: u32, batches: u64, seed: u64) -> pb::StreamRequest {
    let mut spec = StreamSpec::new(seed, 8);
    spec.curriculum = vec![Phase {
        until_step: None,
        weights: [(subset.to_string(), 1.0)].into_iter().collect(),
        ramp_steps: 0,
    }];
    pb::StreamRequest {
        dataset: "bench".into(),
        spec: Some(editfeed::transport::convert::spec_to_wire(&spec)),
        rank: 0,
        world_size: 1,
        cursor: String::new(),
        output: Some(pb::OutputSpec {
            width: size,
            height: 0,
            format: 1,
            buckets: vec![],
            ..Default::default()
        }),
        augment: None,
        max_batches: batches,
        job: String::new(),
        shm_probe: String::new(),
        ..Default::default()
    }
}

async fn drain(endpoint: &str, req: pb::StreamRequest) -> (u64, f64) {
    let mut client = editfeed::transport::client::connect(endpoint)
        .await
        .unwrap();
    let mut stream = client.stream(req).await.unwrap().into_inner();
    let mut samples = 0;
    // The clock starts at the first batch, so plan building and the pipeline's warm-up
    // are not counted.
    let first = stream.message().await.unwrap().unwrap();
    let started = Instant::now();
    let _ = first;
    while let Some(b) = stream.message().await.unwrap() {
        samples += b.samples.len() as u64;
    }
    (samples, started.elapsed().as_secs_f64())
}

async fn daemon_rss(data: &Path) -> Vec<(usize, u64, u64)> {
    let mut out = Vec::new();
    let location = format!("bench={}", data.display());
    for streams in [1usize, 16] {
        let d = daemon::Daemon::start(&["--dataset", &location]).await;
        let tasks: Vec<_> = (0..streams)
            .map(|i| {
                let endpoint = d.endpoint.clone();
                tokio::spawn(
                    async move { drain(&endpoint, request("sft", 512, 12, i as u64)).await },
                )
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        out.push((streams, d.kib("VmHWM:"), d.kib("VmRSS:")));
    }
    out
}

/// Runs reshard jobs of the bench dataset back to back (each finished one is replaced
/// by the next) until stopped; counts the samples they write.
struct Feeder {
    stop: Arc<AtomicBool>,
    samples: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Feeder {
    fn start(admin: &str, out: &Path, priority: pb::ReshardPriority) -> Feeder {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(AtomicU64::new(0));
        let (admin, out) = (admin.to_string(), out.to_path_buf());
        let (st, sa) = (stop.clone(), samples.clone());
        let task = tokio::spawn(async move {
            let mut c = editfeed::transport::client::connect_admin(&admin)
                .await
                .unwrap();
            let mut n = 0;
            while !st.load(Ordering::Relaxed) {
                n += 1;
                let dest = out.join(format!("{}-{n}", priority.as_str_name()));
                let req = pb::ReshardRequest {
                    dataset: "bench".into(),
                    shard_samples: 8,
                    destination: dest.display().to_string(),
                    priority: priority as i32,
                    ..Default::default()
                };
                let job_id = c.reshard(req).await.unwrap().into_inner().job_id;
                let get = pb::GetJobRequest { job_id };
                let mut counted = 0;
                loop {
                    let job = c.get_job(get.clone()).await.unwrap().into_inner();
                    sa.fetch_add(job.samples_done - counted, Ordering::Relaxed);
                    counted = job.samples_done;
                    if !matches!(job.state(), pb::JobState::Queued | pb::JobState::Running) {
                        break;
                    }
                    if st.load(Ordering::Relaxed) {
                        let _ = c.cancel_job(get.clone()).await;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let _ = std::fs::remove_dir_all(&dest);
            }
        });
        Feeder {
            stop,
            samples,
            task,
        }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
    }
}

/// Serving samples/s with no reshard, and while reshard jobs (zstd level 3, one reshard
/// thread) run at each priority. The cases alternate run by run, so load from elsewhere
/// on the machine falls on all of them alike; medians of 5.
async fn serving_during_reshard(endpoint: &str, admin: &str, workers: usize) {
    use pb::ReshardPriority as P;
    let out = tempfile_dir();
    let cases = [None, Some(P::Idle), Some(P::Low), Some(P::Normal)];
    let mut rates = vec![Vec::new(); cases.len()];
    let mut reshard = vec![Vec::new(); cases.len()];
    for run in 0..5u64 {
        for (i, case) in cases.iter().enumerate() {
            let feeder = case.map(|p| Feeder::start(admin, &out, p));
            // Let the job get going before the clock starts.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let before = feeder
                .as_ref()
                .map_or(0, |f| f.samples.load(Ordering::Relaxed));
            let (n, secs) = drain(endpoint, request("sft", 256, 32, 100 + run)).await;
            let written = feeder
                .as_ref()
                .map_or(0, |f| f.samples.load(Ordering::Relaxed))
                - before;
            if let Some(f) = feeder {
                f.stop().await;
            }
            rates[i].push(n as f64 / secs);
            reshard[i].push(written as f64 / secs);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!();
    println!(
        "serving during a reshard: sft at 256 px, 1 stream, {workers} workers, reshard_threads 1"
    );
    println!(
        "{:<22} {:>17} {:>9} {:>19}",
        "reshard running", "serving samples/s", "slowdown", "reshard samples/s"
    );
    let base = median(&mut rates[0]);
    for (i, case) in cases.iter().enumerate() {
        let rate = median(&mut rates[i]);
        let Some(p) = case else {
            println!("{:<22} {rate:>17.1} {:>9} {:>19}", "none", "-", "-");
            continue;
        };
        let name = p.as_str_name().trim_start_matches("RESHARD_PRIORITY_");
        println!(
            "{:<22} {rate:>17.1} {:>8.1}% {:>19.1}",
            format!("yes, {} priority", name.to_ascii_lowercase()),
            (1.0 - rate / base) * 100.0,
            median(&mut reshard[i])
        );
    }
    println!("(zstd level 3, shards of 8 samples; medians of 5 alternating runs of 31 timed batches of 8)");
    let _ = std::fs::remove_dir_all(&out);
}

fn tempfile_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/reshard-out");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn main() {
    let only_reshard = std::env::args().any(|a| a == "reshard");
    let data = dataset();
    let rt = daemon::runtime();
    rt.block_on(async {
        let mut config = ServeConfig { listen: "127.0.0.1:0".into(), ..Default::default() };
        config.datasets.insert("bench".into(), data.display().to_string());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = editfeed::server::ServerState::new(config).unwrap();
        let workers = state.pool.workers();
        let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = format!("http://{}", admin_listener.local_addr().unwrap());
        tokio::spawn(editfeed::server::admin::serve_admin(admin_listener, state.clone(), std::future::pending()));
        tokio::spawn(editfeed::server::serve(listener, state, std::future::pending()));
        if only_reshard {
            serving_during_reshard(&endpoint, &admin, workers).await;
            return;
        }
        println!("dataset {} ({SAMPLES} samples at Pico-Banana sizes), {workers} workers, batch 8, 1 stream", data.display());
        println!("{:<11} {:>5} {:>10} {:>8} {:>8} {:>9} {:>8} {:>8}", "subset", "px", "samples/s", "MB/s", "read", "dec+aug", "collate", "send");
        for subset in ["sft", "preference", "multi_turn"] {
            for size in [256u32, 512] {
                let mut rates = Vec::new();
                let mut shares = [0.0f64; 4];
                let mut mbs = Vec::new();
                for run in 0..3 {
                    timing::reset();
                    let (n, secs) = drain(&endpoint, request(subset, size, 12, run)).await;
                    let t = timing::snapshot();
                    let total: f64 = t.iter().sum();
                    for i in 0..4 {
                        shares[i] += t[i] / total.max(1e-9) / 3.0;
                    }
                    let per_sample = match subset {
                        "sft" => 2,
                        "preference" => 3,
                        _ => 6,
                    } as f64;
                    rates.push(n as f64 / secs);
                    mbs.push(n as f64 * per_sample * (size * size * 3) as f64 / 1e6 / secs);
                }
                rates.sort_by(f64::total_cmp);
                mbs.sort_by(f64::total_cmp);
                println!(
                    "{subset:<11} {size:>5} {:>10.1} {:>8.1} {:>7.0}% {:>8.0}% {:>7.0}% {:>7.0}%",
                    rates[1],
                    mbs[1],
                    shares[0] * 100.0,
                    shares[1] * 100.0,
                    shares[2] * 100.0,
                    shares[3] * 100.0
                );
            }
        }
        println!("(medians of 3 runs of 11 timed batches; stage shares are of worker and send time summed)");
        for (streams, hwm, rss) in daemon_rss(&data).await {
            println!("daemon RSS with {streams:>2} streams of 512 px sft: peak {} MiB, now {} MiB", hwm / 1024, rss / 1024);
        }
        serving_during_reshard(&endpoint, &admin, workers).await;
    });
}
