//! Every metric name in one place (`editfeed_<what>_<unit>[_total]`), with small helpers
//! so call sites cannot misspell a name or grow an unbounded label set. Nothing here is
//! called per sample in a hot loop except counters of rare events.

/// Samples replaced because they could not be read or decoded.
pub const SAMPLES_REPLACED: &str = "editfeed_samples_replaced_total";
/// Batches sent to clients.
pub const BATCHES_SENT: &str = "editfeed_batches_sent_total";
/// Bytes of batch tensors sent to clients.
pub const BATCH_BYTES_SENT: &str = "editfeed_batch_bytes_sent_total";
/// Streams open now.
pub const ACTIVE_STREAMS: &str = "editfeed_active_streams";
/// Time to prepare one batch (read, decode, augment, collate), in seconds.
pub const BATCH_PREPARE_SECONDS: &str = "editfeed_batch_prepare_seconds";

/// Counts one replaced sample.
pub fn sample_replaced() {
    metrics::counter!(SAMPLES_REPLACED).increment(1);
}

/// Counts one batch sent, with its subset (a bounded label: three values).
pub fn batch_sent(subset: &'static str, bytes: u64) {
    metrics::counter!(BATCHES_SENT, "subset" => subset).increment(1);
    metrics::counter!(BATCH_BYTES_SENT, "subset" => subset).increment(bytes);
}

/// Records how long a batch took to prepare.
pub fn batch_prepared(seconds: f64) {
    metrics::histogram!(BATCH_PREPARE_SECONDS).record(seconds);
}

/// Adjusts the open stream gauge.
pub fn streams_changed(delta: f64) {
    metrics::gauge!(ACTIVE_STREAMS).increment(delta);
}
