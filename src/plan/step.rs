//! One planned step: the samples it names ([`SampleRef`], [`StepPlan`]) and how many
//! samples each subset gave out before it ([`Consumed`]).
//!
//! Part of the plan stage: store -> shard reader -> **plan** -> prefetch ->
//! decode/augment -> collate -> gRPC. The prefetch stage maps each [`SampleRef`] to a
//! shard member.

use crate::dataset::Subset;

/// One planned sample: a canonical ordinal of a subset, and where in the subset's
/// endless stream it was drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SampleRef {
    /// The subset.
    pub subset: Subset,
    /// The sample's canonical ordinal in its subset.
    pub ordinal: u64,
    /// The subset epoch it was drawn in (0-based).
    pub epoch: u64,
    /// Its position inside that epoch. `(subset, epoch, offset)` is unique even when
    /// category weights repeat a sample inside an epoch, so augmentation keys its random
    /// choices on it to give each copy its own crop and flip.
    pub offset: u64,
    /// In the multi-turn steps view, the turn of the chain this sample is (1-based);
    /// 0 for a whole sample.
    pub turn: u8,
}

/// The samples of one step, for the whole step (rank 0 of world size 1) or one rank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepPlan {
    /// The global step.
    pub step: u64,
    /// The subset every sample of the step comes from.
    pub subset: Subset,
    /// The rank this slice is for.
    pub rank: u32,
    /// The world size the slice was cut for.
    pub world_size: u32,
    /// The samples, in order.
    pub samples: Vec<SampleRef>,
    /// Rows of padding after the samples: in an evaluation pass, where the last step of
    /// a subset has fewer samples than the batch (0 in training).
    pub padding: u32,
}

/// Samples each subset has given out before some step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Consumed {
    pub(super) samples: [u64; 3],
}

impl Consumed {
    /// Samples of `subset` given out.
    pub fn get(&self, subset: Subset) -> u64 {
        self.samples[subset.id() as usize]
    }

    /// Samples given out over all subsets.
    pub fn total(&self) -> u64 {
        self.samples.iter().sum()
    }
}
