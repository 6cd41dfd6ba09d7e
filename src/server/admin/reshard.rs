//! `Reshard`: checks a request, claims its destination, prepares the writer (so an
//! unwritable destination fails the request, not the job) and runs the copy as a
//! background job. On success the manifest is written last; if the request asked, the
//! dataset name then points at the new version for new streams, while open streams
//! keep the version they started on.

use std::sync::Arc;
use std::time::Instant;

use super::jobs::{JobFailure, JobHandle};
use super::AdminError;
use crate::codec::TranscodeTarget;
use crate::dataset::parallel::Parallelism;
use crate::dataset::reshard::{reshard, Progress, ReshardError, ReshardOptions};
use crate::dataset::writer::{DatasetWriter, ShardTarget, WriteError, WriteOptions};
use crate::dataset::Subset;
use crate::server::registry::{RegistryError, ServedDataset};
use crate::server::ServerState;
use crate::transport::proto::v1::{JobState, ReshardRequest, ReshardResponse};

/// The zstd level used when a request gives none.
pub const DEFAULT_LEVEL: i32 = 3;

/// A request, checked.
struct Checked {
    source: Arc<ServedDataset>,
    target: ShardTarget,
    level: i32,
    compress_literals: bool,
    opts: ReshardOptions,
}

fn invalid(field: &'static str, why: impl Into<String>) -> AdminError {
    AdminError::Invalid {
        field,
        why: why.into(),
    }
}

/// The destination as compared between requests: no `file://`, no trailing slash.
fn same_place(a: &str) -> String {
    let a = a.trim();
    let a = a.strip_prefix("file://").unwrap_or(a);
    a.trim_end_matches('/').to_string()
}

fn check(state: &ServerState, req: &ReshardRequest) -> Result<Checked, AdminError> {
    let source = state
        .registry
        .get(&req.dataset)
        .ok_or_else(|| AdminError::UnknownDataset {
            name: req.dataset.clone(),
            registered: state.registry.names().join(", "),
        })?;
    let target = match (req.shard_samples, req.shard_bytes) {
        (0, 0) => {
            return Err(invalid(
                "shard_samples",
                "the shard target is zero; give shard_samples or shard_bytes (positive)",
            ))
        }
        (n, 0) => ShardTarget::Samples(n),
        (0, b) => ShardTarget::Bytes(b),
        _ => {
            return Err(invalid(
                "shard_samples",
                "give shard_samples or shard_bytes, not both",
            ))
        }
    };
    let level = if req.level == 0 {
        DEFAULT_LEVEL
    } else {
        req.level
    };
    crate::dataset::writer::check_level(level).map_err(|why| invalid("level", why))?;
    let dest = same_place(&req.destination);
    if dest.is_empty() {
        return Err(invalid("destination", "is empty; give a folder or URL"));
    }
    for d in state.registry.all() {
        if same_place(&d.location) == dest {
            return Err(invalid(
                "destination",
                format!(
                    "{} is where dataset {:?} is served from; write to a new location",
                    req.destination, d.name
                ),
            ));
        }
    }
    let transcode_edits = match req.transcode_edits.as_str() {
        "" => None,
        t => Some(
            t.parse::<TranscodeTarget>()
                .map_err(|why| invalid("transcode_edits", why))?,
        ),
    };
    let mut subsets = Vec::new();
    for name in &req.subsets {
        let s = Subset::from_name(name).ok_or_else(|| {
            invalid(
                "subsets",
                format!("unknown subset {name:?}: expected sft, preference or multi_turn"),
            )
        })?;
        if source.dataset.len(s) == 0 {
            return Err(invalid(
                "subsets",
                format!("dataset {:?} has no {name} samples", req.dataset),
            ));
        }
        subsets.push(s);
    }
    Ok(Checked {
        source,
        target,
        level,
        compress_literals: req.compress_literals,
        opts: ReshardOptions {
            subsets,
            transcode_edits,
            max_side: (req.max_side > 0).then_some(req.max_side),
            // The job's share of `reshard_threads`, set when it starts.
            parallel: Parallelism::threads(1),
        },
    })
}

