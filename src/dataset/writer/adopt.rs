//! Taking over the shards an interrupted write already closed: a later run of the same
//! write (the same input, options and order) is given the [`ClosedShard`]s it logged,
//! keeps, per subset, the longest leading run whose shard and index files still match
//! their checksums, and continues after them. The content hash continues from their
//! indexes, so the result is the same as writing every sample again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::open_shard::SubsetState;
use super::{DatasetWriter, WriteError};
use crate::dataset::manifest::ShardManifest;
use crate::dataset::splits::SplitSource;
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

/// The (key, content digest) pairs of a shard's samples, in order, from its index.
pub type KeyDigests = Vec<(String, [u8; 32])>;

impl ClosedShard {
    /// The shard `state` closed last, as a log records it.
    pub(super) fn last_of(subset: Subset, state: &SubsetState) -> ClosedShard {
        ClosedShard {
            subset,
            shard: state
                .shards
                .last()
                .expect("a shard was just closed")
                .clone(),
            max_turns: state.max_turns,
        }
    }
}

impl DatasetWriter {
    /// Takes over shards of `subset` written earlier: by an interrupted run of the same
    /// write, or by a part of the same pack. The caller has checked that the files are
    /// in place with these checksums; `samples` are their (key, digest) pairs in order
    /// (from their indexes) and `max_turns` the longest chain among them. The subset's
    /// next shard is numbered after them and the content hash continues from them, so
    /// the result is the same as writing every sample again. Only while no shard of the
    /// subset is open.
    pub fn adopt_shards(
        &mut self,
        subset: Subset,
        shards: Vec<ShardManifest>,
        samples: &[(String, [u8; 32])],
        max_turns: u32,
    ) -> Result<(), WriteError> {
        let file_splits = matches!(self.splits, Some(SplitSource::File(_)));
        let state = self.subsets.entry(subset).or_default();
        if state.open.is_some() {
            return Err(WriteError::Options(format!(
                "subset {subset}: shards can only be taken over while none is open"
            )));
        }
        for (key, digest) in samples {
            if file_splits {
                self.split_keys_used.insert((subset, key.clone()));
            }
            if !state.keys.insert(key.clone()) {
                return Err(WriteError::DuplicateKey {
                    subset,
                    key: key.clone(),
                });
            }
            state.content.add(key, digest);
        }
        state.max_turns = state.max_turns.max(max_turns);
        state.shards.extend(shards);
        Ok(())
    }

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
    pub fn intact(&self, shard: &ShardManifest) -> Option<KeyDigests> {
        let data = self.store().read(&shard.path).ok()?;
        if data.len() as u64 != shard.bytes || hex(&Sha256::digest(&data)) != shard.sha256 {
            return None;
        }
        self.indexed_samples(shard).ok()
    }

    /// The (key, digest) pairs of a written shard, from its index, which must match the
    /// checksum and the sample count its entry records (the shard itself is not read).
    pub fn indexed_samples(&self, shard: &ShardManifest) -> Result<KeyDigests, String> {
        let index_path = shard
            .index
            .as_ref()
            .ok_or_else(|| format!("shard {} has no index", shard.path))?;
        let index = self.store().read(index_path).map_err(|e| e.to_string())?;
        if shard.index_sha256.as_deref() != Some(hex(&Sha256::digest(&index)).as_str()) {
            return Err(format!(
                "{index_path}: sha256 differs from the one recorded"
            ));
        }
        let index = ShardIndex::parse(&index).map_err(|e| format!("{index_path}: {e}"))?;
        if index.entries.len() as u64 != shard.samples {
            return Err(format!(
                "{index_path}: {} samples, {} recorded",
                index.entries.len(),
                shard.samples
            ));
        }
        Ok(index
            .entries
            .into_iter()
            .map(|e| (e.key, e.digest))
            .collect())
    }
}
