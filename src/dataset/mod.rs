//! Datasets: the sample schema, the manifest, writing and reading dataset folders, the
//! Pico-Banana and WebDataset importers, resharding, splits, verification and the
//! synthetic dataset generator.
//!
//! Stage: above the store, shards and image codecs, below the plan. Packing runs
//! publication -> importer -> writer -> shards; serving reads store -> shards -> READER
//! -> plan -> pipeline.

pub mod edit_types;
pub mod input_files;
pub mod input_root;
pub mod manifest;
pub mod merge;
pub mod parallel;
pub mod parts;
pub mod pico_banana;
pub mod reader;
pub mod reshard;
pub mod sample;
pub mod skip_summary;
pub mod splits;
pub mod subset;
pub mod synth;
pub mod transcode;
pub mod verify;
pub mod webdataset_import;
pub mod writer;

pub use edit_types::Category;
pub use manifest::Manifest;
pub use reader::{Dataset, DatasetError};
pub use sample::Sample;
pub use subset::Subset;
