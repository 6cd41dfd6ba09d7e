//! Process-wide time spent in each pipeline stage, summed over all streams and workers:
//! the benchmark reads it to report where serving time goes. One relaxed atomic add per
//! sample and stage; the Prometheus histograms live in `metrics.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A pipeline stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Range read, zstd frame decode and schema check.
    Read = 0,
    /// Image decode, crop, resize, flip (and jitter).
    Augment = 1,
    /// Copying samples into the batch tensors.
    Collate = 2,
    /// Waiting for the client to take the batch (gRPC encode and flow control).
    Send = 3,
}

/// Every stage, in report order.
pub const STAGES: [(Stage, &str); 4] = [
    (Stage::Read, "read"),
    (Stage::Augment, "decode+augment"),
    (Stage::Collate, "collate"),
    (Stage::Send, "send"),
];

static NANOS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// Adds the time since `since` to a stage.
pub fn record(stage: Stage, since: Instant) {
    NANOS[stage as usize].fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
}

/// Seconds spent per stage since start (or the last reset).
pub fn snapshot() -> [f64; 4] {
    std::array::from_fn(|i| NANOS[i].load(Ordering::Relaxed) as f64 / 1e9)
}

/// Zeroes the counters.
pub fn reset() {
    for n in &NANOS {
        n.store(0, Ordering::Relaxed);
    }
}
