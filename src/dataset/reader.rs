//! Opens a dataset folder: validates its manifest, maps a subset ordinal (a position in
//! canonical order) to its shard and sample, loads sidecar indexes on first use and
//! reads one sample with one range read.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::manifest::{Manifest, ManifestError, ShardManifest, MANIFEST_FILE};
use super::sample::Sample;
use super::Subset;
use crate::shard::{decode_frame, stream_samples, RawSample, ShardError, ShardIndex};

/// Why a dataset could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The manifest is missing or unreadable.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The manifest is invalid.
    #[error("{path}: {source}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: ManifestError,
    },
    /// A shard or index is unusable.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// The subset is not in the dataset.
    #[error("the dataset has no {0} subset")]
    NoSubset(Subset),
    /// The ordinal is past the subset's end.
    #[error("subset {subset} has {len} samples; ordinal {ordinal} is out of range")]
    OutOfRange {
        subset: Subset,
        ordinal: u64,
        len: u64,
    },
}

/// Where one sample lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The shard's position in its subset's list.
    pub shard: usize,
    /// The sample's position in its shard.
    pub local: u64,
}

/// An open dataset on local disk.
pub struct Dataset {
    root: PathBuf,
    manifest: Manifest,
    /// Per subset, the first ordinal of each shard (prefix sums of sample counts).
    starts: HashMap<Subset, Vec<u64>>,
    indexes: Mutex<HashMap<(Subset, usize), Arc<ShardIndex>>>,
}

impl Dataset {
    /// Opens and validates `root/manifest.json`.
    pub fn open(root: &Path) -> Result<Dataset, DatasetError> {
        let path = root.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(|source| DatasetError::Io {
            path: path.clone(),
            source,
        })?;
        let manifest =
            Manifest::parse(&bytes).map_err(|source| DatasetError::Manifest { path, source })?;
        Ok(Dataset::from_manifest(root, manifest))
    }

    /// A dataset from an already-parsed manifest.
    pub fn from_manifest(root: &Path, manifest: Manifest) -> Dataset {
        let starts = manifest
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
            .collect();
        Dataset {
            root: root.to_path_buf(),
            manifest,
            starts,
            indexes: Mutex::new(HashMap::new()),
        }
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The dataset folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Samples in a subset (0 when absent).
    pub fn len(&self, subset: Subset) -> u64 {
        self.manifest.subsets.get(&subset).map_or(0, |s| s.samples)
    }

    /// The subsets present, in canonical order.
    pub fn subsets(&self) -> Vec<Subset> {
        self.manifest.subsets.keys().copied().collect()
    }

    /// The shard entries of a subset.
    pub fn shards(&self, subset: Subset) -> Result<&[ShardManifest], DatasetError> {
        self.manifest
            .subsets
            .get(&subset)
            .map(|s| &s.shards[..])
            .ok_or(DatasetError::NoSubset(subset))
    }

    /// What the planner needs to know: the version, and per subset its length and each
    /// sample's category (from the manifest, without reading a shard).
    pub fn plan_input(&self) -> crate::plan::PlanDataset {
        use super::manifest::category_from_char;
        let subsets = self
            .manifest
            .subsets
            .iter()
            .map(|(subset, s)| {
                let has_categories = s.shards.iter().all(|sh| !sh.categories.is_empty())
                    && s.shards
                        .iter()
                        .any(|sh| sh.categories.bytes().any(|b| b != b'-'));
                let categories = has_categories.then(|| {
                    s.shards
                        .iter()
                        .flat_map(|sh| sh.categories.bytes().map(category_from_char))
                        .collect::<Vec<_>>()
                        .into()
                });
                crate::plan::PlanSubset {
                    subset: *subset,
                    len: s.samples,
                    categories,
                }
            })
            .collect();
        crate::plan::PlanDataset {
            version: self.manifest.version.clone(),
            subsets,
        }
    }

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

    /// The index of one shard, read and checked on first use.
    pub fn index(&self, subset: Subset, shard: usize) -> Result<Arc<ShardIndex>, DatasetError> {
        if let Some(ix) = self
            .indexes
            .lock()
            .expect("index cache lock")
            .get(&(subset, shard))
        {
            return Ok(ix.clone());
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
        let bytes = std::fs::read(self.root.join(index_path)).map_err(|source| ShardError::Io {
            shard: index_path.clone(),
            source,
        })?;
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

    /// The key of the sample at an ordinal.
    pub fn key_of(&self, subset: Subset, ordinal: u64) -> Result<String, DatasetError> {
        let loc = self.locate(subset, ordinal)?;
        Ok(self.index(subset, loc.shard)?.entries[loc.local as usize]
            .key
            .clone())
    }

    /// Reads one sample's members with one range read.
    pub fn read_raw(&self, subset: Subset, ordinal: u64) -> Result<RawSample, DatasetError> {
        let loc = self.locate(subset, ordinal)?;
        let index = self.index(subset, loc.shard)?;
        let entry = &index.entries[loc.local as usize];
        let shard = &self.shards(subset)?[loc.shard].path;
        let frame = read_range(
            &self.root.join(shard),
            entry.offset,
            entry.frame_len as usize,
        )
        .map_err(|source| ShardError::Io {
            shard: shard.clone(),
            source,
        })?;
        let raw = decode_frame(shard, entry.offset, &frame, entry.raw_len)?;
        if raw.key != entry.key {
            return Err(ShardError::Corrupt {
                shard: shard.clone(),
                offset: entry.offset,
                why: format!(
                    "frame holds sample {:?}, the index says {:?}",
                    raw.key, entry.key
                ),
            }
            .into());
        }
        Ok(raw)
    }

    /// Reads one sample and applies the schema.
    pub fn read_sample(&self, subset: Subset, ordinal: u64) -> Result<Sample, DatasetError> {
        let raw = self.read_raw(subset, ordinal)?;
        let shard = self.shards(subset)?[self.locate(subset, ordinal)?.shard]
            .path
            .clone();
        raw.into_sample()
            .map_err(|source| ShardError::Sample { shard, source }.into())
    }

    /// Streams every sample of one shard in order, without its index.
    pub fn stream_shard(
        &self,
        subset: Subset,
        shard: usize,
        on_sample: impl FnMut(RawSample) -> Result<(), ShardError>,
    ) -> Result<(), DatasetError> {
        let name = self.shards(subset)?[shard].path.clone();
        let file = File::open(self.root.join(&name)).map_err(|source| ShardError::Io {
            shard: name.clone(),
            source,
        })?;
        stream_samples(
            &name,
            std::io::BufReader::with_capacity(1 << 20, file),
            on_sample,
        )?;
        Ok(())
    }
}

/// Reads `len` bytes at `offset` of a file (one positioned read).
pub fn read_range(path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let file = File::open(path)?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            std::io::Error::new(
                e.kind(),
                format!("shard is shorter than offset {offset} + {len}"),
            )
        } else {
            e
        }
    })?;
    Ok(buf)
}
