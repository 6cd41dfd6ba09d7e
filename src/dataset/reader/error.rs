//! The dataset reader's error: why a dataset could not be opened or read, and which
//! failures end a stream rather than replace a sample. Part of the shard reader stage
//! (store -> SHARD READER -> plan).

use std::path::PathBuf;

use crate::dataset::manifest::ManifestError;
use crate::dataset::sample::SampleError;
use crate::dataset::Subset;
use crate::shard::ShardError;
use crate::store::{StoreError, UrlError};

/// Why a dataset could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The manifest is missing or unreadable (local folders).
    #[error("{path}: {source}")]
    Io {
        /// The manifest's path.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The manifest is invalid.
    #[error("{path}: {source}")]
    Manifest {
        /// The manifest's path or URL.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: ManifestError,
    },
    /// A shard or index is unusable.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// A sample read from a shard does not fit the editfeed schema.
    #[error("shard {shard}: {source}")]
    Sample {
        /// The shard's path in the manifest.
        shard: String,
        /// What is wrong with the sample.
        #[source]
        source: SampleError,
    },
    /// The object store failed (the message names the object's URL).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The location does not parse.
    #[error(transparent)]
    Location(#[from] UrlError),
    /// The dataset was rewritten while it was being read: its manifest no longer has the
    /// version it was opened with (or is gone).
    #[error("dataset {root} changed while it was being read: opened as version {was}, its manifest now {now}; start a new stream to read the new version")]
    Changed {
        /// The dataset's folder or URL.
        root: String,
        /// The version it was opened with.
        was: String,
        /// What the manifest says now (`says version X`, or why it cannot be read).
        now: String,
    },
    /// The subset is not in the dataset.
    #[error("the dataset has no {0} subset")]
    NoSubset(Subset),
    /// The ordinal is past the subset's end.
    #[error("subset {subset} has {len} samples; ordinal {ordinal} is out of range")]
    OutOfRange {
        /// The subset.
        subset: Subset,
        /// The ordinal asked for.
        ordinal: u64,
        /// Samples in the subset.
        len: u64,
    },
}

impl DatasetError {
    /// Whether the store failed rather than a sample: the stream should end with this
    /// error instead of replacing samples (a replacement would change the stream's
    /// bytes, and would hit the same store).
    pub fn is_store_failure(&self) -> bool {
        matches!(self, DatasetError::Store(_))
    }

    /// Whether the stream must end rather than replace the sample: the store failed, or
    /// the dataset changed under it (every later read would be wrong too).
    pub fn ends_the_stream(&self) -> bool {
        matches!(self, DatasetError::Store(_) | DatasetError::Changed { .. })
    }
}

/// A store failure while reading `name`: a local I/O error stays a shard error (a
/// bad sample, replaced by the next); a remote one is a store error.
pub(super) fn store_err(name: &str, e: StoreError) -> DatasetError {
    match e {
        StoreError::Io { source, .. } => ShardError::Io {
            shard: name.to_string(),
            source,
        }
        .into(),
        other => DatasetError::Store(other),
    }
}
