//! What `Stats` reports: the open streams (each registered by the Loader service while
//! it runs, with its job, rank, step, rate and how far the server is ahead of the
//! client), the worker pool's use and the bytes read per dataset.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::pipeline::stream::StreamProgress;
use crate::server::ServerState;
use crate::transport::proto::v1 as pb;

/// One open stream as `Stats` shows it.
pub struct ActiveStream {
    /// The request's job name.
    pub job: String,
    /// The dataset name it streams.
    pub dataset: String,
    /// The dataset version it started on (and keeps to its end).
    pub version: String,
    /// Its rank.
    pub rank: u32,
    /// Its world size.
    pub world_size: u32,
    /// When it started.
    pub started: Instant,
    /// Its counters, shared with its producer.
    pub progress: Arc<StreamProgress>,
}

/// The streams open now.
#[derive(Default)]
pub struct ActiveStreams {
    streams: Mutex<BTreeMap<u64, Arc<ActiveStream>>>,
    next: AtomicU64,
}

/// Removes its stream from [`ActiveStreams`] when dropped (when the stream ends).
pub struct ActiveGuard {
    state: Arc<ServerState>,
    id: u64,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.state
            .active
            .streams
            .lock()
            .expect("active streams lock")
            .remove(&self.id);
    }
}

impl ActiveStreams {
    /// Registers a stream until the guard is dropped.
    pub fn open(state: &Arc<ServerState>, stream: ActiveStream) -> ActiveGuard {
        let id = state.active.next.fetch_add(1, Ordering::Relaxed);
        state
            .active
            .streams
            .lock()
            .expect("active streams lock")
            .insert(id, Arc::new(stream));
        ActiveGuard {
            state: state.clone(),
            id,
        }
    }

    fn all(&self) -> Vec<Arc<ActiveStream>> {
        self.streams
            .lock()
            .expect("active streams lock")
            .values()
            .cloned()
            .collect()
    }
}

/// The `Stats` response for the daemon now.
pub fn stats(state: &ServerState) -> pb::StatsResponse {
    let streams = state
        .active
        .all()
        .iter()
        .map(|s| {
            let age = s.started.elapsed().as_secs_f64();
            let batches = s.progress.sent.load(Ordering::Relaxed);
            pb::StreamStats {
                job: s.job.clone(),
                dataset: s.dataset.clone(),
                version: s.version.clone(),
                rank: s.rank,
                world_size: s.world_size,
                step: s.progress.step.load(Ordering::Relaxed),
                batches,
                batches_per_second: if age > 0.0 { batches as f64 / age } else { 0.0 },
                ahead_batches: s.progress.ahead(),
                age_seconds: age,
            }
        })
        .collect();
    let p = state.pool.stats();
    let datasets = state
        .registry
        .all()
        .iter()
        .map(|d| pb::DatasetBytes {
            name: d.name.clone(),
            version: d.dataset.manifest().version.clone(),
            bytes_read: d.dataset.bytes_read(),
        })
        .collect();
    pb::StatsResponse {
        streams,
        pool: Some(pb::PoolStats {
            workers: p.workers as u64,
            busy: p.busy as u64,
            queued: p.queued as u64,
            completed: p.completed,
        }),
        datasets,
        active_jobs: state.jobs.active() as u64,
        memory: Some({
            let m = state.budget.stats();
            pb::MemoryStats {
                max_inflight_bytes: m.limit,
                inflight_bytes: m.in_use,
                peak_inflight_bytes: m.peak,
                waits: m.waits,
            }
        }),
    }
}
