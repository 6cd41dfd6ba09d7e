//! `editfeed plan`: prints, for each step, the subset and each rank's sample keys, for
//! debugging curricula and checking what a trainer will see.

use std::path::PathBuf;

use clap::Args;
use editfeed::dataset::Dataset;
use editfeed::plan::{render_plan, CurriculumFile, Plan, PlanInput, StreamSpec};

/// Arguments of `editfeed plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The dataset folder.
    pub dataset: PathBuf,
    /// The stream's seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples per global step over all ranks.
    #[arg(long)]
    pub global_batch: u32,
    /// Ranks in the job.
    #[arg(long, default_value_t = 1)]
    pub world_size: u32,
    /// Steps to print.
    #[arg(long, default_value_t = 10)]
    pub steps: u64,
    /// First step to print (resuming costs nothing, whatever the step).
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// A curriculum TOML file.
    #[arg(long)]
    pub curriculum: Option<PathBuf>,
}

/// Runs `editfeed plan`.
pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let ds = Dataset::open(&args.dataset)?;
    let spec = match &args.curriculum {
        Some(path) => CurriculumFile::read(path)?.into_spec(args.seed, args.global_batch)?,
        None => StreamSpec::new(args.seed, args.global_batch),
    };
    let plan = Plan::new(&ds.stream_plan_input(&spec)?, &spec)?;
    let end = match plan.end_step() {
        Some(e) => e.min(args.from.saturating_add(args.steps)),
        None => args.from.saturating_add(args.steps),
    };
    let key_of = |subset, ordinal| {
        ds.key_of(subset, ordinal)
            .unwrap_or_else(|e| format!("<{e}>"))
    };
    print!(
        "{}",
        render_plan(&plan, args.world_size, args.from..end, &key_of)?
    );
    Ok(())
}
