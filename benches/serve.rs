//! End-to-end serving benchmark: samples/s per subset kind at 256 and 512 px through
//! real gRPC on loopback, the share of time per pipeline stage, and the daemon's RSS at
//! 1 and 16 streams. Run with `cargo bench --bench serve`; the dataset (Pico-Banana's
//! sizes: ~1024x768 JPEG sources, ~1 MP PNG edits) is generated once under
//! `target/bench-data/`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use editfeed::config::ServeConfig;
use editfeed::dataset::synth::{synth_sample, SynthOptions};
use editfeed::dataset::writer::{DatasetWriter, ShardTarget, WriteOptions};
use editfeed::pipeline::timing;
use editfeed::plan::{Phase, StreamSpec};
use editfeed::proto::v1 as pb;

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
        spec: Some(editfeed::convert::spec_to_wire(&spec)),
        rank: 0,
        world_size: 1,
        cursor: String::new(),
        output: Some(pb::OutputSpec {
            width: size,
            height: 0,
            format: 1,
            buckets: vec![],
        }),
        augment: None,
        max_batches: batches,
        job: String::new(),
    }
}

async fn drain(endpoint: &str, req: pb::StreamRequest) -> (u64, f64) {
    let mut client = editfeed::client::connect(endpoint).await.unwrap();
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

fn rss_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn daemon_rss(data: &Path) -> Vec<(usize, u64, u64)> {
    let mut out = Vec::new();
    for streams in [1usize, 16] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_editfeed"))
            .args([
                "serve",
                "--listen",
                &addr.to_string(),
                "--dataset",
                &format!("bench={}", data.display()),
            ])
            .env("EDITFEED_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let endpoint = format!("http://{addr}");
        for _ in 0..100 {
            if editfeed::client::connect(&endpoint).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let tasks: Vec<_> = (0..streams)
            .map(|i| {
                let endpoint = endpoint.clone();
                tokio::spawn(
                    async move { drain(&endpoint, request("sft", 512, 12, i as u64)).await },
                )
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        out.push((
            streams,
            rss_kib(child.id(), "VmHWM:"),
            rss_kib(child.id(), "VmRSS:"),
        ));
        let _ = child.kill();
        let _ = child.wait();
    }
    out
}

fn main() {
    let data = dataset();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut config = ServeConfig { listen: "127.0.0.1:0".into(), ..Default::default() };
        config.datasets.insert("bench".into(), data.display().to_string());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = editfeed::server::ServerState::new(config).unwrap();
        let workers = state.pool.workers();
        tokio::spawn(editfeed::server::serve(listener, state, std::future::pending()));
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
    });
}
