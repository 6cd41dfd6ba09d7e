//! The store: where a dataset's bytes come from and go to. A local folder, or a bucket
//! prefix in S3 (or an S3-compatible server), Google Cloud Storage or Azure Blob Storage
//! through `object_store`. First stage of the flow:
//! STORE -> shard reader -> plan -> prefetch -> decode/augment -> collate -> gRPC.
//!
//! - Nothing is ever listed: the manifest names every object, so a store only gets,
//!   range-gets, puts and deletes objects by name.
//! - Remote requests run on the store's own small tokio runtime ([`io`]) under a
//!   concurrency limit, retried with backoff on transient failures and counted
//!   ([`retry`]), optionally through a local disk cache ([`cache`]).
//! - Every method here is blocking and safe to call from any thread (worker threads,
//!   command-line code, even a runtime thread during startup): the caller parks until
//!   the I/O runtime answers, so the gRPC server's runtime never runs store I/O.
//! - Local folders are read straight from the calling thread, through memory maps
//!   ([`maps`]; positioned reads with `mmap = false`): the page cache is their cache,
//!   and a hop through a runtime would only add latency.

pub mod cache;
pub mod config;
pub(crate) mod io;
pub mod maps;
pub(crate) mod remote;
pub mod retry;
pub mod url;

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::multipart::{MultipartStore, PartId};
use object_store::ObjectStore;
use tokio::sync::Semaphore;

pub use cache::DiskCache;
pub use config::{StoreConfig, StoreConfigError};
pub use url::{AsLocation, Location, RemoteUrl, Scheme, UrlError};

use io::IoRuntime;
use remote::{ChunkQueue, Core};
use retry::RetryPolicy;

/// Why a store operation failed; every variant names the object's URL or path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist (404).
    #[error("{url}: not found")]
    NotFound {
        /// The object.
        url: String,
    },
    /// The credentials are missing, wrong or not allowed to read it (401, 403).
    #[error("{url}: access denied: {message}")]
    Denied {
        /// The object.
        url: String,
        /// The store's own words.
        message: String,
    },
    /// Transient failures outlasted the retries (5xx, timeouts, unreachable endpoint).
    #[error("{url}: store unavailable after {attempts} attempts: {message}")]
    Unavailable {
        /// The object.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        message: String,
    },
    /// The store refused the request for a reason retrying cannot fix.
    #[error("{url}: {message}")]
    Failed {
        /// The object.
        url: String,
        /// The store's own words.
        message: String,
    },
    /// A conditional read found the object unchanged (handled inside the store).
    #[error("{url}: not modified")]
    NotModified {
        /// The object.
        url: String,
    },
    /// The location or its configuration is unusable.
    #[error("{url}: {why}")]
    Config {
        /// The location.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// A local file operation failed.
    #[error("{url}: {source}")]
    Io {
        /// The file.
        url: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// A short, bounded label for metrics: `not_found`, `denied`, `unavailable`,
    /// `failed`, `config` or `io`.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::NotFound { .. } => "not_found",
            StoreError::Denied { .. } => "denied",
            StoreError::Unavailable { .. } => "unavailable",
            StoreError::Failed { .. } | StoreError::NotModified { .. } => "failed",
            StoreError::Config { .. } => "config",
            StoreError::Io { .. } => "io",
        }
    }

    /// The object or location the error is about.
    pub fn url(&self) -> &str {
        match self {
            StoreError::NotFound { url }
            | StoreError::Denied { url, .. }
            | StoreError::Unavailable { url, .. }
            | StoreError::Failed { url, .. }
            | StoreError::NotModified { url }
            | StoreError::Config { url, .. }
            | StoreError::Io { url, .. } => url,
        }
    }

    /// Whether the store, not the data, is the problem (unreachable, or our
    /// credentials refused): another daemon may well succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. } | StoreError::Denied { .. }
        )
    }
}

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

/// A dataset's store: a local folder or a bucket prefix. Cheap to share behind an `Arc`.
pub struct Store {
    location: Location,
    backend: Backend,
    stats: Arc<StoreStats>,
    /// Local folders whose shards are read through memory maps.
    maps: Option<maps::Maps>,
}

