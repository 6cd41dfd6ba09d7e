//! `editfeed verify`: checks a dataset end to end and exits non-zero on any problem.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use editfeed::dataset::verify::{verify, VerifyOptions};
use editfeed::dataset::Dataset;

/// Arguments of `editfeed verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The dataset folder.
    pub path: PathBuf,
    /// Skip the full decode of every image (checksums and frames only).
    #[arg(long)]
    pub no_decode: bool,
    /// Threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Runs `editfeed verify`.
pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let ds = Dataset::open(&args.path)?;
    let total: u64 = ds.manifest().subsets.values().map(|s| s.bytes).sum();
    let pb = super::progress::bar(total, "verify");
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let started = Instant::now();
    let report = verify(
        &ds,
        &VerifyOptions {
            decode_images: !args.no_decode,
            threads,
        },
        &|b| pb.inc(b),
    );
    pb.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "verified {} samples, {} images, {} in {secs:.2} s ({:.1} MB/s)",
        report.samples,
        report.images,
        editfeed::units::format_bytes(report.bytes),
        report.bytes as f64 / 1e6 / secs.max(1e-9)
    );
    if report.problems.is_empty() {
        println!("ok: version {}", ds.manifest().version);
        Ok(())
    } else {
        for p in &report.problems {
            println!("problem: {p}");
        }
        anyhow::bail!(
            "{} problems in {}",
            report.problems.len(),
            args.path.display()
        )
    }
}
