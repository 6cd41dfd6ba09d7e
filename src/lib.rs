//! editfeed: reads WebDataset-style `.tar.zst` shards, plans deterministic
//! curriculum-ordered batches, decodes and augments them on a CPU pool and streams them
//! to trainers over gRPC. The binary in `main.rs` is a thin CLI over this library.

pub mod allocator;
pub mod codec;
pub mod config;
pub mod dataset;
mod error_report;
pub mod hex;
pub mod metrics;
pub mod pipeline;
pub mod plan;
pub mod rng;
pub mod secret;
pub mod server;
pub mod shard;
pub mod store;
pub mod transport;
pub mod units;

pub use error_report::error_report;