enum Backend {
    Local(PathBuf),
    Remote(Remote),
}

struct Remote {
    // Field order matters: tasks hold `core`; the runtime goes last.
    core: Arc<Core>,
    io: Arc<IoRuntime>,
    read_ahead_samples: usize,
    read_ahead_bytes: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location.to_string())
            .finish()
    }
}

/// Read-ahead limits of a remote store, per stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadAheadLimits {
    /// Samples read ahead at most.
    pub samples: usize,
    /// Bytes read ahead at most.
    pub bytes: u64,
}

impl Store {
    /// Opens the store of a location. Builds the client (no request is sent yet) and
    /// opens the disk cache when one is configured; a cache that cannot be opened is
    /// logged and skipped, never fatal.
    pub fn open(location: &Location, config: &StoreConfig) -> Result<Store, StoreError> {
        config.validate().map_err(|e| StoreError::Config {
            url: location.to_string(),
            why: e.to_string(),
        })?;
        match location {
            Location::Local(p) => Ok(Store {
                location: location.clone(),
                backend: Backend::Local(p.clone()),
                stats: Arc::new(StoreStats::new("file")),
                maps: config.mmap.then(maps::Maps::default),
            }),
            Location::Remote(url) => {
                let (store, multipart) = remote::build(url, config)?;
                Store::with_object_store(url.clone(), store, multipart, config)
            }
        }
    }

