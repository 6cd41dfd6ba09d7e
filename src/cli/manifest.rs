//! `editfeed manifest merge`: the manifest of a pack written in parts, from the parts'
//! records (`part.json`); a thin layer over [`editfeed::dataset::merge`].

use std::path::PathBuf;

use clap::{Args, Subcommand};
use editfeed::dataset::merge::merge;

/// What to do with manifests.
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Write the manifest of a dataset packed in parts (`pack ... --part I/N`): checks
    /// that the parts are complete, disjoint and of the same pack, and gives the dataset
    /// the version a single run gives.
    Merge(MergeArgs),
}

/// Flags of `manifest merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The parts' folders or URLs, each inside --out, in any order.
    #[arg(required = true, value_name = "PARTS")]
    pub parts: Vec<PathBuf>,
    /// The dataset's folder or URL: the manifest names the parts' shards from here.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace a manifest already in --out.
    #[arg(long)]
    pub overwrite: bool,
}

/// Runs `editfeed manifest`.
pub fn run(cmd: ManifestCommand) -> anyhow::Result<()> {
    match cmd {
        ManifestCommand::Merge(a) => {
            let merged = merge(&a.parts, &a.out, a.overwrite)?;
            if let Some((report, path)) = &merged.report {
                print!("{}", report.summary(10, Some(path)));
            }
            let shards: usize = merged
                .manifest
                .subsets
                .values()
                .map(|s| s.shards.len())
                .sum();
            println!(
                "dataset {} written to {}: {} samples in {shards} shards from {} parts",
                merged.manifest.version,
                a.out.display(),
                merged.manifest.total_samples(),
                a.parts.len()
            );
            Ok(())
        }
    }
}
