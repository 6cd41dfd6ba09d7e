//! The store: where a dataset's bytes come from and go to. A local folder, or a bucket
//! prefix in S3 (or an S3-compatible server), Google Cloud Storage or Azure Blob Storage
//! through `object_store`. First stage of the flow:
//! STORE -> shard reader -> plan -> prefetch -> decode/augment -> collate -> gRPC.
//!
//! - Nothing is ever listed: the manifest names every object, so a store only gets,
//!   range-gets, puts and deletes objects by name.
//! - Remote requests run on the store's own small tokio runtime (`io`) under a
//!   concurrency limit, retried with backoff on transient failures and counted
//!   ([`retry`]), optionally through a local disk cache ([`cache`]).
//! - Every method here is blocking and safe to call from any thread (worker threads,
//!   command-line code, even a runtime thread during startup): the caller parks until
//!   the I/O runtime answers, so the gRPC server's runtime never runs store I/O.
//! - Local folders are read straight from the calling thread, through memory maps
//!   ([`maps`]; positioned reads with `mmap = false`): the page cache is their cache,
//!   and a hop through a runtime would only add latency.
//!
//! The [`Store`] type is here; its reads are in `read`, its writes in `write`, and
//! the rest of the module is laid out one concept to a file: [`StoreError`] (`error`),
//! the counters (`stats`), local file primitives (`files`), range coalescing
//! (`coalesce`), the streamed reader of a remote object (`remote_reader`), the
//! streamed writer of an object (`object_writer`) and its multipart upload (`upload`),
//! and the async object-store backend (`remote`).

pub mod cache;
mod coalesce;
pub mod config;
mod error;
mod files;
pub(crate) mod io;
pub mod maps;
mod object_writer;
mod read;
pub(crate) mod remote;
mod remote_reader;
pub mod retry;
mod stats;
mod upload;
pub mod url;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::multipart::MultipartStore;
use object_store::ObjectStore;
use tokio::sync::Semaphore;

pub use cache::DiskCache;
pub use config::{StoreConfig, StoreConfigError};
pub use error::StoreError;
pub use files::{pread, sync_dir, write_atomic};
pub use object_writer::ObjectWriter;
pub use stats::{StoreStats, StoreStatsSnapshot};
pub use url::{AsLocation, Location, RemoteUrl, Scheme, UrlError};

use io::IoRuntime;
use remote::Core;
use retry::RetryPolicy;

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
}