    /// A store over an already-built `object_store` client (a test double, a wrapper
    /// that injects faults, or a store configured in code). `multipart` enables
    /// part-by-part uploads; without it, objects are uploaded in one request.
    pub fn with_object_store(
        url: RemoteUrl,
        store: Arc<dyn ObjectStore>,
        multipart: Option<Arc<dyn MultipartStore>>,
        config: &StoreConfig,
    ) -> Result<Store, StoreError> {
        let stats = Arc::new(StoreStats::new(url.scheme.name()));
        let cache = config.cache_dir.as_ref().and_then(|dir| {
            match DiskCache::open(dir, config.cache_bytes, stats.clone()) {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the store cache; reading uncached");
                    None
                }
            }
        });
        let io = IoRuntime::new(config.io_threads).map_err(|source| StoreError::Io {
            url: url.to_string(),
            source,
        })?;
        let core = Core {
            url: url.clone(),
            store,
            multipart,
            limit: Semaphore::new(config.max_concurrent_requests.max(1)),
            policy: RetryPolicy {
                max_retries: config.max_retries,
                initial: Duration::from_millis(config.retry_initial_backoff_ms),
                max: Duration::from_millis(config.retry_max_backoff_ms),
            },
            cache,
            stats: stats.clone(),
            coalesce_gap: config.coalesce_gap_bytes,
            part_bytes: config.upload_part_bytes.max(5 << 20) as usize,
            upload_concurrency: config.upload_concurrency.max(1),
        };
        Ok(Store {
            location: Location::Remote(url),
            backend: Backend::Remote(Remote {
                core: Arc::new(core),
                io: Arc::new(io),
                read_ahead_samples: config.read_ahead_samples,
                read_ahead_bytes: config.read_ahead_bytes,
            }),
            stats,
            maps: None,
        })
    }

    /// Where the store is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Whether it is an object store.
    pub fn is_remote(&self) -> bool {
        matches!(self.backend, Backend::Remote(_))
    }

    /// The path or URL of an object, for messages.
    pub fn url_of(&self, name: &str) -> String {
        self.location.display_of(name)
    }

    /// The store's counters.
    pub fn stats(&self) -> StoreStatsSnapshot {
        self.stats.snapshot()
    }

    /// The disk cache, when one is in use.
    pub fn cache(&self) -> Option<&DiskCache> {
        match &self.backend {
            Backend::Remote(r) => r.core.cache.as_deref(),
            Backend::Local(_) => None,
        }
    }

    /// How far each stream reads ahead; `None` for local folders (a positioned read
    /// from the page cache needs no read-ahead) or when configured off.
    pub fn read_ahead_limits(&self) -> Option<ReadAheadLimits> {
        match &self.backend {
            Backend::Remote(r) if r.read_ahead_samples > 0 => Some(ReadAheadLimits {
                samples: r.read_ahead_samples,
                bytes: r.read_ahead_bytes.max(1),
            }),
            _ => None,
        }
    }

    fn local_path(root: &Path, name: &str) -> PathBuf {
        if name.is_empty() {
            root.to_path_buf()
        } else {
            root.join(name)
        }
    }

    fn io_err(&self, name: &str) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        let url = self.url_of(name);
        move |source| StoreError::Io { url, source }
    }

    /// Runs an async store call on the I/O runtime and waits for it.
    fn remote_call<T, F, Fut>(r: &Remote, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<Core>) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        r.io.block_on(f(r.core.clone()))
    }

    /// A whole object, uncached.
    pub fn read(&self, name: &str) -> Result<Bytes, StoreError> {
        match &self.backend {
            Backend::Local(root) => {
                let bytes = std::fs::read(Self::local_path(root, name))
                    .map(Bytes::from)
                    .map_err(self.io_err(name))?;
                self.stats.read(bytes.len() as u64);
                Ok(bytes)
            }
            Backend::Remote(r) => {
                let name = name.to_string();
                Self::remote_call(r, |c| async move { c.get(&name).await })
            }
        }
    }

    /// A whole object whose content is pinned by `tag` (its checksum from the
    /// manifest); cached under that tag.
    pub fn read_versioned(&self, name: &str, tag: &str) -> Result<Bytes, StoreError> {
        match &self.backend {
            Backend::Local(_) => self.read(name),
            Backend::Remote(r) => {
                let (name, tag) = (name.to_string(), tag.to_string());
                Self::remote_call(r, |c| async move { c.get_versioned(&name, &tag).await })
            }
        }
    }

    /// A whole object that may change (the manifest): always asked of the store, but
    /// with the cached copy's ETag, so an unchanged object is not downloaded again.
    pub fn read_revalidated(&self, name: &str) -> Result<Bytes, StoreError> {
        match &self.backend {
            Backend::Local(_) => self.read(name),
            Backend::Remote(r) => {
                let name = name.to_string();
                Self::remote_call(r, |c| async move { c.get_revalidated(&name).await })
            }
        }
    }

    /// One byte range of an object (cached under `tag` when given).
    pub fn read_range(
        &self,
        name: &str,
        range: Range<u64>,
        tag: Option<&str>,
    ) -> Result<Bytes, StoreError> {
        let mut v = self.read_ranges(name, std::slice::from_ref(&range), tag)?;
        Ok(v.pop().expect("one range in, one out"))
    }

    /// Several byte ranges of one object, in the order given; ranges that touch are
    /// fetched with one request.
    pub fn read_ranges(
        &self,
        name: &str,
        ranges: &[Range<u64>],
        tag: Option<&str>,
    ) -> Result<Vec<Bytes>, StoreError> {
        match &self.backend {
            Backend::Local(root) => {
                let path = Self::local_path(root, name);
                // A file that cannot be mapped (a file system without mmap support) is
                // read with positioned reads; one that cannot be opened fails there too.
                let mut map_error = None;
                if let Some(maps) = self.maps.as_ref().filter(|m| m.enabled()) {
                    match maps.read(&path, ranges) {
                        Ok(out) => {
                            self.stats.read(out.iter().map(|b| b.len() as u64).sum());
                            return Ok(out);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                            return Err(self.io_err(name)(e));
                        }
                        Err(e) => map_error = Some(e),
                    }
                }
                let file = File::open(&path).map_err(self.io_err(name))?;
                let all: Vec<usize> = (0..ranges.len()).collect();
                let mut out = vec![Bytes::new(); ranges.len()];
                for (span, members) in remote::coalesce(ranges, &all, 0) {
                    let buf = Bytes::from(
                        pread(&file, span.start, (span.end - span.start) as usize)
                            .map_err(self.io_err(name))?,
                    );
                    self.stats.read(buf.len() as u64);
                    for i in members {
                        let r = &ranges[i];
                        out[i] = buf
                            .slice((r.start - span.start) as usize..(r.end - span.start) as usize);
                    }
                }
                if let (Some(e), Some(maps)) = (map_error, &self.maps) {
                    maps.refuse();
                    maps::mapping_failed(&path, &e);
                }
                Ok(out)
            }
            Backend::Remote(r) => {
                let (name, ranges, tag) =
                    (name.to_string(), ranges.to_vec(), tag.map(String::from));
                Self::remote_call(r, |c| async move {
                    c.get_ranges(&name, ranges, tag.as_deref()).await
                })
            }
        }
    }

    /// The future of one range read, to run on the store's I/O runtime (read-ahead);
    /// `None` for local folders.
    pub(crate) fn range_task(
        &self,
        name: &str,
        range: Range<u64>,
        tag: Option<&str>,
    ) -> Option<impl std::future::Future<Output = Result<Bytes, StoreError>> + Send + 'static> {
        let Backend::Remote(r) = &self.backend else {
            return None;
        };
        let core = r.core.clone();
        let (name, tag) = (name.to_string(), tag.map(String::from));
        Some(async move { core.get_range(&name, range, tag.as_deref()).await })
    }

    /// The I/O runtime's handle; `None` for local folders.
    pub(crate) fn io_handle(&self) -> Option<tokio::runtime::Handle> {
        match &self.backend {
            Backend::Remote(r) => Some(r.io.handle().clone()),
            Backend::Local(_) => None,
        }
    }

    /// A whole object as a stream of bytes (shards without an index). A remote body
    /// that breaks mid-way is resumed from the byte reached.
    pub fn reader(&self, name: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        match &self.backend {
            Backend::Local(root) => {
                let file = File::open(Self::local_path(root, name)).map_err(self.io_err(name))?;
                let counted = CountedRead {
                    inner: file,
                    stats: self.stats.clone(),
                };
                Ok(Box::new(std::io::BufReader::with_capacity(
                    1 << 20,
                    counted,
                )))
            }
            Backend::Remote(r) => {
                let queue = Arc::new(ChunkQueue::new(16));
                let (core, q, n) = (r.core.clone(), queue.clone(), name.to_string());
                let task = r.io.spawn(async move { core.stream(&n, q).await });
                Ok(Box::new(RemoteReader {
                    queue,
                    current: Bytes::new(),
                    task,
                }))
            }
        }
    }

    /// Whether an object exists.
    pub fn exists(&self, name: &str) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Local(root) => Ok(Self::local_path(root, name).exists()),
            Backend::Remote(r) => {
                let name = name.to_string();
                Self::remote_call(r, |c| async move { c.exists(&name).await })
            }
        }
    }

    /// Writes a whole object atomically: a local file through a synced temporary file
    /// and a rename; a remote object in one request.
    pub fn put(&self, name: &str, bytes: Bytes) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Local(root) => write_atomic(&Self::local_path(root, name), &bytes)
                .map_err(|(url, source)| StoreError::Io { url, source }),
            Backend::Remote(r) => {
                let name = name.to_string();
                Self::remote_call(r, |c| async move { c.put(&name, bytes).await })
            }
        }
    }

    /// Deletes an object; a missing one is fine.
    pub fn delete(&self, name: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Local(root) => {
                let path = Self::local_path(root, name);
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        sync_dir(path.parent().unwrap_or(root));
                        Ok(())
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(self.io_err(name)(e)),
                }
            }
            Backend::Remote(r) => {
                let name = name.to_string();
                Self::remote_call(r, |c| async move { c.delete(&name).await })
            }
        }
    }

    /// Makes the folder of a local store (nothing to do for a bucket prefix).
    pub fn create_root(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Local(root) => std::fs::create_dir_all(root).map_err(self.io_err("")),
            Backend::Remote(_) => Ok(()),
        }
    }

    /// A writer that streams an object in: locally a `.partial` file renamed into
    /// place by [`ObjectWriter::finish`]; remotely a multipart upload whose parts go
    /// out while the rest is written (or one request for a small object). Until
    /// `finish`, nothing is visible under `name`.
    pub fn writer(&self, name: &str) -> Result<ObjectWriter, StoreError> {
        match &self.backend {
            Backend::Local(root) => {
                let path = Self::local_path(root, name);
                let partial = Self::local_path(root, &format!("{name}.partial"));
                let file = File::create(&partial).map_err(|source| StoreError::Io {
                    url: partial.display().to_string(),
                    source,
                })?;
                Ok(ObjectWriter {
                    url: path.display().to_string(),
                    written: 0,
                    inner: WriterInner::Local {
                        file: BufWriter::with_capacity(1 << 20, file),
                        partial,
                        path,
                    },
                })
            }
            Backend::Remote(r) => Ok(ObjectWriter {
                url: r.core.url_of(name),
                written: 0,
                inner: WriterInner::Remote(Upload {
                    core: r.core.clone(),
                    io: r.io.clone(),
                    name: name.to_string(),
                    buf: Vec::new(),
                    id: None,
                    parts: Vec::new(),
                    finished: false,
                }),
            }),
        }
    }
}

