//! The counters of one store ([`StoreStats`]), published as `editfeed_store_*`
//! metrics as they change and read back as a [`StoreStatsSnapshot`]. Part of the first
//! stage of the flow: STORE -> shard reader -> plan -> ...

use std::sync::atomic::{AtomicU64, Ordering};

use super::StoreError;

/// Counters of one store, also published as metrics (`editfeed_store_*`). Tests and
/// `Stats` answers read them through [`StoreStats::snapshot`].
#[derive(Debug, Default)]
pub struct StoreStats {
    /// The kind of store (`file`, `s3`, `gs`, `az`): the bounded `store` label of the
    /// bytes-read metric.
    kind: &'static str,
    requests: AtomicU64,
    retries: AtomicU64,
    bytes_read: AtomicU64,
    errors_not_found: AtomicU64,
    errors_denied: AtomicU64,
    errors_unavailable: AtomicU64,
    errors_other: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    cache_evictions: AtomicU64,
    cache_corrupt: AtomicU64,
    cache_write_errors: AtomicU64,
}

/// The values of [`StoreStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStatsSnapshot {
    /// Requests sent, retries included.
    pub requests: u64,
    /// Requests retried after a transient failure.
    pub retries: u64,
    /// Bytes received from the store.
    pub bytes_read: u64,
    /// Requests that found no object.
    pub errors_not_found: u64,
    /// Requests refused for credentials or permissions.
    pub errors_denied: u64,
    /// Requests that failed after every retry.
    pub errors_unavailable: u64,
    /// Other failed requests.
    pub errors_other: u64,
    /// Reads served by the disk cache.
    pub cache_hits: u64,
    /// Reads the disk cache could not serve.
    pub cache_misses: u64,
    /// Entries evicted from the disk cache.
    pub cache_evictions: u64,
    /// Cache entries found corrupt (and fetched again).
    pub cache_corrupt: u64,
    /// Writes to the cache that failed (the read went on uncached).
    pub cache_write_errors: u64,
}

impl StoreStats {
    /// Counters of a store of one kind (`file`, `s3`, `gs` or `az`).
    pub fn new(kind: &'static str) -> StoreStats {
        StoreStats {
            kind,
            ..StoreStats::default()
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> StoreStatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreStatsSnapshot {
            requests: l(&self.requests),
            retries: l(&self.retries),
            bytes_read: l(&self.bytes_read),
            errors_not_found: l(&self.errors_not_found),
            errors_denied: l(&self.errors_denied),
            errors_unavailable: l(&self.errors_unavailable),
            errors_other: l(&self.errors_other),
            cache_hits: l(&self.cache_hits),
            cache_misses: l(&self.cache_misses),
            cache_evictions: l(&self.cache_evictions),
            cache_corrupt: l(&self.cache_corrupt),
            cache_write_errors: l(&self.cache_write_errors),
        }
    }

    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        crate::metrics::store_request();
    }

    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        crate::metrics::store_retry();
    }

    pub(crate) fn read(&self, bytes: u64) {
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
        crate::metrics::store_read_bytes(self.kind, bytes);
    }

    pub(crate) fn error(&self, e: &StoreError) {
        let counter = match e {
            StoreError::NotFound { .. } => &self.errors_not_found,
            StoreError::Denied { .. } => &self.errors_denied,
            StoreError::Unavailable { .. } => &self.errors_unavailable,
            _ => &self.errors_other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        crate::metrics::store_error(e.kind());
    }

    pub(crate) fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
        crate::metrics::store_cache_hit();
    }

    pub(crate) fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
        crate::metrics::store_cache_miss();
    }

    pub(crate) fn cache_eviction(&self) {
        self.cache_evictions.fetch_add(1, Ordering::Relaxed);
        crate::metrics::store_cache_eviction();
    }

    pub(crate) fn cache_corrupt(&self) {
        self.cache_corrupt.fetch_add(1, Ordering::Relaxed);
        crate::metrics::store_cache_error("corrupt");
    }

    pub(crate) fn cache_write_error(&self) {
        self.cache_write_errors.fetch_add(1, Ordering::Relaxed);
        crate::metrics::store_cache_error("write");
    }
}
