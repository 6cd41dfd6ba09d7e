//! `editfeed admin`: one subcommand per Admin RPC, against a daemon's admin endpoint.
//! `watch` (and `reshard --watch`) follows a job with a progress bar and exits non-zero
//! when the job does not succeed.

use clap::{Args, Subcommand};
use editfeed::transport::proto::v1 as pb;
use editfeed::transport::proto::v1::JobState;

use super::progress::bar;

/// Arguments of `editfeed admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The daemon's Admin endpoint (its admin_listen address): host:port, http://host:port
    /// or https://host:port.
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    pub endpoint: String,
    /// A file holding the Admin bearer token (else EDITFEED_ADMIN_TOKEN, if set).
    #[arg(long)]
    pub token_file: Option<String>,
    /// PEM certificate(s) to trust for an https:// endpoint (a daemon with TLS).
    #[arg(long)]
    pub tls_ca: Option<String>,
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// The Admin RPCs.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// List registered datasets and retired versions.
    List,
    /// Register (or re-point) a dataset name to a folder or URL.
    Register {
        /// The dataset name streams use.
        name: String,
        /// A folder or s3://, gs://, az:// URL holding manifest.json.
        url: String,
    },
    /// Unregister a dataset name (open streams keep it until they end).
    Unregister {
        /// The dataset name.
        name: String,
    },
    /// Start a background reshard job.
    Reshard(ReshardArgs),
    /// Show one job.
    Job {
        /// The job id (job-N).
        id: String,
    },
    /// Follow a job with a progress bar until it ends.
    Watch {
        /// The job id (job-N).
        id: String,
    },
    /// Cancel a queued or running job.
    Cancel {
        /// The job id (job-N).
        id: String,
    },
    /// List every job.
    Jobs,
    /// Delete retired versions that no stream uses.
    Gc {
        /// Only show what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Open streams, worker-pool use and bytes read per dataset.
    Stats,
}

/// Flags of `admin reshard`.
#[derive(Debug, Args)]
pub struct ReshardArgs {
    /// The registered dataset to rewrite.
    #[arg(long)]
    pub dataset: String,
    /// Where to write the new version (a new folder or object-store URL).
    #[arg(long)]
    pub dest: String,
    /// Close a shard after this many samples.
    #[arg(
        long,
        conflicts_with = "shard_bytes",
        required_unless_present = "shard_bytes"
    )]
    pub shard_samples: Option<u64>,
    /// Close a shard once it reaches this size, e.g. 256MiB.
    #[arg(long, value_parser = editfeed::units::parse_bytes)]
    pub shard_bytes: Option<u64>,
    /// zstd level: 1..=22, or -1 down to -131072 for zstd's fast levels.
    #[arg(long, default_value_t = 3, allow_negative_numbers = true)]
    pub level: i32,
    /// Code each zstd frame with zstd's defaults: Huffman-coded literals and matches of
    /// 3 to 5 bytes. A few percent smaller shards on images, at several times the
    /// decode time of every read.
    #[arg(long)]
    pub compress_literals: bool,
    /// Re-encode edited images: jpeg:QUALITY, png, webp, qoi or ppm.
    #[arg(long, value_name = "FORMAT")]
    pub transcode_edits: Option<String>,
    /// Shrink every image so its longer side is at most PX.
    #[arg(long, value_name = "PX")]
    pub max_side: Option<u32>,
    /// Keep only this subset (repeat for more; default all).
    #[arg(long = "subset")]
    pub subsets: Vec<String>,
    /// Point the dataset name at the new version when the job succeeds.
    #[arg(long)]
    pub activate: bool,
    /// CPU priority of the job: idle (only spare CPU; the default), low (nice 10) or
    /// normal.
    #[arg(long, default_value = "idle", value_parser = parse_priority)]
    pub priority: pb::ReshardPriority,
    /// Follow the job with a progress bar.
    #[arg(long)]
    pub watch: bool,
}

