//! The RNG key of one sample: every random choice of the augment stage (crop, flip,
//! jitter) comes from a stream keyed by it and a [`Purpose`].
//!
//! Part of DECODE + AUGMENT (store -> shard reader -> plan -> prefetch -> DECODE +
//! AUGMENT -> collate -> gRPC).

use crate::dataset::Subset;
use crate::rng::{Purpose, Rng};

/// The RNG key of one sample: every random choice of [`process`](super::process) derives
/// from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRng {
    /// The stream's seed.
    pub seed: u64,
    /// The sample's subset.
    pub subset: Subset,
    /// The subset epoch the sample is served in.
    pub epoch: u64,
    /// The sample's ordinal in the subset's canonical order.
    pub ordinal: u64,
}

impl SampleRng {
    /// The stream for one purpose.
    pub fn rng(&self, purpose: Purpose) -> Rng {
        Rng::keyed(
            self.seed,
            self.subset.id() as u64,
            self.epoch,
            self.ordinal,
            purpose,
        )
    }
}
