//! The Admin gRPC service, on its own listener (loopback by default): the dataset
//! registry, reshard jobs with their progress, versions and their garbage collection,
//! and stats of open streams. Handlers are thin: anything that touches a store or the
//! disk runs on `spawn_blocking`, reshards run on the jobs' own threads.

pub mod jobs;
pub mod reshard;
pub mod stats;
pub mod versions;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use super::registry::{RegistryError, ServedDataset};
use super::{ServeError, ServerState};
use crate::transport::proto::v1 as pb;
use crate::transport::proto::v1::admin_server::{Admin, AdminServer};

/// Why an Admin request failed; mapped to a status in `server::status`.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A field is missing or out of range; names the field.
    #[error("{field}: {why}")]
    Invalid { field: &'static str, why: String },
    /// The dataset is not registered.
    #[error("dataset {name:?} is not registered (registered: {registered})")]
    UnknownDataset { name: String, registered: String },
    /// No job has this id.
    #[error("no job {id:?}")]
    UnknownJob { id: String },
    /// The job cannot be cancelled any more.
    #[error("job {id} already finished ({state}); nothing to cancel")]
    JobFinished { id: String, state: &'static str },
    /// The destination cannot be written.
    #[error("destination {destination}: {why}")]
    Destination { destination: String, why: String },
    /// The destination already holds a dataset.
    #[error(
        "destination {destination} already holds a dataset (manifest.json); choose a new location"
    )]
    DestinationExists { destination: String },
    /// Another job writes (or wrote part of) the destination.
    #[error("destination {destination} {why} job {job}")]
    DestinationBusy {
        destination: String,
        job: String,
        why: String,
    },
    /// An interrupted job's dataset now has other content: its partial output cannot be
    /// completed from it.
    #[error("job {job} copied version {was} of dataset {dataset:?}, which now serves {now}; cancel the job and start a new one")]
    SourceChanged {
        job: String,
        dataset: String,
        was: String,
        now: String,
    },
    /// Too many jobs wait for a thread.
    #[error("{limit} reshard jobs are queued already (reshard_queue_jobs); try again later")]
    TooManyJobs { limit: usize },
    /// Registering failed: a bad name, a dataset that does not open, or state that
    /// cannot be saved.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A retired version could not be deleted.
    #[error("gc {location}: {why}")]
    Gc { location: String, why: String },
    /// Something that should not fail did.
    #[error("{0}")]
    Internal(String),
}

/// The Admin service over shared server state.
pub struct AdminService {
    state: Arc<ServerState>,
}

impl AdminService {
    /// A service over `state`.
    pub fn new(state: Arc<ServerState>) -> AdminService {
        AdminService { state }
    }

    /// Runs blocking work off the runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Arc<ServerState>) -> Result<T, AdminError> + Send + 'static,
    ) -> Result<T, Status> {
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || f(&state))
            .await
            .map_err(|e| Status::internal(format!("admin task failed: {e}")))?
            .map_err(Status::from)
    }
}

type JobStream = Pin<Box<dyn Stream<Item = Result<pb::Job, Status>> + Send>>;

#[tonic::async_trait]
impl Admin for AdminService {
    async fn list_datasets(
        &self,
        _: Request<pb::ListDatasetsRequest>,
    ) -> Result<Response<pb::ListDatasetsResponse>, Status> {
        let datasets = self
            .state
            .registry
            .all()
            .iter()
            .map(|d| pb::RegisteredDataset {
                info: Some(d.info()),
                location: d.location.clone(),
            })
            .collect();
        let retired = self.state.versions.retired();
        let failed = self
            .state
            .failures()
            .iter()
            .map(|(name, (location, error))| pb::FailedDataset {
                name: name.clone(),
                location: location.clone(),
                error: error.clone(),
            })
            .collect();
        Ok(Response::new(pb::ListDatasetsResponse {
            datasets,
            retired,
            failed,
        }))
    }

    async fn register_dataset(
        &self,
        request: Request<pb::RegisterDatasetRequest>,
    ) -> Result<Response<pb::DatasetInfo>, Status> {
        let req = request.into_inner();
        let info = self
            .blocking(move |state| {
                if req.url.trim().is_empty() {
                    return Err(AdminError::Invalid {
                        field: "url",
                        why: "is empty; give a folder or URL holding manifest.json".into(),
                    });
                }
                let ds = ServedDataset::open_with(&req.name, req.url.trim(), state.store_config())?;
                let info = ds.info();
                state.versions.point(&state.registry, ds)?;
                tracing::info!(dataset = %req.name, location = %req.url, version = %info.version, "dataset registered");
                Ok(info)
            })
            .await?;
        Ok(Response::new(info))
    }

    async fn unregister_dataset(
        &self,
        request: Request<pb::UnregisterDatasetRequest>,
    ) -> Result<Response<pb::UnregisterDatasetResponse>, Status> {
        let name = request.into_inner().name;
        self.blocking(move |state| {
            state.versions.unregister(&state.registry, &name)?;
            tracing::info!(dataset = %name, "dataset unregistered");
            Ok(())
        })
        .await?;
        Ok(Response::new(pb::UnregisterDatasetResponse {}))
    }

    async fn reshard(
        &self,
        request: Request<pb::ReshardRequest>,
    ) -> Result<Response<pb::ReshardResponse>, Status> {
        let req = request.into_inner();
        let resp = self
            .blocking(move |state| reshard::start(state, req))
            .await?;
        Ok(Response::new(resp))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let job = self.state.jobs.get(&request.into_inner().job_id)?;
        Ok(Response::new(job.get()))
    }

    type WatchJobStream = JobStream;

    async fn watch_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<JobStream>, Status> {
        let job = self.state.jobs.get(&request.into_inner().job_id)?;
        let mut rx = job.watch();
        let (tx, out) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let now = rx.borrow_and_update().clone();
                let done = jobs::is_finished(now.state());
                if tx.send(Ok(now)).await.is_err() || done {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
                // Progress changes per sample: send at most a few updates a second.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let id = request.into_inner().job_id;
        let job = self.blocking(move |state| state.jobs.cancel(&id)).await?;
        Ok(Response::new(job))
    }

    async fn list_jobs(
        &self,
        _: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let jobs = self.state.jobs.all().iter().map(|j| j.get()).collect();
        Ok(Response::new(pb::ListJobsResponse { jobs }))
    }

    async fn gc(
        &self,
        request: Request<pb::GcRequest>,
    ) -> Result<Response<pb::GcResponse>, Status> {
        let dry_run = request.into_inner().dry_run;
        let (removed, kept) = self
            .blocking(move |state| {
                state
                    .versions
                    .gc(&state.registry, state.store_config(), dry_run)
            })
            .await?;
        Ok(Response::new(pb::GcResponse { removed, kept }))
    }

    async fn stats(
        &self,
        _: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        Ok(Response::new(stats::stats(&self.state)))
    }
}

/// Serves the Admin service (with reflection) on its own listener until `shutdown`.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    state: Arc<ServerState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::transport::proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let check = super::security::RequireToken::from_config(&state.config)?;
    super::builder(&state.config)?
        .add_service(reflection)
        .add_service(AdminServer::with_interceptor(
            AdminService::new(state),
            check,
        ))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
