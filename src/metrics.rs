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

/// Whether each configured dataset is loaded (1) or failing to load (0), by dataset.
pub const DATASET_LOADED: &str = "editfeed_dataset_loaded";

/// Sets whether `dataset` is loaded (the label set is the configured names).
pub fn dataset_loaded(dataset: &str, loaded: bool) {
    metrics::gauge!(DATASET_LOADED, "dataset" => dataset.to_string()).set(if loaded {
        1.0
    } else {
        0.0
    });
}

/// Counts one replaced sample.
pub fn sample_replaced() {
    metrics::counter!(SAMPLES_REPLACED).increment(1);
}

/// Batches sent per training job (the request's `job`; bounded by [`job_label`]).
pub const STREAM_BATCHES: &str = "editfeed_stream_batches_total";
/// Time per batch spent in each stage (`read`, `decode_augment`, `collate`, `send`),
/// summed over the batch's samples, in seconds.
pub const STAGE_SECONDS: &str = "editfeed_stage_seconds";
/// Sample jobs waiting for a worker.
pub const POOL_QUEUED: &str = "editfeed_pool_queued_jobs";
/// Workers running a job.
pub const POOL_BUSY: &str = "editfeed_pool_busy_workers";
/// Worker threads.
pub const POOL_WORKERS: &str = "editfeed_pool_workers";

/// The most distinct job labels kept; later jobs share the label `other`.
pub const MAX_JOB_LABELS: usize = 32;

/// Counts one batch sent, with its subset (three values) and job (bounded).
pub fn batch_sent(subset: &'static str, bytes: u64, job: &str) {
    metrics::counter!(BATCHES_SENT, "subset" => subset).increment(1);
    metrics::counter!(BATCH_BYTES_SENT, "subset" => subset).increment(bytes);
    // Not "job": Prometheus reserves that label for the scrape target.
    metrics::counter!(STREAM_BATCHES, "training_job" => job.to_string()).increment(1);
}

/// The label a job name is counted under: the name while fewer than
/// [`MAX_JOB_LABELS`] distinct names have been seen, `other` after; empty is `default`.
pub fn job_label(job: &str) -> String {
    static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    if job.is_empty() {
        return "default".into();
    }
    let clean: String = job
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(64)
        .collect();
    let mut seen = SEEN.lock().expect("job label lock");
    if seen.contains(&clean) {
        return clean;
    }
    if seen.len() < MAX_JOB_LABELS {
        seen.push(clean.clone());
        return clean;
    }
    "other".into()
}

/// Records one batch's time in a stage.
pub fn stage_seconds(stage: &'static str, seconds: f64) {
    metrics::histogram!(STAGE_SECONDS, "stage" => stage).record(seconds);
}

/// Publishes the worker pool's use: tasks queued, workers busy, workers in all.
pub fn pool_stats(queued: usize, busy: usize, workers: usize) {
    metrics::gauge!(POOL_QUEUED).set(queued as f64);
    metrics::gauge!(POOL_BUSY).set(busy as f64);
    metrics::gauge!(POOL_WORKERS).set(workers as f64);
}

/// Bytes of batches in flight charged to the memory budget (`max_inflight_bytes`).
pub const INFLIGHT_BYTES: &str = "editfeed_inflight_bytes";
/// Times a stream waited for room in the memory budget to be admitted.
pub const BUDGET_WAITS: &str = "editfeed_budget_waits_total";

/// Publishes the bytes charged to the memory budget.
pub fn inflight_bytes(bytes: u64) {
    metrics::gauge!(INFLIGHT_BYTES).set(bytes as f64);
}

/// Counts one wait for the memory budget.
pub fn budget_wait() {
    metrics::counter!(BUDGET_WAITS).increment(1);
}

/// Histogram buckets (seconds) for the latency histograms.
pub const SECONDS_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Records how long a batch took to prepare.
pub fn batch_prepared(seconds: f64) {
    metrics::histogram!(BATCH_PREPARE_SECONDS).record(seconds);
}

/// Adjusts the open stream gauge.
pub fn streams_changed(delta: f64) {
    metrics::gauge!(ACTIVE_STREAMS).increment(delta);
}

/// Requests sent to object stores, retries included.
pub const STORE_REQUESTS: &str = "editfeed_store_requests_total";
/// Object-store requests retried after a transient failure (5xx, timeout, reset).
pub const STORE_RETRIES: &str = "editfeed_store_retries_total";
/// Object-store requests that failed for good, by `kind`: not_found, denied,
/// unavailable, failed, config, io.
pub const STORE_ERRORS: &str = "editfeed_store_errors_total";
/// Bytes read from dataset stores, by `store`: file, s3, gs or az.
pub const STORE_READ_BYTES: &str = "editfeed_store_read_bytes_total";
/// Reads served by the store's disk cache.
pub const STORE_CACHE_HITS: &str = "editfeed_store_cache_hits_total";
/// Reads the store's disk cache could not serve.
pub const STORE_CACHE_MISSES: &str = "editfeed_store_cache_misses_total";
/// Entries evicted from the store's disk cache to keep it under its byte limit.
pub const STORE_CACHE_EVICTIONS: &str = "editfeed_store_cache_evictions_total";
/// Disk cache problems by `kind`: corrupt (entry refetched), write (read went uncached).
pub const STORE_CACHE_ERRORS: &str = "editfeed_store_cache_errors_total";
/// Bytes held by the store's disk cache.
pub const STORE_CACHE_BYTES: &str = "editfeed_store_cache_bytes";