/// Starts (or resumes) a reshard job. Blocking: prepares the destination.
pub fn start(state: &Arc<ServerState>, req: ReshardRequest) -> Result<ReshardResponse, AdminError> {
    let checked = check(state, &req)?;
    let _claim = state.jobs.claim();
    let limit = state.config.reshard_queue_jobs;
    if state.jobs.queued() >= limit {
        return Err(AdminError::TooManyJobs { limit });
    }
    let dest = same_place(&req.destination);
    let mut resume = None;
    for job in state.jobs.all() {
        let j = job.get();
        let Some(other) = &j.request else { continue };
        if same_place(&other.destination) != dest {
            continue;
        }
        match j.state() {
            JobState::Queued | JobState::Running => {
                return Err(AdminError::DestinationBusy {
                    destination: req.destination.clone(),
                    job: j.id,
                    why: "is being written by".into(),
                })
            }
            JobState::Interrupted if *other == req => resume = Some(job),
            JobState::Interrupted => {
                return Err(AdminError::DestinationBusy {
                    destination: req.destination.clone(),
                    job: j.id,
                    why: "holds the partial output, with other options, of interrupted".into(),
                })
            }
            _ => {}
        }
    }
    let writer = DatasetWriter::create_with(
        req.destination.trim(),
        WriteOptions {
            target: checked.target,
            level: checked.level,
            compress_literals: checked.compress_literals,
            // An interrupted job owns its destination: it may have got as far as the
            // manifest before the daemon died.
            overwrite: resume.is_some(),
        },
        state.store_config(),
    )
    .map_err(|e| match e {
        WriteError::Exists(_) => AdminError::DestinationExists {
            destination: req.destination.clone(),
        },
        e => AdminError::Destination {
            destination: req.destination.clone(),
            why: e.to_string(),
        },
    })?;
    let version = &checked.source.dataset.manifest().version;
    if let Some(job) = &resume {
        let was = job.get().source_version;
        if &was != version {
            return Err(AdminError::SourceChanged {
                job: job.get().id,
                dataset: req.dataset.clone(),
                was,
                now: version.clone(),
            });
        }
    }
    let total = checked.opts.total_samples(&checked.source.dataset);
    let resumed = resume.is_some();
    let handle = match resume {
        Some(h) => {
            state.jobs.requeue(&h, total);
            h
        }
        None => state.jobs.create(req.clone(), total, version),
    };
    let job_id = handle.get().id;
    tracing::info!(job = %job_id, dataset = %req.dataset, destination = %req.destination, resumed, "reshard queued");
    let st = state.clone();
    state.jobs.spawn(handle, move |h, threads| {
        let mut checked = checked;
        checked.opts.parallel.threads = threads;
        run(&st, h, checked, writer, &req)
    })?;
    Ok(ReshardResponse { job_id, resumed })
}

/// The job's work, on its own thread.
fn run(
    state: &ServerState,
    handle: &JobHandle,
    checked: Checked,
    writer: DatasetWriter,
    req: &ReshardRequest,
) -> Result<String, JobFailure> {
    let started = Instant::now();
    let total = handle.get().samples_total;
    // Shards an interrupted run completed; those still intact are reported again.
    let done = handle.shards();
    handle.record_shard(None);
    let mut on_progress = |p: Progress| {
        if let Some(closed) = p.closed {
            handle.record_shard(Some(closed));
        }
        handle.update(true, |j| {
            j.samples_resumed = p.resumed;
            j.samples_done = p.samples;
            j.bytes_written = p.bytes;
            j.shards_done = p.shards;
            let secs = started.elapsed().as_secs_f64();
            j.rate = if secs > 0.0 {
                (p.samples - p.resumed) as f64 / secs
            } else {
                0.0
            };
            j.eta_seconds = if j.rate > 0.0 {
                total.saturating_sub(p.samples) as f64 / j.rate
            } else {
                0.0
            };
        });
        !handle.cancelled()
    };
    let manifest = reshard(
        &checked.source.dataset,
        writer,
        &checked.opts,
        &done,
        &mut on_progress,
    )
    .map_err(|e| match e {
        ReshardError::Cancelled => JobFailure::Cancelled,
        e => JobFailure::Failed(e.to_string()),
    })?;
    handle.update(false, |j| {
        let shards = manifest.subsets.values().flat_map(|s| &s.shards);
        j.shards_done = shards.clone().count() as u64;
        // The files written, taken-over shards included: the same for a resumed job
        // as for an uninterrupted one.
        j.bytes_written = shards.map(|s| s.bytes).sum();
    });
    if req.activate {
        let ds =
            ServedDataset::open_with(&req.dataset, req.destination.trim(), state.store_config())
                .map_err(|e: RegistryError| {
                    JobFailure::Failed(format!("the new version does not open: {e}"))
                })?;
        state
            .versions
            .point(&state.registry, ds)
            .map_err(|e| JobFailure::Failed(format!("switching {}: {e}", req.dataset)))?;
        tracing::info!(dataset = %req.dataset, version = %manifest.version, location = %req.destination, "dataset switched to the resharded version");
    }
    Ok(manifest.version)
}
