//! The gRPC server: the Loader service over a shared worker pool and dataset registry.
//! It takes an already-bound listener and a shutdown future, so tests bind
//! `127.0.0.1:0` and run it in-process.

pub mod loader;
pub mod registry;
pub mod request;
pub mod status;

use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use tonic::transport::server::TcpIncoming;

use crate::config::ServeConfig;
use crate::pipeline::pool::WorkerPool;
use crate::proto::v1::loader_server::LoaderServer;
use registry::Registry;

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
}

impl ServerState {
    /// Opens the configured datasets and starts the worker pool.
    pub fn new(config: ServeConfig) -> Result<Arc<ServerState>, registry::RegistryError> {
        let registry = Registry::open_all(&config.datasets)?;
        let pool = WorkerPool::new(config.worker_threads());
        Ok(Arc::new(ServerState {
            config,
            registry,
            pool,
            streams: AtomicUsize::new(0),
        }))
    }
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The transport failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves the Loader service on `listener` until `shutdown` completes, then stops
/// accepting and lets open streams finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ServerState>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let limit = (state.config.max_batch_bytes as usize).saturating_add(1 << 20);
    let loader = LoaderServer::new(loader::LoaderService::new(state.clone()))
        .max_encoding_message_size(limit)
        .max_decoding_message_size(1 << 20);
    let window = state.config.http2_window_bytes;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .initial_stream_window_size(window)
        .initial_connection_window_size(window)
        .add_service(loader)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
