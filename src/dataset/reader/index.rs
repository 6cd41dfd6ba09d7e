//! Sidecar shard indexes of an open dataset: read on first use, checked against the
//! manifest (checksum, sample count, data length) and cached for the dataset's life.
//! Part of the shard reader stage (store -> SHARD READER -> plan).

use std::sync::Arc;

use super::error::store_err;
use super::{Dataset, DatasetError};
use crate::dataset::Subset;
use crate::shard::{ShardError, ShardIndex};

impl Dataset {
    pub(super) fn cached_index(&self, subset: Subset, shard: usize) -> Option<Arc<ShardIndex>> {
        self.indexes
            .lock()
            .expect("index cache lock")
            .get(&(subset, shard))
            .cloned()
    }

    /// The index of one shard, read and checked on first use.
    pub fn index(&self, subset: Subset, shard: usize) -> Result<Arc<ShardIndex>, DatasetError> {
        if let Some(ix) = self.cached_index(subset, shard) {
            return Ok(ix);
        }
        let entry = &self.shards(subset)?[shard];
        let name = entry.path.clone();
        let Some(index_path) = &entry.index else {
            return Err(ShardError::Corrupt {
                shard: name,
                offset: 0,
                why: "the shard has no index; it can only be streamed".into(),
            }
            .into());
        };
        // The index's checksum pins its content, so a cached copy is never stale.
        let tag = entry.index_sha256.as_deref().unwrap_or(&entry.sha256);
        let bytes = self
            .store
            .read_versioned(index_path, tag)
            .map_err(|e| store_err(index_path, e))?;
        if let Some(want) = &entry.index_sha256 {
            let got = crate::hex::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            if &got != want {
                return Err(ShardError::Corrupt {
                    shard: index_path.clone(),
                    offset: 0,
                    why: format!(
                        "index sha256 is {got}, the manifest says {want}: the index is out of step with the manifest"
                    ),
                }
                .into());
            }
        }
        let index = ShardIndex::parse(&bytes).map_err(|source| ShardError::Index {
            shard: name.clone(),
            source,
        })?;
        if index.entries.len() as u64 != entry.samples || index.data_len != entry.bytes {
            return Err(ShardError::Corrupt {
                shard: name,
                offset: 0,
                why: format!(
                    "index describes {} samples in {} bytes, the manifest says {} in {}",
                    index.entries.len(),
                    index.data_len,
                    entry.samples,
                    entry.bytes
                ),
            }
            .into());
        }
        let index = Arc::new(index);
        self.indexes
            .lock()
            .expect("index cache lock")
            .insert((subset, shard), index.clone());
        Ok(index)
    }
}
