//! The one place where errors become gRPC statuses. Requests that are wrong get
//! INVALID_ARGUMENT or NOT_FOUND with a message naming the field; data that is broken
//! gets DATA_LOSS naming the shard and sample; limits get RESOURCE_EXHAUSTED. Admin
//! requests: unknown names get NOT_FOUND, a destination that cannot be written or a
//! finished job FAILED_PRECONDITION, a destination already taken ALREADY_EXISTS.

use tonic::Status;

use super::admin::AdminError;
use super::registry::RegistryError;
use crate::pipeline::prepare::PrepareError;
use crate::pipeline::stream::StreamError;
use crate::plan::{CursorError, PlanError};

/// A stream request that cannot be served, before any work starts.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A field is missing or out of range; names the field.
    #[error("{field}: {why}")]
    Invalid { field: &'static str, why: String },
    /// The dataset is not registered.
    #[error("dataset {name:?} is not registered (registered: {registered})")]
    UnknownDataset { name: String, registered: String },
    /// The request names a path or URL where a registered name belongs.
    #[error("dataset {name:?} is a path or URL: a stream names a registered dataset, never a location (registered: {registered})")]
    NotAName { name: String, registered: String },
    /// One client holds too many streams.
    #[error("client {client} holds {limit} streams, max_streams_per_client; close some first")]
    TooManyClientStreams { client: String, limit: usize },
    /// The plan refused the spec, world size, rank or cursor.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The spec's selection does not fit the dataset.
    #[error(transparent)]
    Select(#[from] crate::plan::SelectError),
    /// The cursor token does not parse.
    #[error("cursor: {0}")]
    Cursor(#[from] CursorError),
    /// Too many streams are open.
    #[error("the daemon serves {limit} streams at most; try again later or another daemon")]
    TooManyStreams { limit: usize },
    /// A batch the stream would reach exceeds the message limit.
    #[error("the {subset} batch at step {step}{phase} would take {bytes} bytes per rank, over the daemon's max_batch_bytes {limit}; lower global_batch or the output size")]
    BatchTooLarge {
        subset: crate::dataset::Subset,
        step: u64,
        /// `, curriculum[i]` when the spec has a curriculum.
        phase: String,
        bytes: u64,
        limit: u64,
    },
    /// The stream's base charge in the memory budget, three times its largest batch,
    /// passes the daemon's whole budget for batches in flight.
    #[error("the {subset} batch at step {step}{phase} takes {bytes} bytes per rank, and a stream needs three times its largest batch ({need} bytes: the batch, its encoded message and the message before it) in the daemon's max_inflight_bytes {limit}; lower global_batch or the output size, or raise max_inflight_bytes")]
    OverBudget {
        subset: crate::dataset::Subset,
        step: u64,
        /// `, curriculum[i]` when the spec has a curriculum.
        phase: String,
        bytes: u64,
        need: u64,
        limit: u64,
    },
}

impl From<RequestError> for Status {
    fn from(e: RequestError) -> Status {
        let msg = e.to_string();
        match e {
            RequestError::UnknownDataset { .. } => Status::not_found(msg),
            RequestError::TooManyStreams { .. }
            | RequestError::TooManyClientStreams { .. }
            | RequestError::OverBudget { .. } => Status::resource_exhausted(msg),
            RequestError::Plan(PlanError::EndOfStream { .. }) => Status::out_of_range(msg),
            _ => Status::invalid_argument(msg),
        }
    }
}

impl From<StreamError> for Status {
    fn from(e: StreamError) -> Status {
        let msg = e.to_string();
        match e {
            StreamError::Prepare(
                PrepareError::Exhausted { .. } | PrepareError::NotReplaced { .. },
            ) => Status::data_loss(msg),
            // The object store is unreachable or refuses our credentials: another
            // daemon may do better, so the client should fail over.
            StreamError::Prepare(PrepareError::Read(crate::dataset::DatasetError::Store(s)))
                if s.is_unavailable() =>
            {
                Status::unavailable(msg)
            }
            StreamError::Prepare(PrepareError::Read(crate::dataset::DatasetError::Changed {
                ..
            })) => Status::failed_precondition(msg),
            StreamError::Prepare(_) => Status::data_loss(msg),
            StreamError::Plan(PlanError::EndOfStream { .. }) => Status::out_of_range(msg),
            StreamError::Plan(_) => Status::invalid_argument(msg),
            StreamError::WorkerLost { .. } => Status::internal(msg),
            StreamError::ShuttingDown => Status::unavailable(msg),
        }
    }
}

impl From<AdminError> for Status {
    fn from(e: AdminError) -> Status {
        let msg = e.to_string();
        match e {
            AdminError::Invalid { .. } => Status::invalid_argument(msg),
            AdminError::UnknownDataset { .. } | AdminError::UnknownJob { .. } => {
                Status::not_found(msg)
            }
            AdminError::JobFinished { .. }
            | AdminError::Destination { .. }
            | AdminError::SourceChanged { .. } => Status::failed_precondition(msg),
            AdminError::DestinationExists { .. } | AdminError::DestinationBusy { .. } => {
                Status::already_exists(msg)
            }
            AdminError::TooManyJobs { .. } => Status::resource_exhausted(msg),
            AdminError::Registry(RegistryError::BadName(_)) => Status::invalid_argument(msg),
            AdminError::Registry(RegistryError::Open { .. }) => Status::failed_precondition(msg),
            AdminError::Registry(RegistryError::State { .. })
            | AdminError::Gc { .. }
            | AdminError::Internal(_) => Status::internal(msg),
        }
    }
}
