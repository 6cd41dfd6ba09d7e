//! The command-line interface: one module per subcommand. `main.rs` parses and
//! dispatches; each command is a thin layer over the library.

pub mod admin;
pub mod bench;
pub mod contact_sheet;
pub mod demo;
pub mod fetch;
pub mod inspect;
pub mod manifest;
pub mod pack;
pub mod pico_root;
pub mod plan;
pub mod progress;
pub mod reshard;
pub mod serve;
pub mod synth;
pub mod verify;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use editfeed::dataset::parallel::Parallelism;
use editfeed::dataset::writer::{ShardTarget, WriteOptions};

/// editfeed: feeds image-editing training data to GPU trainers.
#[derive(Debug, Parser)]
#[command(name = "editfeed", version, about)]
pub struct Cli {
    /// Log filter (tracing's EnvFilter syntax); overrides EDITFEED_LOG_LEVEL and the
    /// config's log_level.
    #[arg(long, global = true)]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole path on a synthetic dataset: serve it and stream a curriculum.
    Demo(demo::DemoArgs),
    /// Serve datasets to trainers over gRPC.
    Serve(serve::ServeArgs),
    /// Check a daemon config file.
    #[command(subcommand)]
    Config(serve::ConfigCommand),
    /// Stream batches from a daemon like a trainer would (and hash or draw them).
    Fetch(fetch::FetchArgs),
    /// Write a deterministic synthetic dataset in Pico-Banana's shape.
    Synth(synth::SynthArgs),
    /// Pack a dataset from Pico-Banana-400K or from existing WebDataset shards.
    #[command(subcommand)]
    Pack(pack::PackCommand),
    /// Work on manifests: merge the parts of a pack split across machines.
    #[command(subcommand)]
    Manifest(manifest::ManifestCommand),
    /// Print each step's subset and each rank's sample keys.
    Plan(plan::PlanArgs),
    /// Show a dataset's counts, edit-type histogram and first samples.
    Inspect(inspect::InspectArgs),
    /// Check a dataset: checksums, every frame and image decodes, indexes agree.
    Verify(verify::VerifyArgs),
    /// Rewrite a dataset with another shard size (same samples, same order).
    Reshard(reshard::ReshardArgs),
    /// In-process benchmark parts (the decode-and-resize floor, a large manifest);
    /// `bench/run` runs the whole comparison.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Manage a running daemon: datasets, reshard jobs, versions, stats.
    Admin(admin::AdminArgs),
}

/// Sets up logging: `text` or `json` lines on stderr, filtered by `level` (tracing's
/// EnvFilter syntax).
pub fn init_logging(format: &str, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let level = cli
        .log
        .clone()
        .or_else(|| std::env::var("EDITFEED_LOG_LEVEL").ok());
    if !matches!(cli.command, Command::Serve(_)) {
        init_logging("text", level.as_deref().unwrap_or("info"));
    }
    match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Serve(a) => serve::run(a, cli.log),
        Command::Config(c) => serve::run_config(c),
        Command::Fetch(a) => fetch::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Pack(c) => pack::run(c),
        Command::Manifest(c) => manifest::run(c),
        Command::Plan(a) => plan::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Reshard(a) => reshard::run(a),
        Command::Bench(c) => bench::run(c),
        Command::Admin(a) => admin::run(a),
    }
}

/// Where and how a command writes a dataset.
#[derive(Debug, Args)]
pub struct WriteArgs {
    /// The dataset folder, or object-store URL (s3://bucket/prefix, gs://, az://), to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Close a shard after this many samples (instead of --shard-bytes).
    #[arg(long, conflicts_with = "shard_bytes")]
    pub shard_samples: Option<u64>,
    /// Close a shard once it reaches this size, e.g. 256MiB (the default).
    #[arg(long, value_parser = editfeed::units::parse_bytes)]
    pub shard_bytes: Option<u64>,
    /// zstd compression level: 1..=22, or -1 down to -131072 for zstd's fast levels,
    /// which store image members nearly raw and decode several times faster.
    #[arg(long, default_value_t = 3, allow_negative_numbers = true)]
    pub level: i32,
    /// Code each zstd frame with zstd's defaults: Huffman-coded literals and matches of
    /// 3 to 5 bytes. A few percent smaller shards on images, at several times the
    /// decode time of every read.
    #[arg(long)]
    pub compress_literals: bool,
    /// Replace a dataset already in --out.
    #[arg(long)]
    pub overwrite: bool,
    /// Give every sample a split from this file: one `<subset>/<key> <split>` line per
    /// sample (`#` comments). Unknown keys, a key twice or an unlisted sample are refused.
    #[arg(long, conflicts_with = "split_rule")]
    pub split_file: Option<PathBuf>,
    /// Give every sample a split by rule, e.g. `seed=7,train=0.8,val=0.1,test=0.1`: a
    /// hash of the sample's source photo (its source URL, else its key) and the seed.
    #[arg(long)]
    pub split_rule: Option<String>,
    /// Threads that read, check, transcode and compress samples (0: one per core). The
    /// output is byte for byte the same for any number.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// The most bytes of compressed samples waiting for their turn to be written, e.g.
    /// 512MiB (each thread also holds the sample it works on).
    #[arg(long, value_name = "SIZE", value_parser = editfeed::units::parse_bytes, default_value = "1GiB")]
    pub max_inflight_bytes: u64,
}

impl WriteArgs {
    /// The split source these flags ask for, if any.
    pub fn splits(&self) -> anyhow::Result<Option<editfeed::dataset::splits::SplitSource>> {
        use editfeed::dataset::splits::{SplitFile, SplitRule, SplitSource};
        Ok(match (&self.split_file, &self.split_rule) {
            (Some(f), _) => Some(SplitSource::File(SplitFile::read(f)?)),
            (None, Some(r)) => Some(SplitSource::Rule(SplitRule::parse(r)?)),
            (None, None) => None,
        })
    }

    /// The threads and memory bound these flags ask for.
    pub fn parallelism(&self) -> Parallelism {
        Parallelism {
            max_inflight_bytes: self.max_inflight_bytes,
            ..Parallelism::threads(self.threads)
        }
    }

    /// The writer options these flags ask for.
    pub fn options(&self) -> WriteOptions {
        let target = match (self.shard_samples, self.shard_bytes) {
            (Some(n), _) => ShardTarget::Samples(n),
            (None, Some(b)) => ShardTarget::Bytes(b),
            (None, None) => WriteOptions::default().target,
        };
        WriteOptions {
            target,
            level: self.level,
            compress_literals: self.compress_literals,
            overwrite: self.overwrite,
        }
    }
}
