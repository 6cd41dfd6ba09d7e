//! The gRPC server: the Loader service over a shared worker pool and dataset registry,
//! with `grpc.health.v1` health and server reflection. Stage: the last of the library,
//! above the pipeline and the transport. It takes an already-bound
//! listener and a shutdown future, so tests bind `127.0.0.1:0` and run it in-process.
//!
//! Lifecycle: NOT_SERVING while datasets load (a dataset that fails to load is retried,
//! e.g. until its volume is mounted), SERVING once all are loaded, NOT_SERVING again as
//! soon as shutdown begins. While draining, new streams are refused with UNAVAILABLE;
//! open streams go on until they finish or the drain period ends, when they are closed
//! with UNAVAILABLE so trainers resume elsewhere from their last cursor. Each dataset
//! is served as soon as it loads; one that fails is reported (admin list, its own health
//! service `editfeed.v1.Loader/NAME`, metrics) with its last error while it is retried.
//!
//! The Admin service ([`admin`]) runs on its own listener through [`admin::serve_admin`].

pub mod admin;
pub mod loader;
pub mod registry;
pub mod request;
mod response;
pub mod security;
pub mod status;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::config::ServeConfig;
use crate::pipeline::pool::WorkerPool;
use crate::transport::proto::v1::loader_server::LoaderServer;
use registry::{Registry, ServedDataset};

/// Where the daemon is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Datasets are loading: NOT_SERVING.
    Loading,
    /// Serving streams: SERVING.
    Serving,
    /// Shutting down: NOT_SERVING, no new streams.
    Draining,
}

/// State shared by every request.
pub struct ServerState {
    /// The daemon's configuration.
    pub config: ServeConfig,
    /// The datasets served.
    pub registry: Registry,
    /// The CPU worker pool shared by all streams.
    pub pool: Arc<WorkerPool>,
    /// Streams open now.
    pub streams: AtomicUsize,
    /// The memory budget of all streams' batches in flight (`max_inflight_bytes`).
    pub budget: Arc<crate::pipeline::budget::MemoryBudget>,
    /// Streams open per client address.
    pub clients: Arc<loader::ClientStreams>,
    /// What each open stream is doing, for `Stats`.
    pub active: admin::stats::ActiveStreams,
    /// Where each name points, persisted, and the retired versions.
    pub versions: admin::versions::Versions,
    /// Reshard jobs.
    pub jobs: admin::jobs::Jobs,
    phase: watch::Sender<Phase>,
    /// `[store]` with the environment's overrides applied.
    store: crate::store::StoreConfig,
    /// Set when open streams must end (the drain period is over).
    stop_streams: watch::Sender<bool>,
    /// The shared-memory folder for clients on this host (`shm_dir`), if on.
    pub shared_memory: Option<Arc<crate::transport::shared_memory::SharedMemory>>,
    /// Datasets that failed to load and are being retried: name -> (location, last
    /// error). Shown by `admin list`, health and metrics.
    pub load_failures: std::sync::Mutex<std::collections::BTreeMap<String, (String, String)>>,
}

impl ServerState {
    /// State whose datasets are loaded by [`serve`] in the background. Reads the
    /// persisted registry and jobs from `state_dir`; fails when they do not parse.
    pub fn unloaded(config: ServeConfig) -> Result<Arc<ServerState>, registry::RegistryError> {
        let versions = admin::versions::Versions::load(&config.state_dir, &config.datasets)?;
        let jobs = admin::jobs::Jobs::load(&config.state_dir, config.reshard_threads)?;
        let pool = WorkerPool::new(config.worker_threads());
        let shared_memory = crate::transport::shared_memory::SharedMemory::new(
            &config.shm_dir,
            config.shm_max_bytes,
        );
        let store = config.store.clone().with_env();
        let budget = Arc::new(crate::pipeline::budget::MemoryBudget::new(
            config.max_inflight_bytes,
        ));
        Ok(Arc::new(ServerState {
            store,
            config,
            registry: Registry::default(),
            pool,
            streams: AtomicUsize::new(0),
            budget,
            clients: Default::default(),
            active: Default::default(),
            versions,
            jobs,
            phase: watch::channel(Phase::Loading).0,
            stop_streams: watch::channel(false).0,
            shared_memory,
            load_failures: Default::default(),
        }))
    }

    /// Opens the configured datasets now and starts the worker pool.
    pub fn new(config: ServeConfig) -> Result<Arc<ServerState>, registry::RegistryError> {
        let state = ServerState::unloaded(config)?;
        if let Some(e) = state.load_missing().into_iter().next() {
            return Err(e);
        }
        Ok(state)
    }

    /// The store configuration (`[store]` with the environment's overrides).
    pub fn store_config(&self) -> &crate::store::StoreConfig {
        &self.store
    }

    /// Loads every registered dataset (persisted registry, then config) not loaded yet;
    /// returns the failures. When none is missing any more, the daemon is SERVING.
    pub fn load_missing(&self) -> Vec<registry::RegistryError> {
        let mut errors = Vec::new();
        for (name, location) in &self.versions.wanted() {
            if self.registry.get(name).is_some() {
                continue;
            }
            match ServedDataset::open_with(name, location, &self.store) {
                Ok(ds) => {
                    tracing::info!(dataset = %name, version = %ds.dataset.manifest().version, "dataset loaded");
                    self.registry.insert(ds);
                    self.failures().remove(name);
                    crate::metrics::dataset_loaded(name, true);
                }
                Err(e) => {
                    self.failures()
                        .insert(name.clone(), (location.clone(), e.to_string()));
                    crate::metrics::dataset_loaded(name, false);
                    errors.push(e);
                }
            }
        }
        if errors.is_empty() {
            self.phase.send_if_modified(|p| {
                let changed = *p == Phase::Loading;
                if changed {
                    *p = Phase::Serving;
                }
                changed
            });
        }
        errors
    }