/// Runs `editfeed admin`.
pub fn run(args: AdminArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: AdminArgs) -> anyhow::Result<()> {
    let opts = editfeed::transport::client::ConnectOptions::from_files(
        args.tls_ca.as_deref(),
        args.token_file.as_deref(),
    )?;
    let mut c = editfeed::transport::client::connect_admin_with(&args.endpoint, &opts).await?;
    match args.command {
        AdminCommand::List => {
            let r = c
                .list_datasets(pb::ListDatasetsRequest {})
                .await?
                .into_inner();
            for d in r.datasets {
                let info = d.info.unwrap_or_default();
                let samples: u64 = info.subsets.iter().map(|s| s.samples).sum();
                let shards: u64 = info.subsets.iter().map(|s| s.shards).sum();
                println!(
                    "{}\t{}\t{} samples\t{} shards\t{}",
                    info.name, info.version, samples, shards, d.location
                );
            }
            for r in r.retired {
                println!(
                    "retired {}\t{}\t{} streams\t{}",
                    r.name, r.version, r.streams, r.location
                );
            }
            for f in r.failed {
                println!("failed {}\t{}\t{}", f.name, f.location, f.error);
            }
        }
        AdminCommand::Register { name, url } => {
            let info = c
                .register_dataset(pb::RegisterDatasetRequest { name, url })
                .await?
                .into_inner();
            println!("registered {} {}", info.name, info.version);
        }
        AdminCommand::Unregister { name } => {
            c.unregister_dataset(pb::UnregisterDatasetRequest { name: name.clone() })
                .await?;
            println!("unregistered {name}");
        }
        AdminCommand::Reshard(a) => {
            let req = pb::ReshardRequest {
                dataset: a.dataset,
                shard_samples: a.shard_samples.unwrap_or(0),
                shard_bytes: a.shard_bytes.unwrap_or(0),
                destination: a.dest,
                level: a.level,
                compress_literals: a.compress_literals,
                transcode_edits: a.transcode_edits.unwrap_or_default(),
                max_side: a.max_side.unwrap_or(0),
                subsets: a.subsets,
                activate: a.activate,
                priority: a.priority as i32,
            };
            let r = c.reshard(req).await?.into_inner();
            let how = if r.resumed { "resumed" } else { "started" };
            println!("{} {how}", r.job_id);
            if a.watch {
                return watch(&mut c, r.job_id).await;
            }
        }
        AdminCommand::Job { id } => {
            let job = c
                .get_job(pb::GetJobRequest { job_id: id })
                .await?
                .into_inner();
            println!("{}", describe(&job));
        }
        AdminCommand::Watch { id } => return watch(&mut c, id).await,
        AdminCommand::Cancel { id } => {
            let job = c
                .cancel_job(pb::GetJobRequest { job_id: id })
                .await?
                .into_inner();
            println!("{}", describe(&job));
        }
        AdminCommand::Jobs => {
            let r = c.list_jobs(pb::ListJobsRequest {}).await?.into_inner();
            for job in r.jobs {
                println!("{}", describe(&job));
            }
        }
        AdminCommand::Gc { dry_run } => {
            let r = c.gc(pb::GcRequest { dry_run }).await?.into_inner();
            let verb = if dry_run { "would remove" } else { "removed" };
            for v in r.removed {
                println!("{verb} {} {} {}", v.name, v.version, v.location);
            }
            for v in r.kept {
                println!(
                    "kept {} {} {} ({} streams)",
                    v.name, v.version, v.location, v.streams
                );
            }
        }
        AdminCommand::Stats => {
            let r = c.stats(pb::StatsRequest {}).await?.into_inner();
            let p = r.pool.unwrap_or_default();
            println!(
                "pool: {} workers, {} busy, {} queued, {} jobs done; {} reshard jobs active",
                p.workers, p.busy, p.queued, p.completed, r.active_jobs
            );
            let m = r.memory.unwrap_or_default();
            println!(
                "memory: {} of max_inflight_bytes {} in flight, peak {}, {} waits for room",
                m.inflight_bytes, m.max_inflight_bytes, m.peak_inflight_bytes, m.waits
            );
            for d in r.datasets {
                println!(
                    "dataset {} {}: {} bytes read",
                    d.name, d.version, d.bytes_read
                );
            }
            for s in r.streams {
                println!(
                    "stream job={:?} dataset={} rank={}/{} step={} batches={} {:.2} batches/s ahead={}",
                    s.job,
                    s.dataset,
                    s.rank,
                    s.world_size,
                    s.step,
                    s.batches,
                    s.batches_per_second,
                    s.ahead_batches
                );
            }
        }
    }
    Ok(())
}

fn parse_priority(s: &str) -> Result<pb::ReshardPriority, String> {
    pb::ReshardPriority::from_str_name(&format!("RESHARD_PRIORITY_{}", s.to_ascii_uppercase()))
        .filter(|p| *p != pb::ReshardPriority::Unspecified)
        .ok_or_else(|| format!("unknown priority {s:?}: expected idle, low or normal"))
}

fn state_name(job: &pb::Job) -> String {
    job.state()
        .as_str_name()
        .trim_start_matches("JOB_STATE_")
        .to_ascii_lowercase()
}

fn describe(job: &pb::Job) -> String {
    let r = job.request.clone().unwrap_or_default();
    let mut line = format!(
        "{} {} {} -> {}: {}/{} samples, {} shards, {} bytes",
        job.id,
        state_name(job),
        r.dataset,
        r.destination,
        job.samples_done,
        job.samples_total,
        job.shards_done,
        job.bytes_written
    );
    if job.samples_resumed > 0 {
        line.push_str(&format!(
            ", {} taken over from the interrupted run",
            job.samples_resumed
        ));
    }
    if !job.version.is_empty() {
        line.push_str(&format!(", version {}", job.version));
    }
    if !job.error.is_empty() {
        line.push_str(&format!(", error: {}", job.error));
    }
    line
}

async fn watch(c: &mut editfeed::transport::client::Admin, id: String) -> anyhow::Result<()> {
    let mut stream = c
        .watch_job(pb::GetJobRequest { job_id: id })
        .await?
        .into_inner();
    let pb = bar(0, "samples");
    let mut last = None;
    while let Some(job) = stream.message().await? {
        pb.set_length(job.samples_total);
        pb.set_position(job.samples_done);
        pb.set_message(format!(
            "{}, {} shards, {:.0} samples/s",
            state_name(&job),
            job.shards_done,
            job.rate
        ));
        last = Some(job);
    }
    pb.finish_and_clear();
    let job = last.ok_or_else(|| anyhow::anyhow!("the daemon sent no job state"))?;
    println!("{}", describe(&job));
    if job.state() != JobState::Succeeded {
        anyhow::bail!("job {} ended {}", job.id, state_name(&job));
    }
    Ok(())
}
