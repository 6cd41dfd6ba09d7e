//! The Loader gRPC service: `Stream` validates a request, spawns the stream's producer
//! and returns the receiving end of its bounded channel; `Describe` lists the datasets.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::{wrappers::ReceiverStream, Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::admin::stats::{ActiveStream, ActiveStreams};
use super::request::validate;
use super::status::RequestError;
use super::ServerState;
use crate::pipeline::stream::{produce, StreamProgress};
use crate::proto::v1 as pb;
use crate::proto::v1::loader_server::Loader;

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

#[tonic::async_trait]
impl Loader for LoaderService {
    type StreamStream = BatchStream;

    async fn stream(
        &self,
        request: Request<pb::StreamRequest>,
    ) -> Result<Response<BatchStream>, Status> {
        let req = request.into_inner();
        let state = &self.state;
        match state.phase() {
            super::Phase::Serving => {}
            super::Phase::Loading => {
                return Err(Status::unavailable(
                    "the daemon is still loading its datasets",
                ))
            }
            super::Phase::Draining => {
                return Err(Status::unavailable(
                    "the daemon is shutting down; use another daemon",
                ))
            }
        }
        let dataset =
            state
                .registry
                .get(&req.dataset)
                .ok_or_else(|| RequestError::UnknownDataset {
                    name: req.dataset.clone(),
                    registered: state.registry.names().join(", "),
                })?;
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
        let params = tokio::task::spawn_blocking(move || validate(&req, dataset, &config))
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
            state.stop_signal(),
            job,
            progress.clone(),
        ));
        let stream = ReceiverStream::new(rx).map(move |item| {
            let _keep = (&slot, &active);
            if let Ok(b) = &item {
                progress.taken(b.step);
            }
            item.map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn describe(
        &self,
        _: Request<pb::DescribeRequest>,
    ) -> Result<Response<pb::DescribeResponse>, Status> {
        let datasets = self.state.registry.all().iter().map(|d| d.info()).collect();
        Ok(Response::new(pb::DescribeResponse { datasets }))
    }
}