/// Counts one request sent to an object store.
pub fn store_request() {
    metrics::counter!(STORE_REQUESTS).increment(1);
}

/// Counts one retried object-store request.
pub fn store_retry() {
    metrics::counter!(STORE_RETRIES).increment(1);
}

/// Counts one failed object-store request (`kind` is one of a fixed few).
pub fn store_error(kind: &'static str) {
    metrics::counter!(STORE_ERRORS, "kind" => kind).increment(1);
}

/// Counts bytes read from a store (`store` is its kind: file, s3, gs or az).
pub fn store_read_bytes(store: &'static str, bytes: u64) {
    metrics::counter!(STORE_READ_BYTES, "store" => store).increment(bytes);
}

/// Counts one disk cache hit.
pub fn store_cache_hit() {
    metrics::counter!(STORE_CACHE_HITS).increment(1);
}

/// Counts one disk cache miss.
pub fn store_cache_miss() {
    metrics::counter!(STORE_CACHE_MISSES).increment(1);
}

/// Counts one disk cache eviction.
pub fn store_cache_eviction() {
    metrics::counter!(STORE_CACHE_EVICTIONS).increment(1);
}

/// Counts one disk cache problem (`kind`: corrupt or write).
pub fn store_cache_error(kind: &'static str) {
    metrics::counter!(STORE_CACHE_ERRORS, "kind" => kind).increment(1);
}

/// Sets the disk cache size gauge.
pub fn store_cache_bytes(bytes: u64) {
    metrics::gauge!(STORE_CACHE_BYTES).set(bytes as f64);
}

/// What kind of metric a name is, for its description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A monotonically increasing count.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution of observations.
    Histogram,
}

/// Every metric with its kind and help text (the `# HELP` line on `/metrics`).
pub const HELP: &[(&str, Kind, &str)] = &[
    (
        SAMPLES_REPLACED,
        Kind::Counter,
        "Samples replaced by the next one because they could not be read or decoded",
    ),
    (
        BATCHES_SENT,
        Kind::Counter,
        "Batches sent to trainers, by subset",
    ),
    (
        BATCH_BYTES_SENT,
        Kind::Counter,
        "Bytes of batch tensors sent to trainers, by subset",
    ),
    (ACTIVE_STREAMS, Kind::Gauge, "Trainer streams open now"),
    (
        DATASET_LOADED,
        Kind::Gauge,
        "1 when the dataset is loaded and served, 0 while it fails to load (see admin list)",
    ),
    (
        BATCH_PREPARE_SECONDS,
        Kind::Histogram,
        "Seconds from submitting a batch's samples to its collation",
    ),
    (
        STREAM_BATCHES,
        Kind::Counter,
        "Batches sent, by training job (at most 32 job labels, then other)",
    ),
    (
        STAGE_SECONDS,
        Kind::Histogram,
        "Seconds per batch spent in each stage: read, decode_augment, collate, send",
    ),
    (POOL_QUEUED, Kind::Gauge, "Sample jobs waiting for a worker"),
    (POOL_BUSY, Kind::Gauge, "Workers running a job"),
    (POOL_WORKERS, Kind::Gauge, "Worker threads in the pool"),
    (
        STORE_REQUESTS,
        Kind::Counter,
        "Requests sent to object stores, retries included",
    ),
    (
        STORE_RETRIES,
        Kind::Counter,
        "Object-store requests retried after a transient failure",
    ),
    (
        STORE_ERRORS,
        Kind::Counter,
        "Object-store requests that failed for good, by kind",
    ),
    (
        STORE_READ_BYTES,
        Kind::Counter,
        "Bytes read from dataset stores, by store kind (file, s3, gs, az)",
    ),
    (
        STORE_CACHE_HITS,
        Kind::Counter,
        "Reads served by the disk cache",
    ),
    (
        STORE_CACHE_MISSES,
        Kind::Counter,
        "Reads the disk cache could not serve",
    ),
    (
        STORE_CACHE_EVICTIONS,
        Kind::Counter,
        "Entries evicted from the disk cache",
    ),
    (
        STORE_CACHE_ERRORS,
        Kind::Counter,
        "Disk cache operations that failed (the read went to the store)",
    ),
    (
        INFLIGHT_BYTES,
        Kind::Gauge,
        "Bytes of batches in flight charged to the memory budget (max_inflight_bytes)",
    ),
    (
        BUDGET_WAITS,
        Kind::Counter,
        "Times a stream waited for room in the memory budget to be admitted",
    ),
    (
        STORE_CACHE_BYTES,
        Kind::Gauge,
        "Bytes held in the disk cache",
    ),
];

/// Registers the help text of every metric with the installed recorder.
pub fn describe() {
    for &(name, kind, help) in HELP {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, metrics::Unit::Seconds, help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_name_has_help() {
        let source = include_str!("metrics.rs");
        for line in source.lines() {
            let Some(rest) = line.strip_prefix("pub const ") else {
                continue;
            };
            let Some((_, value)) = rest.split_once("= \"") else {
                continue;
            };
            let name = value.trim_end_matches("\";");
            assert!(
                name.starts_with("editfeed_"),
                "{name} lacks the editfeed_ prefix"
            );
            assert!(
                HELP.iter().any(|(n, _, _)| *n == name),
                "{name} has no help text"
            );
        }
    }
}
