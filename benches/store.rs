//! Store benchmark: samples/s served through real gRPC on loopback from a dataset on
//! local disk and from the same dataset in S3 behind a proxy that adds 50 ms to every
//! request, side by side with the same stream spec: with the default read-ahead, with
//! read-ahead off and with the disk cache. Two S3 servers on loopback: s3s-fs (Rust,
//! reads only the requested range) and moto (Python, reads the whole object for every
//! range request). Run with `cargo bench --bench store` (needs moto, which
//! `scripts/test.sh` installs into `.venv`, and s3s-fs: `scripts/install-s3s-fs.sh`). The dataset (48 samples at Pico-Banana's sizes) is generated once under
//! `target/bench-data/`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/daemon.rs"]
mod daemon;
#[path = "../tests/support/s3.rs"]
mod s3;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use editfeed::dataset::manifest::MANIFEST_FILE;
use editfeed::dataset::synth::{synth_sample, SynthOptions};
use editfeed::dataset::writer::{DatasetWriter, ShardTarget, WriteOptions};
use editfeed::dataset::Dataset;
use editfeed::server::registry::ServedDataset;
use editfeed::store::{Location, Store, StoreConfig};

const SAMPLES: u64 = 48;
/// Batches per run; the first is not timed (plan building, index loads, warm-up).
const BATCHES: u64 = 31;
const LATENCY_MS: u64 = 50;
const RUNS: u64 = 3;

/// The dataset in two shard layouts (the same samples, so the same batches): 8 samples
/// per shard, and one per shard. moto reads a whole object for every range request
/// (S3 does not), so with 8 samples per shard moto's CPU, on the same two cores as the
/// decode workers, is what the S3 runs measure; one sample per shard takes that away.
fn datasets() -> [PathBuf; 2] {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    let dirs = [base.join("store-48-by-8"), base.join("store-48-by-1")];
    if dirs.iter().all(|d| d.join(MANIFEST_FILE).exists()) {
        return dirs;
    }
    let opts = SynthOptions {
        samples: SAMPLES,
        ..Default::default()
    };
    let mut writers: Vec<DatasetWriter> = dirs
        .iter()
        .zip([8, 1])
        .map(|(d, n)| {
            DatasetWriter::create(
                d,
                WriteOptions {
                    target: ShardTarget::Samples(n),
                    level: 3,
                    compress_literals: false,
                    overwrite: true,
                },
            )
            .unwrap()
        })
        .collect();
    for (subset, n) in opts.split() {
        for i in 0..n {
            let s = synth_sample(&opts, subset, i);
            for w in &mut writers {
                w.add(&s).unwrap();
            }
        }
    }
    for w in writers {
        w.finish().unwrap();
    }
    dirs
}

/// Uploads a local dataset with the store's own puts: shards and indexes, then the
/// manifest last.
fn upload(dir: &std::path::Path, url: &str) -> u64 {
    let local = Dataset::open(dir).unwrap();
    let Location::Remote(u) = Location::parse(url).unwrap() else {
        unreachable!("an s3 url")
    };
    let store = Store::open(&Location::Remote(u), &s3::s3_config()).unwrap();
    let mut bytes = 0;
    for subset in local.subsets() {
        for shard in local.shards(subset).unwrap() {
            for name in std::iter::once(&shard.path).chain(shard.index.iter()) {
                let b = std::fs::read(dir.join(name)).unwrap();
                bytes += b.len() as u64;
                store.put(name, Bytes::from(b)).unwrap();
            }
        }
    }
    store
        .put(
            MANIFEST_FILE,
            Bytes::from(std::fs::read(dir.join(MANIFEST_FILE)).unwrap()),
        )
        .unwrap();
    bytes
}

