//! `editfeed reshard`: rewrites a dataset with another shard layout, offline (the Admin
//! service's `Reshard` without a daemon). The samples and their order are kept, so the
//! version is kept too unless images are transcoded or shrunk.

use anyhow::Context;
use clap::Args;
use editfeed::codec::TranscodeTarget;
use editfeed::dataset::reshard::{reshard, ReshardOptions};
use editfeed::dataset::writer::DatasetWriter;
use editfeed::dataset::{Dataset, Subset};

use super::pack::parse_subset;
use super::progress::bar;
use super::WriteArgs;

/// Arguments of `editfeed reshard`.
#[derive(Debug, Args)]
pub struct ReshardArgs {
    /// The dataset to read: a folder or an object-store URL.
    pub source: String,
    /// Keep only this subset (repeat for more; default: all).
    #[arg(long = "subset", value_parser = parse_subset)]
    pub subsets: Vec<Subset>,
    /// Re-encode every image but the source: jpeg:QUALITY, png, webp, qoi or ppm.
    #[arg(long, value_name = "FORMAT")]
    pub transcode_edits: Option<TranscodeTarget>,
    /// Shrink every image so that its longer side is at most this many pixels.
    #[arg(long)]
    pub max_side: Option<u32>,
    #[command(flatten)]
    pub write: WriteArgs,
}

/// Runs `editfeed reshard`.
pub fn run(a: ReshardArgs) -> anyhow::Result<()> {
    let source = Dataset::open(a.source.as_str())
        .with_context(|| format!("cannot open the dataset {}", a.source))?;
    let opts = ReshardOptions {
        subsets: a.subsets,
        transcode_edits: a.transcode_edits,
        max_side: a.max_side,
        parallel: a.write.parallelism(),
    };
    let writer = DatasetWriter::create(&a.write.out, a.write.options())
        .with_context(|| format!("cannot write a dataset in {}", a.write.out.display()))?
        .with_splits(a.write.splits()?);
    let pb = bar(opts.total_samples(&source), "samples");
    let manifest = reshard(&source, writer, &opts, &[], &mut |p| {
        pb.set_position(p.samples);
        true
    });
    pb.finish_and_clear();
    let manifest = manifest?;
    let shards: usize = manifest.subsets.values().map(|s| s.shards.len()).sum();
    println!(
        "{}: {} samples in {shards} shards, version {} (source version {})",
        a.write.out.display(),
        manifest.total_samples(),
        manifest.version,
        source.manifest().version
    );
    Ok(())
}
