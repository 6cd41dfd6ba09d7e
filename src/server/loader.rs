//! The Loader gRPC service: `Stream` validates a request, spawns the stream's producer
//! and returns the receiving end of its bounded channel; `Describe` lists the datasets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio_stream::{wrappers::ReceiverStream, Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::admin::stats::{ActiveStream, ActiveStreams};
use super::request::validate;
use super::response::{grpc_timeout, HoldCharge, UntilDeadline};
use super::status::RequestError;
use super::ServerState;
use crate::pipeline::stream::{produce, Outgoing, StreamProgress};
use crate::transport::proto::v1 as pb;
use crate::transport::proto::v1::loader_server::Loader;

/// The Loader service over shared server state.
pub struct LoaderService {
    state: Arc<ServerState>,
}

impl LoaderService {
    /// A service over `state`.
    pub fn new(state: Arc<ServerState>) -> LoaderService {
        LoaderService { state }
    }
}

/// Decrements the open-stream count when a stream's response is dropped.
struct StreamSlot {
    state: Arc<ServerState>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.state
            .streams
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        crate::metrics::streams_changed(-1.0);
    }
}

type BatchStream = Pin<Box<dyn Stream<Item = Result<pb::Batch, Status>> + Send>>;

/// Open streams per client address, bounded by `max_streams_per_client`.
#[derive(Default)]
pub struct ClientStreams {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl ClientStreams {
    /// Takes a slot for `client` (a stream with no known address is not counted).
    fn open(
        self: &Arc<Self>,
        client: Option<IpAddr>,
        limit: usize,
    ) -> Result<Option<ClientSlot>, RequestError> {
        let Some(ip) = client else {
            return Ok(None);
        };
        let mut open = self.open.lock().expect("client streams lock");
        let n = open.entry(ip).or_default();
        if *n >= limit {
            return Err(RequestError::TooManyClientStreams {
                client: ip.to_string(),
                limit,
            });
        }
        *n += 1;
        Ok(Some(ClientSlot {
            streams: self.clone(),
            ip,
        }))
    }
}

/// Gives a client's stream slot back when its stream ends.
struct ClientSlot {
    streams: Arc<ClientStreams>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().expect("client streams lock");
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[tonic::async_trait]
impl Loader for LoaderService {
    type StreamStream = BatchStream;

    async fn stream(
        &self,
        request: Request<pb::StreamRequest>,
    ) -> Result<Response<BatchStream>, Status> {
        let client = request.remote_addr().map(|a| a.ip());
        let deadline = grpc_timeout(request.metadata());
        let req = request.into_inner();
        let state = &self.state;
        match state.phase() {
            super::Phase::Serving => {}
            // Each dataset is served as soon as it loads; one that keeps failing does
            // not hold the others back.
            super::Phase::Loading if state.registry.get(&req.dataset).is_some() => {}
            super::Phase::Loading => {
                if let Some((location, error)) = state.failures().get(&req.dataset) {
                    return Err(Status::unavailable(format!(
                        "dataset {} ({location}) has not loaded yet: {error}; the daemon retries it",
                        req.dataset
                    )));
                }
                return Err(Status::unavailable(
                    "the daemon is still loading its datasets",
                ));
            }
            super::Phase::Draining => {
                return Err(Status::unavailable(
                    "the daemon is shutting down; use another daemon",
                ))
            }
        }
        if crate::config::check_dataset_name(&req.dataset).is_err()
            && (req.dataset.contains(['/', '\\', ':']) || req.dataset.starts_with('.'))
        {
            return Err(RequestError::NotAName {
                name: req.dataset.clone(),
                registered: state.registry.names().join(", "),
            }
            .into());
        }
        let dataset =
            state
                .registry
                .get(&req.dataset)
                .ok_or_else(|| RequestError::UnknownDataset {
                    name: req.dataset.clone(),
                    registered: state.registry.names().join(", "),
                })?;
        let client_slot = state
            .clients
            .open(client, state.config.max_streams_per_client)?;
        let limit = state.config.max_streams;
        let open = state
            .streams
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let slot = StreamSlot {
            state: state.clone(),
        };
        crate::metrics::streams_changed(1.0);
        if open >= limit {
            return Err(RequestError::TooManyStreams { limit }.into());
        }
        // Plan construction is O(subset size); keep it off the runtime's threads.
        let config = state.config.clone();
        let req_job = req.job.clone();
        let (rank, world_size) = (req.rank, req.world_size);
        let dataset_name = req.dataset.clone();
        let version = dataset.dataset.manifest().version.clone();
        let shared = state.shared_memory.clone();
        let params =
            tokio::task::spawn_blocking(move || validate(&req, dataset, &config, shared.as_ref()))
                .await
                .map_err(|e| Status::internal(format!("request validation failed: {e}")))??;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let queue = state.pool.open_queue(state.config.queue_samples);
        tracing::info!(
            rank = params.rank,
            world_size = params.world_size,
            start_step = params.start_step,
            "stream started"
        );
        let progress = Arc::new(StreamProgress::default());
        let active = ActiveStreams::open(
            state,
            ActiveStream {
                job: req_job.clone(),
                dataset: dataset_name,
                version,
                rank,
                world_size,
                started: std::time::Instant::now(),
                progress: progress.clone(),
            },
        );
        let job = crate::metrics::job_label(&req_job);
        tokio::spawn(produce(
            params,
            queue,
            tx,
            state.budget.clone(),
            state.stop_signal(),
            job,
            progress.clone(),
        ));
        let owed = progress.clone();
        // After the producer's last item, a ShuttingDown error it could not queue.
        let tail = std::iter::once_with(move || owed.owed_shutdown().map(Outgoing::from)).flatten();
        let stream = HoldCharge::new(ReceiverStream::new(rx).chain(tokio_stream::iter(tail))).map(
            move |item| {
                let _keep = (&slot, &client_slot, &active);
                if let Ok(b) = &item {
                    progress.taken(b.step);
                }
                item.map_err(Status::from)
            },
        );
        Ok(Response::new(match deadline {
            Some(d) => Box::pin(UntilDeadline::new(stream, d)),
            None => Box::pin(stream),
        }))
    }

    async fn describe(
        &self,
        _: Request<pb::DescribeRequest>,
    ) -> Result<Response<pb::DescribeResponse>, Status> {
        let datasets = self.state.registry.all().iter().map(|d| d.info()).collect();
        Ok(Response::new(pb::DescribeResponse { datasets }))
    }
}
