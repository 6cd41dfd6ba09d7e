//! Opens a dataset from its store (a local folder or a bucket prefix): validates its
//! manifest, maps a subset ordinal (a position in canonical order) to its shard and
//! sample, loads sidecar indexes on first use and reads one sample with one range read,
//! several samples of a shard with coalesced range reads, or a whole shard as a stream.
//! Sits after the store: store -> SHARD READER -> plan -> prefetch -> decode/augment.
//!
//! This file holds the [`Dataset`] itself: opening it, what its manifest says, and the
//! check that the manifest has not changed since. The rest is split by concept:
//! `error` (why a read failed), `locate` (ordinal to shard), `index` (sidecar indexes),
//! `samples` (range reads of sample frames), `stream` (whole shards and files) and
//! `read_ahead` (fetching ahead of the workers for object stores).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::manifest::{Manifest, ShardManifest, MANIFEST_FILE};
use super::Subset;
use crate::shard::ShardIndex;
use crate::store::{AsLocation, Location as StoreLocation, Store, StoreConfig, StoreError};

mod error;
mod index;
mod locate;
mod read_ahead;
mod samples;
mod stream;

pub use error::DatasetError;
pub use locate::Location;
pub use read_ahead::ReadAhead;
pub use samples::read_range;

/// An open dataset, local or in an object store.
pub struct Dataset {
    root: PathBuf,
    store: Store,
    manifest: Manifest,
    /// Per subset, the first ordinal of each shard (prefix sums of sample counts).
    starts: HashMap<Subset, Vec<u64>>,
    indexes: Mutex<HashMap<(Subset, usize), Arc<ShardIndex>>>,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("location", &self.store.location().to_string())
            .field("version", &self.manifest.version)
            .finish()
    }
}

impl Dataset {
    /// Opens and validates the manifest of a folder or URL, with the store configured
    /// from the environment (see [`StoreConfig::with_env`]).
    pub fn open(location: impl AsLocation) -> Result<Dataset, DatasetError> {
        Dataset::open_with(location, &StoreConfig::from_env())
    }

    /// Opens and validates the manifest of a folder or URL with a store configuration.
    pub fn open_with(
        location: impl AsLocation,
        config: &StoreConfig,
    ) -> Result<Dataset, DatasetError> {
        let location = location.as_location()?;
        let store = Store::open(&location, config)?;
        Dataset::open_store(store)
    }

    /// Opens the dataset of an already-open store (e.g. one over a custom
    /// `object_store` client).
    pub fn open_store(store: Store) -> Result<Dataset, DatasetError> {
        let path = PathBuf::from(store.url_of(MANIFEST_FILE));
        let bytes = store.read_revalidated(MANIFEST_FILE).map_err(|e| match e {
            StoreError::Io { source, .. } => DatasetError::Io {
                path: path.clone(),
                source,
            },
            other => DatasetError::Store(other),
        })?;
        let manifest =
            Manifest::parse(&bytes).map_err(|source| DatasetError::Manifest { path, source })?;
        Ok(Dataset::with_store(store, manifest))
    }

    fn with_store(store: Store, manifest: Manifest) -> Dataset {
        let starts = locate::shard_starts(&manifest);
        let root = match store.location() {
            StoreLocation::Local(p) => p.clone(),
            StoreLocation::Remote(u) => PathBuf::from(u.to_string()),
        };
        Dataset {
            root,
            store,
            manifest,
            starts,
            indexes: Mutex::new(HashMap::new()),
        }
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The dataset folder; for an object store, its URL as a path (for messages).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store the dataset is read from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Bytes read from the store since the dataset was opened (manifest, indexes and
    /// samples; disk-cache hits excluded).
    pub fn bytes_read(&self) -> u64 {
        self.store.stats().bytes_read
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

    /// Checks that the dataset's manifest still has the version this dataset was opened
    /// with. Called when a sample fails to read, to tell a corrupt sample (replaced) from
    /// a dataset rewritten in place (the stream must end).
    pub fn check_unchanged(&self) -> Result<(), DatasetError> {
        let changed = |now: String| DatasetError::Changed {
            root: self.root.display().to_string(),
            was: self.manifest.version.clone(),
            now,
        };
        let bytes = match self.store.read_revalidated(MANIFEST_FILE) {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => return Err(changed("is missing".into())),
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(changed("is missing".into()))
            }
            Err(e) => return Err(e.into()),
        };
        match Manifest::parse(&bytes) {
            Ok(m) if m.version == self.manifest.version => Ok(()),
            Ok(m) => Err(changed(format!("says version {}", m.version))),
            Err(e) => Err(changed(format!("does not parse ({e})"))),
        }
    }
}
