//! [`ServeConfig`], the configuration of `editfeed serve`: every key with its
//! documentation and its named default. Stage: server/config.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// Configuration of `editfeed serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address of the Loader service. Default `127.0.0.1:50051`; use `0.0.0.0:50051` to
    /// serve other hosts.
    pub listen: String,
    /// Address of the Admin service (dataset registry, reshard jobs, stats), on its own
    /// port. Default `127.0.0.1:50052`: loopback only, since it changes what is served.
    /// Port 0 (`127.0.0.1:0`) takes a free port, printed on the `admin listening on`
    /// line: a second daemon on one host needs another port, or 0.
    pub admin_listen: String,
    /// A file holding the Admin service's bearer token (surrounding whitespace is
    /// ignored). `EDITFEED_ADMIN_TOKEN` gives the token itself instead. With a token,
    /// every Admin call must carry `authorization: Bearer TOKEN`; without one the Admin
    /// service is open, which is allowed only on a loopback `admin_listen`.
    pub admin_token_file: String,
    /// The Admin token from `EDITFEED_ADMIN_TOKEN` (never in the file, never printed).
    #[serde(skip)]
    pub admin_token: Secret,
    /// PEM certificate chain for TLS on both services; with `tls_key_file`. Empty (the
    /// default): plaintext.
    pub tls_cert_file: String,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: String,
    /// Folder where the daemon keeps its state: the dataset registry (`registry.json`)
    /// and reshard jobs (`jobs/`), so both survive a restart. Empty (the default) keeps
    /// them in memory only.
    pub state_dir: String,
    /// Threads reshard jobs use in all, at a lowered CPU priority (SCHED_IDLE unless the
    /// request asks otherwise): a job starts on one and also takes every other one free
    /// then; jobs that find none free wait in the queue. This is the CPU budget that
    /// keeps serving's throughput during a reshard.
    pub reshard_threads: usize,
    /// Reshard jobs that may wait for a thread; more are refused with
    /// RESOURCE_EXHAUSTED.
    pub reshard_queue_jobs: usize,
    /// Worker threads for decode and augmentation; 0 means one per core.
    pub workers: usize,
    /// Batches each stream prepares ahead of its client (the prefetch depth).
    pub prefetch_batches: usize,
    /// Sample jobs one stream may have waiting for a worker.
    pub queue_samples: usize,
    /// Concurrent streams the daemon accepts; more are refused with RESOURCE_EXHAUSTED.
    pub max_streams: usize,
    /// Concurrent streams one client (one IP address) may hold; more are refused with
    /// RESOURCE_EXHAUSTED, so one runaway job cannot take every slot.
    pub max_streams_per_client: usize,
    /// Largest global batch a request may ask for.
    pub max_global_batch: u32,
    /// Largest output side in pixels a request may ask for.
    pub max_image_side: u32,
    /// Largest batch message in bytes; larger requests are refused up front.
    pub max_batch_bytes: u64,
    /// Bytes of batches in flight for all streams together: prepared ahead, being
    /// collated, queued and being sent. A stream is admitted with a base of three times
    /// its largest batch's tensor bytes, and each batch it prepares beyond one takes
    /// twice its bytes when there is room. Streams wait for admission rather than grow
    /// the heap; a request whose base alone would pass it is refused with
    /// RESOURCE_EXHAUSTED.
    pub max_inflight_bytes: u64,
    /// Images declaring more pixels than this are refused before decoding.
    pub max_decode_pixels: u64,
    /// HTTP/2 stream and connection window in bytes (batches are tens of MB).
    pub http2_window_bytes: u32,
    /// Shared-memory folder (a tmpfs) for trainers on this host: a client that shows it
    /// sees the same folder (`StreamRequest.shm_probe`; the Python client does this by
    /// default) gets large tensors there as files it maps, instead of in the gRPC
    /// messages. Default `/dev/shm`; empty turns this off. In Kubernetes, mount one
    /// folder into both the daemon's and the trainer's containers, and run both as the
    /// same user.
    pub shm_dir: String,
    /// Bytes in shared-memory files that clients have not taken yet, for all streams;
    /// past it, batches travel in the messages.
    pub shm_max_bytes: u64,
    /// Seconds to finish in-flight batches after SIGTERM or SIGINT.
    pub drain_seconds: u64,
    /// Address of the Prometheus `/metrics` HTTP endpoint, e.g. `0.0.0.0:9090`; empty
    /// (the default) disables it, so several daemons can share a machine.
    pub metrics_listen: String,
    /// Log format: `text` or `json`.
    pub log_format: String,
    /// Log level or filter (tracing's EnvFilter syntax, e.g. `info` or
    /// `editfeed=debug,info`).
    pub log_level: String,
    /// Seconds between attempts to load a dataset that failed to load (for example a
    /// volume not mounted yet); the daemon reports NOT_SERVING until all are loaded.
    pub load_retry_seconds: u64,
    /// Datasets served, by name: `name = "path or URL"`.
    pub datasets: BTreeMap<String, String>,
    /// Object-store access for datasets at `s3://`, `gs://` or `az://` URLs (the
    /// `[store]` table; see README). Credentials also come from the environment.
    #[serde(skip_serializing)]
    pub store: crate::store::StoreConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "127.0.0.1:50051".into(),
            admin_listen: "127.0.0.1:50052".into(),
            admin_token_file: String::new(),
            admin_token: Secret::default(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            state_dir: String::new(),
            reshard_threads: 1,
            reshard_queue_jobs: 16,
            workers: 0,
            prefetch_batches: 2,
            queue_samples: 64,
            max_streams: 256,
            max_streams_per_client: 128,
            max_global_batch: 4096,
            max_image_side: 2048,
            max_batch_bytes: 1 << 30,
            max_inflight_bytes: 2 << 30,
            max_decode_pixels: 64 << 20,
            http2_window_bytes: 16 << 20,
            shm_dir: "/dev/shm".into(),
            shm_max_bytes: 512 << 20,
            drain_seconds: 30,
            metrics_listen: String::new(),
            log_format: "text".into(),
            log_level: "info".into(),
            load_retry_seconds: 5,
            datasets: BTreeMap::new(),
            store: crate::store::StoreConfig::default(),
        }
    }
}

impl ServeConfig {
    /// Worker threads after resolving 0 to the core count.
    pub fn worker_threads(&self) -> usize {
        if self.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.workers
        }
    }
}
