//! Load benchmark: 64 concurrent streams in 8 training jobs (8 ranks each) against one
//! daemon process on loopback for a fixed time, next to one more stream whose client
//! stops reading after its first batch. Prints errors, per-stream throughput (min,
//! median, max and max/min, the fair-share ratio), the aggregate against one stream
//! alone, and the daemon's RSS sampled every second. Exits non-zero when a stream
//! fails or the fair-share ratio exceeds 1.5.
//!
//! `cargo bench --bench load` (`LOAD_SECONDS`, default 40, of which the first 5 are
//! warm-up). The dataset (single-turn samples at half Pico-Banana's sizes) is generated
//! once under `target/bench-data/`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/daemon.rs"]
mod daemon;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use editfeed::dataset::synth::SynthOptions;
use editfeed::dataset::writer::ShardTarget;
use editfeed::dataset::Subset;
use editfeed::plan::{Phase, StreamSpec};
use editfeed::transport::proto::v1 as pb;

const JOBS: u32 = 8;
const RANKS: u32 = 8;
const GLOBAL_BATCH: u32 = 16;
const SIZE: u32 = 256;
const WARMUP: Duration = Duration::from_secs(5);

fn dataset() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/load-sft");
    if !dir.join("manifest.json").exists() {
        let opts = SynthOptions {
            samples: 160,
            scale: 0.5,
            ..Default::default()
        };
        let samples: Vec<_> = common::all_samples(&opts)
            .into_iter()
            .filter(|s| s.subset() == Subset::Sft)
            .collect();
        common::write_dataset(&dir, &samples, ShardTarget::Samples(32));
    }
    dir
}

/// Rank `rank` of job `job`: single-turn samples only, so every batch costs the same.
fn request(job: u32, rank: u32) -> pb::StreamRequest {
    let mut spec = StreamSpec::new(1000 + job as u64, GLOBAL_BATCH);
    spec.curriculum = vec![Phase {
        until_step: None,
        weights: [("sft".to_string(), 1.0)].into_iter().collect(),
        ramp_steps: 0,
    }];
    let mut req = common::request("load", 0, GLOBAL_BATCH, RANKS, rank, SIZE, 0);
    req.spec = Some(editfeed::transport::convert::spec_to_wire(&spec));
    req.job = format!("job-{job}");
    req
}

/// What one stream did: samples received between the warm-up and the end, or its error.
type Outcome = Result<u64, String>;

/// Reads a stream until `end`; counts samples received after `counted_from`.
async fn run_stream(
    endpoint: String,
    req: pb::StreamRequest,
    counted_from: Instant,
    end: Instant,
) -> Outcome {
    let mut client = editfeed::transport::client::connect(&endpoint)
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = client
        .stream(req)
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let mut samples = 0;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.message()).await {
            Err(_) => return Ok(samples),
            Ok(Ok(Some(b))) => {
                if Instant::now() >= counted_from {
                    samples += b.samples.len() as u64;
                }
            }
            Ok(Ok(None)) => return Err("the stream ended early".into()),
            Ok(Err(s)) => return Err(format!("{:?}: {}", s.code(), s.message())),
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let seconds: u64 = std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let data = dataset();
    let rt = daemon::runtime();
    let failed = rt.block_on(async {
        let location = format!("load={}", data.display());
        // Every stream comes from 127.0.0.1, within the default per-client limit (128).
        let d = daemon::Daemon::start(&["--dataset", &location]).await;
        let idle_kib = d.kib("VmRSS:");

        // One stream alone first: the aggregate to compare with.
        let start = Instant::now();
        let alone = run_stream(d.endpoint.clone(), request(99, 0), start + WARMUP, start + WARMUP * 3)
            .await
            .expect("a single stream runs");
        let alone_rate = alone as f64 / (WARMUP * 2).as_secs_f64();

        let start = Instant::now();
        let (from, end) = (start + WARMUP, start + Duration::from_secs(seconds));
        let mut tasks = Vec::new();
        for job in 0..JOBS {
            for rank in 0..RANKS {
                let endpoint = d.endpoint.clone();
                tasks.push(tokio::spawn(run_stream(endpoint, request(job, rank), from, end)));
            }
        }
        // The stalled client: takes one batch, then holds its stream without reading.
        let stalled_endpoint = d.endpoint.clone();
        let stalled = tokio::spawn(async move {
            let mut client = editfeed::transport::client::connect(&stalled_endpoint).await.unwrap();
            let mut s = client.stream(request(JOBS, 0)).await.unwrap().into_inner();
            let _ = s.message().await;
            tokio::time::sleep_until(end.into()).await;
            drop(s);
        });
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
        while Instant::now() < end {
            peak.fetch_max(d.kib("VmRSS:"), std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut rates = Vec::new();
        let mut errors = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(n) => rates.push(n as f64 / (end - from).as_secs_f64()),
                Err(e) => errors.push(e),
            }
        }
        stalled.await.unwrap();
        let hwm = d.kib("VmHWM:");

        println!(
            "{} streams ({JOBS} jobs x {RANKS} ranks, global batch {GLOBAL_BATCH}, {SIZE} px sft, \
             half-size Pico-Banana images) + 1 stalled stream, {seconds} s ({} s warm-up)",
            JOBS * RANKS,
            WARMUP.as_secs()
        );
        println!("errors: {}", errors.len());
        for e in errors.iter().take(5) {
            println!("  {e}");
        }
        let mut fair = f64::INFINITY;
        if !rates.is_empty() {
            let min = rates.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = rates.iter().cloned().fold(0.0, f64::max);
            let total: f64 = rates.iter().sum();
            fair = max / min.max(1e-9);
            println!(
                "per stream samples/s: min {min:.2}, median {:.2}, max {max:.2}; max/min {fair:.2}",
                median(rates.clone())
            );
            println!(
                "aggregate {total:.1} samples/s against {alone_rate:.1} for one stream alone ({:.2}x)",
                total / alone_rate
            );
        }
        println!(
            "daemon RSS: idle {} MiB, peak sampled {} MiB, VmHWM {} MiB",
            idle_kib / 1024,
            peak.load(std::sync::atomic::Ordering::Relaxed) / 1024,
            hwm / 1024
        );
        !errors.is_empty() || fair > 1.5
    });
    if failed {
        eprintln!("load benchmark failed: errors, or a fair-share ratio over 1.5");
        std::process::exit(1);
    }
}
