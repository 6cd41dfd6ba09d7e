//! `editfeed synth`: writes the deterministic synthetic dataset.

use clap::Args;
use editfeed::dataset::synth::{synth_sample, SynthOptions};
use editfeed::dataset::writer::DatasetWriter;

use super::WriteArgs;

/// Arguments of `editfeed synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    #[command(flatten)]
    pub write: WriteArgs,
    /// Samples over all three subsets (about 60% single-turn, 20% preference, 20%
    /// multi-turn).
    #[arg(long, default_value_t = 120)]
    pub samples: u64,
    /// The seed; the same seed gives a byte-identical dataset.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Image size multiplier (1.0 = Pico-Banana's ~1024 px sizes).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f32,
}

/// Runs `editfeed synth`.
pub fn run(args: SynthArgs) -> anyhow::Result<()> {
    if !(args.scale > 0.0 && args.scale <= 4.0) {
        anyhow::bail!("--scale must be in (0, 4], got {}", args.scale);
    }
    let opts = SynthOptions {
        samples: args.samples,
        seed: args.seed,
        scale: args.scale,
        ..Default::default()
    };
    let manifest = write_synth(&opts, &args.write)?;
    println!(
        "wrote {} ({} samples, version {})",
        args.write.out.display(),
        manifest.total_samples(),
        manifest.version
    );
    for (subset, s) in &manifest.subsets {
        println!(
            "  {subset:<11} {:>7} samples in {} shards",
            s.samples,
            s.shards.len()
        );
    }
    Ok(())
}

/// Writes the synthetic dataset with a progress bar; returns its manifest.
pub fn write_synth(
    opts: &SynthOptions,
    write: &WriteArgs,
) -> anyhow::Result<editfeed::dataset::Manifest> {
    let mut writer =
        DatasetWriter::create(&write.out, write.options())?.with_splits(write.splits()?);
    let pb = super::progress::bar(opts.split().iter().map(|(_, n)| n).sum(), "synth");
    for (subset, n) in opts.split() {
        for i in 0..n {
            writer.add(&synth_sample(opts, subset, i))?;
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    Ok(writer.finish()?)
}
