//! Why a plan could not be built or a step could not be planned.
//!
//! Part of the plan stage: store -> shard reader -> **plan** -> prefetch ->
//! decode/augment -> collate -> gRPC.

use crate::dataset::Subset;

use super::cursor::CursorError;
use super::spec::SpecError;

/// Why a plan could not be built or a step could not be planned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// The stream spec is invalid, or does not fit the dataset.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A cursor was malformed or belongs to another stream.
    #[error(transparent)]
    Cursor(#[from] CursorError),
    /// The world size is zero or does not divide the global batch.
    #[error("world_size {world_size} must be positive and divide global_batch {global_batch}")]
    WorldSize {
        /// The world size asked for.
        world_size: u32,
        /// The spec's global batch size.
        global_batch: u32,
    },
    /// The rank is not below the world size.
    #[error("rank {rank} is out of range for world_size {world_size}")]
    Rank {
        /// The rank asked for.
        rank: u32,
        /// The world size.
        world_size: u32,
    },
    /// The step is at or past the end of a finite curriculum.
    #[error("step {step} is past the end of the stream (the last phase ends at step {end})")]
    EndOfStream {
        /// The step asked for.
        step: u64,
        /// The first step past the stream.
        end: u64,
    },
    /// The step is so large that its sample positions overflow 64 bits.
    #[error("step {step} is out of range: its sample positions overflow")]
    StepOutOfRange {
        /// The step asked for.
        step: u64,
    },
    /// The dataset lists a subset twice.
    #[error("the dataset lists subset {subset} twice")]
    DuplicateSubset {
        /// The repeated subset.
        subset: Subset,
    },
    /// A subset's category list does not have one entry per sample.
    #[error("subset {subset} has {len} samples but {categories} category entries")]
    CategoryCount {
        /// The subset.
        subset: Subset,
        /// Its sample count.
        len: u64,
        /// The length of its category list.
        categories: u64,
    },
    /// A subset or its resampled epoch is larger than the plan can index.
    #[error("subset {subset} would need {slots} samples per epoch, more than the {max} supported")]
    TooManySamples {
        /// The subset.
        subset: Subset,
        /// Samples (or resampled slots) per epoch.
        slots: u64,
        /// The limit.
        max: u64,
    },
    /// Category weights leave a scheduled subset with nothing to serve.
    #[error("category_weights leave subset {subset} with no samples in an epoch")]
    EmptyEpoch {
        /// The subset.
        subset: Subset,
    },
}
