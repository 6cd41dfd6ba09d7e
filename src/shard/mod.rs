//! Shards: WebDataset-style `.tar.zst` files with one zstd frame per sample and a sidecar
//! index, so that the file is an ordinary `.tar.zst` for other tools and one range read
//! per sample for editfeed. First stage of the flow after the store:
//! store -> SHARD READER -> plan -> prefetch -> decode/augment -> collate -> gRPC.

pub mod frame;
pub mod index;
pub mod members;
pub mod reader;
pub mod writer;

pub use frame::{Frame, FrameCompressor};
pub use index::{IndexEntry, ShardIndex};
pub use reader::{decode_frame, stream_samples, RawSample};
pub use writer::{FinishedShard, ShardWriter};

/// What went wrong reading a shard; every variant names the shard.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The shard's bytes are corrupt or truncated at this offset.
    #[error("shard {shard}: corrupt at offset {offset}: {why}")]
    Corrupt {
        shard: String,
        offset: u64,
        why: String,
    },
    /// The sidecar index is unusable.
    #[error("shard {shard}: index: {source}")]
    Index {
        shard: String,
        #[source]
        source: index::IndexError,
    },
    /// The file could not be read.
    #[error("shard {shard}: {source}")]
    Io {
        shard: String,
        #[source]
        source: std::io::Error,
    },
}