/// Streams one request; samples/s from the first batch on, and the time to it.
async fn run(endpoint: &str, dataset: &str, seed: u64) -> (f64, f64) {
    let started = Instant::now();
    let mut client = editfeed::transport::client::connect(endpoint)
        .await
        .unwrap();
    let req = common::request(dataset, seed, 8, 1, 0, 256, BATCHES);
    let mut stream = client.stream(req).await.unwrap().into_inner();
    let _first = stream.message().await.unwrap().unwrap();
    let first = started.elapsed().as_secs_f64();
    let clock = Instant::now();
    let mut samples = 0u64;
    while let Some(b) = stream.message().await.unwrap() {
        samples += b.samples.len() as u64;
    }
    (samples as f64 / clock.elapsed().as_secs_f64(), first)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One measured source: its name, the local source it is compared with, and the S3
/// server behind it (for that server's CPU use).
type Variant<'a> = (&'a str, &'a str, Option<&'a s3::S3Server>);

/// One side-by-side comparison: every variant streamed `RUNS` times, interleaved, on a
/// daemon with `workers`. `datasets` are (name, location, store config when not the
/// default).
async fn compare(
    datasets: &[(&str, &str, Option<StoreConfig>)],
    workers: usize,
    variants: &[Variant<'_>],
) {
    let plain: Vec<(&str, &str)> = datasets
        .iter()
        .filter(|(_, _, c)| c.is_none())
        .map(|(n, l, _)| (*n, *l))
        .collect();
    let server = common::TestServer::start_locations(&plain, workers, 2).await;
    for (name, location, cfg) in datasets {
        if let Some(cfg) = cfg {
            let ds = ServedDataset::open_with(name, location, cfg).unwrap();
            server.state.registry.insert(ds);
        }
    }
    let n = variants.len();
    let (mut rates, mut firsts) = (vec![Vec::new(); n], vec![Vec::new(); n]);
    let (mut server_cpu, mut read_ms) = (vec![Vec::new(); n], vec![Vec::new(); n]);
    let cpu_of = |s: Option<&s3::S3Server>| s.and_then(|s| s.cpu_seconds()).unwrap_or(0.0);
    for r in 0..RUNS {
        for (i, (name, _, s3)) in variants.iter().enumerate() {
            let cpu = cpu_of(*s3);
            editfeed::pipeline::timing::reset();
            let (rate, first) = run(&server.endpoint, name, 100 + r).await;
            // Worker time in the read stage (waiting for read-ahead, or reading, plus
            // the frame's zstd decode), per sample of the run.
            let read = editfeed::pipeline::timing::snapshot()[0];
            read_ms[i].push(read * 1e3 / (BATCHES * 8) as f64);
            rates[i].push(rate);
            firsts[i].push(first);
            server_cpu[i].push(cpu_of(*s3) - cpu);
        }
    }
    println!(
        "\n{workers} worker(s):\n{:<24} {:>10} {:>17} {:>9} {:>12} {:>16} {:>12}",
        "source", "samples/s", "runs", "vs local", "read ms/smp", "server cpu s/run", "first batch"
    );
    for (i, (name, base, _)) in variants.iter().enumerate() {
        let m = median(rates[i].clone());
        let b = variants.iter().position(|(n, ..)| n == base).unwrap();
        let runs: Vec<String> = rates[i].iter().map(|r| format!("{r:.1}")).collect();
        println!(
            "{name:<24} {m:>10.1} {:>17} {:>8.2}x {:>12.1} {:>16.2} {:>11.2}s",
            runs.join("/"),
            m / median(rates[b].clone()),
            median(read_ms[i].clone()),
            median(server_cpu[i].clone()),
            median(firsts[i].clone())
        );
    }
    for (name, ..) in variants.iter().filter(|(_, _, s3)| s3.is_some()) {
        let st = server
            .state
            .registry
            .get(name)
            .unwrap()
            .dataset
            .store()
            .stats();
        println!(
            "  {name}: {} requests, {} retries, {:.0} MB read, {} cache hits",
            st.requests,
            st.retries,
            st.bytes_read as f64 / 1e6,
            st.cache_hits
        );
    }
    server.stop().await;
}

/// Uploads both layouts to a new bucket on `server`; the bucket's name and the bytes of
/// one layout.
fn upload_both(server: &s3::S3Server, by8: &Path, by1: &Path) -> (String, u64) {
    let bucket = server.bucket("bench");
    let mut bytes = 0;
    for (dir, prefix) in [(by8, "by8"), (by1, "by1")] {
        bytes = upload(dir, &s3::s3_url(&bucket, prefix, &server.endpoint));
    }
    (bucket, bytes)
}

fn main() {
    let [by8, by1] = datasets();
    let moto = s3::moto();
    let Some(s3s) = s3::s3s_fs() else {
        panic!("the store benchmark needs s3s-fs: run scripts/install-s3s-fs.sh");
    };
    let (moto_bucket, bytes) = upload_both(moto, &by8, &by1);
    let (s3s_bucket, _) = upload_both(s3s, &by8, &by1);
    // One latency proxy per server, each adding LATENCY_MS to every request.
    let proxies = [s3::Proxy::start(moto.addr), s3::Proxy::start(s3s.addr)];
    for p in &proxies {
        p.faults.delay_ms.store(LATENCY_MS, Ordering::Relaxed);
    }
    let moto_url = |prefix: &str| s3::s3_url(&moto_bucket, prefix, &proxies[0].endpoint);
    let s3s_url = |prefix: &str| s3::s3_url(&s3s_bucket, prefix, &proxies[1].endpoint);
    let (local8, local1) = (by8.display().to_string(), by1.display().to_string());
    let (s3s_8, moto_8, moto_1) = (s3s_url("by8"), moto_url("by8"), moto_url("by1"));
    let cache_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/store-cache");
    let _ = std::fs::remove_dir_all(&cache_dir);
    let no_read_ahead = StoreConfig {
        read_ahead_samples: 0,
        ..StoreConfig::from_env()
    };
    let with_cache = StoreConfig {
        cache_dir: Some(cache_dir.clone()),
        ..StoreConfig::from_env()
    };
    println!(
        "dataset: {SAMPLES} samples at Pico-Banana sizes ({:.0} MB), prefetch 2, global batch \
         8, 256 px, {} timed batches per run, {RUNS} runs interleaved, medians",
        bytes as f64 / 1e6,
        BATCHES - 1
    );
    println!(
        "s3: s3s-fs and moto on loopback, each behind a proxy adding {LATENCY_MS} ms to every \
         request; read-ahead {} samples; -8 / -1: 8 or 1 samples per shard",
        StoreConfig::default().read_ahead_samples
    );
    let rt = daemon::runtime();
    rt.block_on(async {
        // Both cores decoding: the S3 server, the proxy and the client compete with the
        // workers for them.
        compare(
            &[
                ("local-8", &local8, None),
                ("local-1", &local1, None),
                ("s3s-fs-8", &s3s_8, None),
                (
                    "s3s-fs-8-no-read-ahead",
                    &s3s_8,
                    Some(no_read_ahead.clone()),
                ),
                ("moto-8", &moto_8, None),
                ("moto-1", &moto_1, None),
                ("moto-1-disk-cache", &moto_1, Some(with_cache)),
            ],
            2,
            &[
                ("local-8", "local-8", None),
                ("s3s-fs-8", "local-8", Some(s3s)),
                ("s3s-fs-8-no-read-ahead", "local-8", Some(s3s)),
                ("moto-8", "local-8", Some(moto)),
                ("local-1", "local-1", None),
                ("moto-1", "local-1", Some(moto)),
                ("moto-1-disk-cache", "local-1", Some(moto)),
            ],
        )
        .await;
        // One core decoding, one left for what a real deployment runs elsewhere.
        compare(
            &[
                ("local-8", &local8, None),
                ("s3s-fs-8", &s3s_8, None),
                ("local-1", &local1, None),
                ("moto-1", &moto_1, None),
            ],
            1,
            &[
                ("local-8", "local-8", None),
                ("s3s-fs-8", "local-8", Some(s3s)),
                ("local-1", "local-1", None),
                ("moto-1", "local-1", Some(moto)),
            ],
        )
        .await;
    });
}
