//! `editfeed demo`: the whole path on one machine. Makes the synthetic dataset if it is
//! absent, serves it on loopback, runs two trainer ranks through a short curriculum
//! (single-turn, then preference pairs, then multi-turn chains) with progress bars, and
//! prints throughput and contact sheets.

use std::path::PathBuf;

use clap::Args;
use editfeed::config::ServeConfig;
use editfeed::dataset::manifest::MANIFEST_FILE;
use editfeed::dataset::synth::SynthOptions;
use editfeed::server::{serve, ServerState};
use indicatif::MultiProgress;

use super::fetch::{stream, StreamArgs};
use super::WriteArgs;

/// Arguments of `editfeed demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo dataset lives (made if absent).
    #[arg(long, default_value = "demo-data")]
    pub data: PathBuf,
    /// Global steps per curriculum phase.
    #[arg(long, default_value_t = 6)]
    pub steps_per_phase: u64,
    /// Output side in pixels.
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// Worker threads (default: every core).
    #[arg(long)]
    pub workers: Option<usize>,
}

const CURRICULUM: &str = "\
[[curriculum]]
until_step = {a}
weights = { sft = 1.0 }

[[curriculum]]
until_step = {b}
weights = { preference = 1.0 }

[[curriculum]]
until_step = {c}
weights = { multi_turn = 1.0 }
";

/// Runs `editfeed demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    if !args.data.join(MANIFEST_FILE).exists() {
        println!(
            "making the demo dataset in {} (synthetic, Pico-Banana's shape)",
            args.data.display()
        );
        let write = WriteArgs {
            out: args.data.clone(),
            shard_samples: Some(32),
            shard_bytes: None,
            level: 3,
            compress_literals: false,
            overwrite: true,
            split_file: None,
            split_rule: None,
            threads: 0,
            max_inflight_bytes: editfeed::dataset::parallel::DEFAULT_MAX_INFLIGHT_BYTES,
        };
        super::synth::write_synth(
            &SynthOptions {
                samples: 120,
                ..Default::default()
            },
            &write,
        )?;
    }
    let n = args.steps_per_phase;
    let curriculum = args.data.join("demo-curriculum.toml");
    std::fs::write(
        &curriculum,
        CURRICULUM
            .replace("{a}", &n.to_string())
            .replace("{b}", &(2 * n).to_string())
            .replace("{c}", &(3 * n).to_string()),
    )?;
    let mut config = ServeConfig {
        listen: "127.0.0.1:0".into(),
        ..Default::default()
    };
    config
        .datasets
        .insert("demo".into(), args.data.display().to_string());
    if let Some(w) = args.workers {
        config.workers = w;
    }
    config.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&config.listen).await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let state = ServerState::new(config)?;
        println!("serving {} on {endpoint} with {} workers", args.data.display(), state.pool.workers());
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(serve(listener, state, async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        }));
        let stream_args = StreamArgs {
            seed: 0,
            global_batch: 8,
            world_size: 2,
            size: args.size,
            height: None,
            curriculum: Some(curriculum.clone()),
            encoded: false,
            no_crop: false,
            hflip: None,
            flip_policy: Some("swap".into()),
            eval: false,
            fit: None,
        };
        let bars = MultiProgress::new();
        let started = std::time::Instant::now();
        let mut ranks = Vec::new();
        for rank in 0..2u32 {
            let req = stream_args.request("demo", rank, 0, None)?;
            let bar = bars.add(super::progress::bar(3 * n, &format!("rank {rank}")));
            let endpoint = endpoint.clone();
            let sheets = args.data.clone();
            ranks.push(tokio::spawn(async move {
                let mut seen = std::collections::BTreeSet::new();
                let mut written = Vec::new();
                let report = stream(&endpoint, &Default::default(), req, None, |batch| {
                    bar.set_message(batch.subset.clone());
                    bar.inc(1);
                    if rank == 0 && seen.insert(batch.subset.clone()) {
                        let path = sheets.join(format!("contact-{}.png", batch.subset));
                        super::contact_sheet::write(batch, &path)?;
                        written.push(path);
                    }
                    Ok(())
                })
                .await;
                bar.finish();
                report.map(|r| (r, written))
            }));
        }
        let mut total = (0u64, 0u64);
        let mut sheets = Vec::new();
        for r in ranks {
            let (report, written) = r.await??;
            total.0 += report.samples;
            total.1 += report.bytes;
            sheets.extend(written);
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "2 ranks x {} steps: {} samples in {secs:.2} s = {:.1} samples/s, {:.1} MB/s of {}px uint8 tensors",
            3 * n,
            total.0,
            total.0 as f64 / secs,
            total.1 as f64 / 1e6 / secs,
            args.size
        );
        for s in sheets {
            println!("contact sheet: {}", s.display());
        }
        let _ = stop_tx.send(true);
        server.await??;
        Ok(())
    })
}