    /// Datasets that failed to load: name -> (location, last error).
    pub fn failures(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, (String, String)>> {
        self.load_failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Waits until the daemon is SERVING (returns at once if it is).
    pub async fn serving(&self) {
        let mut rx = self.phase.subscribe();
        let _ = rx.wait_for(|p| *p == Phase::Serving).await;
    }

    /// A receiver that turns true when open streams must end.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop_streams.subscribe()
    }

    fn open_streams(&self) -> usize {
        self.streams.load(Ordering::Acquire)
    }
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The transport failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be set up.
    #[error("grpc reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// TLS or the Admin token cannot be set up.
    #[error(transparent)]
    Security(#[from] security::SecurityError),
}

/// A server builder with the daemon's TLS settings, when it has some.
pub(crate) fn builder(config: &ServeConfig) -> Result<tonic::transport::Server, ServeError> {
    let builder = tonic::transport::Server::builder();
    Ok(match security::server_tls(config)? {
        Some(tls) => builder.tls_config(tls)?,
        None => builder,
    })
}

/// Serves until `shutdown` completes, then drains (see the module docs) and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ServerState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let limit = (state.config.max_batch_bytes as usize).saturating_add(1 << 20);
    let loader = LoaderServer::new(loader::LoaderService::new(state.clone()))
        .max_encoding_message_size(limit)
        .max_decoding_message_size(1 << 20);
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::transport::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    // Health follows the phase.
    let mut phases = state.phase.subscribe();
    let phase_health = health.clone();
    tokio::spawn(async move {
        let health = phase_health;
        loop {
            let status = match *phases.borrow_and_update() {
                Phase::Serving => ServingStatus::Serving,
                Phase::Loading | Phase::Draining => ServingStatus::NotServing,
            };
            health.set_service_status("", status).await;
            health
                .set_service_status("editfeed.v1.Loader", status)
                .await;
            if phases.changed().await.is_err() {
                return;
            }
        }
    });
    if state.phase() == Phase::Loading {
        tokio::spawn(load_until_done(state.clone(), health.clone()));
    } else {
        set_dataset_health(&state, &health).await;
    }
    tokio::spawn(report_pool(state.clone()));

    let window = state.config.http2_window_bytes;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let drain_state = state.clone();
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let server = builder(&state.config)?
        .initial_stream_window_size(window)
        .initial_connection_window_size(window)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(loader)
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            drain(&drain_state).await;
            let _ = drained_tx.send(());
        });
    tokio::pin!(server);
    // After the drain, connections get a short grace period to close; a client that
    // stopped reading cannot take its last frames, so it would hold the shutdown
    // forever: past the grace period its connection is abandoned.
    tokio::select! {
        biased;
        r = &mut server => r?,
        Ok(()) = drained_rx => {
            if tokio::time::timeout(CLOSE_GRACE, &mut server).await.is_err() {
                tracing::warn!("connections still open after the drain; closing them");
            }
        }
    }
    if let Some(shared) = state.shared_memory.clone() {
        let _ = tokio::task::spawn_blocking(move || shared.remove_all()).await;
    }
    Ok(())
}

/// How long connections may take to close once the drain is over.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The health service name of one dataset: `editfeed.v1.Loader/NAME`.
pub fn dataset_health_service(name: &str) -> String {
    format!("editfeed.v1.Loader/{name}")
}

/// Sets each wanted dataset's health: SERVING once loaded, NOT_SERVING while it fails.
async fn set_dataset_health(state: &ServerState, health: &tonic_health::server::HealthReporter) {
    for (name, _) in state.versions.wanted() {
        let status = if state.registry.get(&name).is_some() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        health
            .set_service_status(dataset_health_service(&name), status)
            .await;
    }
}

/// Loads the datasets not loaded yet until all are, serving each as soon as it loads
/// (one that keeps failing does not hold the others back).
async fn load_until_done(state: Arc<ServerState>, health: tonic_health::server::HealthReporter) {
    let retry = Duration::from_secs(state.config.load_retry_seconds.max(1));
    loop {
        let s = state.clone();
        let errors = tokio::task::spawn_blocking(move || s.load_missing())
            .await
            .unwrap_or_default();
        set_dataset_health(&state, &health).await;
        if errors.is_empty() || state.phase() == Phase::Draining {
            return;
        }
        for e in errors {
            tracing::error!(error = %e, retry_seconds = retry.as_secs(), "dataset not loaded; retrying");
        }
        tokio::time::sleep(retry).await;
    }
}

async fn report_pool(state: Arc<ServerState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let pool = state.pool.stats();
        crate::metrics::pool_stats(pool.queued, pool.busy, pool.workers);
        if let Some(shared) = state.shared_memory.clone().filter(|s| s.has_orphans()) {
            tokio::task::spawn_blocking(move || shared.sweep());
        }
        if Arc::strong_count(&state) == 1 {
            return;
        }
    }
}

/// Refuses new streams, lets open ones finish within the drain period, then ends them.
async fn drain(state: &ServerState) {
    let _ = state.phase.send(Phase::Draining);
    let drain = Duration::from_secs(state.config.drain_seconds);
    tracing::info!(
        open_streams = state.open_streams(),
        drain_seconds = drain.as_secs(),
        "draining"
    );
    let deadline = Instant::now() + drain;
    while state.open_streams() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if state.open_streams() > 0 {
        tracing::warn!(
            open_streams = state.open_streams(),
            "drain period over; closing open streams"
        );
        let _ = state.stop_streams.send(true);
        let closing = Instant::now() + Duration::from_secs(2);
        while state.open_streams() > 0 && Instant::now() < closing {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
