//! How a dataset is written (shard size target, zstd level, literal coding, overwrite)
//! and why a write fails. Part of the dataset writer.

use std::path::PathBuf;

use crate::dataset::Subset;
use crate::store::{StoreError, UrlError};

/// When to close a shard and start the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardTarget {
    /// At most this many samples per shard.
    Samples(u64),
    /// Close a shard once it reaches this many bytes.
    Bytes(u64),
}

/// How to write a dataset.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Shard size target.
    pub target: ShardTarget,
    /// zstd level: 1..=22, or zstd's fast levels -1 down to -131072 (see [`check_level`]).
    pub level: i32,
    /// Code each frame with zstd's defaults for `level`: Huffman-coded literals, and
    /// matches as short as the level takes (3 to 5 bytes). Off by default: a sample is
    /// almost all JPEG, PNG, WebP or QOI bytes, which are entropy-coded already (raw PPM
    /// pixels are the exception, and compress little either way). The Huffman stage
    /// re-codes them for a few percent of size (3.5% on the benchmark's shards) and
    /// doubles the frame decode time on every read (1.26 against 3.05 GB/s); matches
    /// under 6 bytes in such bytes are mostly coincidences, each a sequence to decode
    /// for a byte or two saved (5.3% of the benchmark's shards, at 4.5 times the decode
    /// time: 3.1 against 14 GB/s; `BENCHMARKS.md`). At the fast levels (below 1) zstd
    /// picks its matches as usual either way. Matches are still found at `level`.
    pub compress_literals: bool,
    /// Replace an existing dataset in the output folder.
    pub overwrite: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            target: ShardTarget::Bytes(256 << 20),
            level: 3,
            compress_literals: false,
            overwrite: false,
        }
    }
}

/// Checks a zstd level: zstd's levels 1..=22, or its fast levels -1 down to -131072
/// ([`zstd::compression_level_range`]). On image members the fast levels find almost
/// nothing to gain and store the frames nearly raw: at -1 shards 1.3% larger than at the
/// default level 3 (whose matches are at least 6 bytes); further down (-100) frames of
/// raw pixels (`--transcode-edits ppm`) decode at memory speed (`BENCHMARKS.md`).
pub fn check_level(level: i32) -> Result<(), String> {
    let range = zstd::compression_level_range();
    if level != 0 && range.contains(&level) {
        Ok(())
    } else {
        Err(format!(
            "zstd level {level} is not in 1..={} or {}..=-1 (zstd's fast levels)",
            range.end(),
            range.start()
        ))
    }
}

/// Why a dataset could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The output folder already holds a dataset.
    #[error("{0} already holds a dataset (manifest.json); pass --overwrite to replace it")]
    Exists(PathBuf),
    /// The store failed (the message names the object's path or URL).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The output location does not parse.
    #[error(transparent)]
    Location(#[from] UrlError),
    /// Two samples of one subset share a key.
    #[error("subset {subset}: duplicate sample key {key:?}")]
    DuplicateKey { subset: Subset, key: String },
    /// A sample does not fit the schema.
    #[error(transparent)]
    Sample(#[from] crate::dataset::sample::SampleError),
    /// A sample could not be laid out or compressed as a frame.
    #[error("sample {subset}/{key}: {source}")]
    Encode {
        /// Its subset.
        subset: Subset,
        /// Its key.
        key: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// Nothing was written.
    #[error("no samples to write")]
    Empty,
    /// A bad option.
    #[error("{0}")]
    Options(String),
}
