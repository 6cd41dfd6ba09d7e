//! Taking over the shards an interrupted write already closed: a later run of the same
//! write (the same input, options and order) is given the [`ClosedShard`]s it logged,
//! keeps, per subset, the longest leading run whose shard and index files still match
//! their checksums, and continues after them. The content hash continues from their
//! indexes, so the result is the same as writing every sample again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{DatasetWriter, WriteError};
use crate::dataset::manifest::ShardManifest;
use crate::dataset::Subset;
use crate::hex::hex;
use crate::shard::ShardIndex;

/// A shard a write has completed: what a later run of the same write needs to take it
/// over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClosedShard {
    /// Its subset.
    pub subset: Subset,
    /// Its manifest entry (path, checksums, counts, categories).
    pub shard: ShardManifest,
    /// The longest chain of the subset up to and including this shard.
    pub max_turns: u32,
}

impl DatasetWriter {
    /// Takes over, per subset, the longest run of `done`'s shards from the first one
    /// whose shard and index files still have their checksums. Returns the samples taken
    /// over per subset and the shards taken over, in order; a shard that does not match
    /// (and every one after it) is to be written again.
    pub fn adopt_closed(
        &mut self,
        subsets: &[Subset],
        done: &[ClosedShard],
    ) -> Result<(BTreeMap<Subset, u64>, Vec<ClosedShard>), WriteError> {
        let mut skip = BTreeMap::new();
        let mut adopted = Vec::new();
        for &subset in subsets {
            let mut shards = Vec::new();
            let mut samples = Vec::new();
            let mut max_turns = 0;
            for (i, closed) in done.iter().filter(|c| c.subset == subset).enumerate() {
                let expected = format!("{}-{:06}.tar.zst", subset.name(), i);
                let Some(entries) = (closed.shard.path == expected)
                    .then(|| self.intact(&closed.shard))
                    .flatten()
                else {
                    break;
                };
                samples.extend(entries);
                shards.push(closed.clone());
                max_turns = closed.max_turns;
            }
            if shards.is_empty() {
                continue;
            }
            skip.insert(subset, samples.len() as u64);
            let manifests = shards.iter().map(|c| c.shard.clone()).collect();
            self.adopt_shards(subset, manifests, &samples, max_turns)?;
            adopted.extend(shards);
        }
        Ok((skip, adopted))
    }

    /// The (key, digest) pairs of a written shard when its files match its checksums.
    pub fn intact(&self, shard: &ShardManifest) -> Option<Vec<(String, [u8; 32])>> {
        let store = self.store();
        let index_path = shard.index.as_ref()?;
        let data = store.read(&shard.path).ok()?;
        if data.len() as u64 != shard.bytes || hex(&Sha256::digest(&data)) != shard.sha256 {
            return None;
        }
        let index = store.read(index_path).ok()?;
        if shard.index_sha256.as_deref() != Some(hex(&Sha256::digest(&index)).as_str()) {
            return None;
        }
        let index = ShardIndex::parse(&index).ok()?;
        (index.entries.len() as u64 == shard.samples).then(|| {
            index
                .entries
                .into_iter()
                .map(|e| (e.key, e.digest))
                .collect()
        })
    }
}