/// A local file read as a stream, its bytes counted as they are read (in the buffered
/// reader's large chunks, not per sample).
struct CountedRead {
    inner: File,
    stats: Arc<StoreStats>,
}

impl Read for CountedRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.stats.read(n as u64);
        Ok(n)
    }
}

/// Reads `len` bytes at `offset` of a file (one positioned read).
pub fn pread(file: &File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            std::io::Error::new(
                e.kind(),
                format!("shard is shorter than offset {offset} + {len}"),
            )
        } else {
            e
        }
    })?;
    Ok(buf)
}

/// Writes a file through a temporary name, syncs it and renames it into place; on
/// failure returns the path that failed with the error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), (String, std::io::Error)> {
    let tmp = path.with_extension("tmp");
    let at = |p: &Path| {
        let p = p.display().to_string();
        move |e| (p, e)
    };
    let mut f = File::create(&tmp).map_err(at(&tmp))?;
    f.write_all(bytes).map_err(at(&tmp))?;
    f.sync_all().map_err(at(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(at(path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

/// Makes a rename in `dir` durable; not every platform allows opening a folder.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

struct RemoteReader {
    queue: Arc<ChunkQueue>,
    current: Bytes,
    task: tokio::task::JoinHandle<()>,
}

impl Read for RemoteReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.queue.pop() {
                Ok(Some(b)) => self.current = b,
                Ok(None) => return Ok(0),
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

impl Drop for RemoteReader {
    fn drop(&mut self) {
        self.queue.close();
        self.task.abort();
    }
}

/// Streams one object into a store; see [`Store::writer`].
pub struct ObjectWriter {
    url: String,
    written: u64,
    inner: WriterInner,
}

enum WriterInner {
    Local {
        file: BufWriter<File>,
        partial: PathBuf,
        path: PathBuf,
    },
    Remote(Upload),
}

struct Upload {
    core: Arc<Core>,
    io: Arc<IoRuntime>,
    name: String,
    buf: Vec<u8>,
    id: Option<String>,
    parts: Vec<Part>,
    finished: bool,
}

enum Part {
    Pending(tokio::task::JoinHandle<Result<PartId, StoreError>>),
    Done(PartId),
}

impl Upload {
    /// Sends the buffer as the next part, keeping at most `upload_concurrency` parts in
    /// flight. Without multipart support the buffer just grows (one request at the end).
    fn send_part(&mut self) -> Result<(), StoreError> {
        if self.core.multipart.is_none() {
            return Ok(());
        }
        let id = match &self.id {
            Some(id) => id.clone(),
            None => {
                let (core, name) = (self.core.clone(), self.name.clone());
                let id = self
                    .io
                    .block_on(async move { core.create_multipart(&name).await })?;
                self.id = Some(id.clone());
                id
            }
        };
        let data = Bytes::from(std::mem::take(&mut self.buf));
        let (core, name, idx) = (self.core.clone(), self.name.clone(), self.parts.len());
        let task = self
            .io
            .spawn(async move { core.put_part(&name, &id, idx, data).await });
        self.parts.push(Part::Pending(task));
        let pending = self
            .parts
            .iter()
            .filter(|p| matches!(p, Part::Pending(_)))
            .count();
        if pending > self.core.upload_concurrency {
            self.wait_oldest()?;
        }
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<(), StoreError> {
        let Some(slot) = self
            .parts
            .iter_mut()
            .find(|p| matches!(p, Part::Pending(_)))
        else {
            return Ok(());
        };
        let Part::Pending(task) = std::mem::replace(
            slot,
            Part::Done(PartId {
                content_id: String::new(),
            }),
        ) else {
            unreachable!("found pending above")
        };
        let url = self.core.url_of(&self.name);
        let id = self.io.block_on(task).map_err(|e| StoreError::Failed {
            url,
            message: format!("an upload task failed: {e}"),
        })??;
        *slot = Part::Done(id);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), StoreError> {
        let Some(id) = self.id.clone() else {
            // Small object (or no multipart support): one request.
            let (core, name) = (self.core.clone(), self.name.clone());
            let data = Bytes::from(std::mem::take(&mut self.buf));
            self.io
                .block_on(async move { core.put(&name, data).await })?;
            self.finished = true;
            return Ok(());
        };
        if !self.buf.is_empty() {
            self.send_part()?;
        }
        while self.parts.iter().any(|p| matches!(p, Part::Pending(_))) {
            self.wait_oldest()?;
        }
        let parts: Vec<PartId> = self
            .parts
            .drain(..)
            .map(|p| match p {
                Part::Done(id) => id,
                Part::Pending(_) => unreachable!("all parts waited for"),
            })
            .collect();
        let (core, name) = (self.core.clone(), self.name.clone());
        self.io
            .block_on(async move { core.complete_multipart(&name, &id, parts).await })?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        for p in &self.parts {
            if let Part::Pending(t) = p {
                t.abort();
            }
        }
        if let Some(id) = self.id.take() {
            let (core, name) = (self.core.clone(), self.name.clone());
            self.io
                .spawn(async move { core.abort_multipart(&name, &id).await });
        }
    }
}

impl ObjectWriter {
    /// The object's path or URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Completes the object: flushes, syncs and renames a local file; completes a
    /// remote upload. Returns the object's length.
    pub fn finish(mut self) -> Result<u64, StoreError> {
        let url = self.url.clone();
        match &mut self.inner {
            WriterInner::Local {
                file,
                partial,
                path,
            } => {
                let io = |p: &Path| {
                    let url = p.display().to_string();
                    move |source| StoreError::Io { url, source }
                };
                file.flush().map_err(io(partial))?;
                file.get_ref().sync_all().map_err(io(partial))?;
                std::fs::rename(&*partial, &*path).map_err(io(path))?;
                sync_dir(path.parent().unwrap_or(Path::new(".")));
            }
            WriterInner::Remote(up) => up.finish().map_err(|e| match e {
                StoreError::Io { source, .. } => StoreError::Io { url, source },
                other => other,
            })?,
        }
        Ok(self.written)
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match &mut self.inner {
            WriterInner::Local { file, .. } => {
                let n = file.write(data)?;
                self.written += n as u64;
                Ok(n)
            }
            WriterInner::Remote(up) => {
                up.buf.extend_from_slice(data);
                self.written += data.len() as u64;
                if up.buf.len() >= up.core.part_bytes {
                    up.send_part().map_err(std::io::Error::other)?;
                }
                Ok(data.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.inner {
            WriterInner::Local { file, .. } => file.flush(),
            // Parts go out when full; finish() sends the rest.
            WriterInner::Remote(_) => Ok(()),
        }
    }
}
