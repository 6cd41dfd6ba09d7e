//! Maps a subset ordinal (a position in canonical order) to its shard and its position
//! in that shard, from the manifest's per-shard sample counts. Part of the shard reader
//! stage (store -> SHARD READER -> plan).

use std::collections::HashMap;

use super::{Dataset, DatasetError};
use crate::dataset::manifest::Manifest;
use crate::dataset::Subset;

/// Where one sample lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The shard's position in its subset's list.
    pub shard: usize,
    /// The sample's position in its shard.
    pub local: u64,
}

/// Per subset, the first ordinal of each shard (prefix sums of sample counts).
pub(super) fn shard_starts(manifest: &Manifest) -> HashMap<Subset, Vec<u64>> {
    manifest
        .subsets
        .iter()
        .map(|(k, s)| {
            let mut acc = 0;
            let v = s
                .shards
                .iter()
                .map(|sh| {
                    let start = acc;
                    acc += sh.samples;
                    start
                })
                .collect();
            (*k, v)
        })
        .collect()
}

impl Dataset {
    /// Maps a subset ordinal to its shard and position.
    pub fn locate(&self, subset: Subset, ordinal: u64) -> Result<Location, DatasetError> {
        let starts = self
            .starts
            .get(&subset)
            .ok_or(DatasetError::NoSubset(subset))?;
        let len = self.len(subset);
        if ordinal >= len {
            return Err(DatasetError::OutOfRange {
                subset,
                ordinal,
                len,
            });
        }
        let shard = starts.partition_point(|&s| s <= ordinal) - 1;
        Ok(Location {
            shard,
            local: ordinal - starts[shard],
        })
    }
}
