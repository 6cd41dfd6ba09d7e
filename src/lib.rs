//! editfeed: reads WebDataset-style `.tar.zst` shards, plans deterministic
//! curriculum-ordered batches, decodes and augments them on a CPU pool and streams them
//! to trainers over gRPC. The binary in `main.rs` is a thin CLI over this library.
//!
//! The modules are the stages of the flow, in this order; a module uses its own stage
//! and earlier ones, never a later one (`scripts/check-layers.py` checks it):
//!
//! 1. foundation: [`units`], [`rng`], [`metrics`], [`hex`], [`secret`], [`allocator`]
//!    and the error report, used by every stage;
//! 2. [`store`]: where bytes come from and go to (local folders, object stores);
//! 3. [`shard`]: `.tar.zst` shards, one zstd frame per sample, sidecar indexes;
//! 4. [`codec`]: image formats, header limits, decoders and encoders;
//! 5. [`dataset`]: the manifest and sample schema, importers, writer, reader, reshard;
//! 6. [`plan`]: which sample goes to which global step and rank;
//! 7. [`transport`]: the wire contract, batch tensors, shared memory, the client;
//! 8. [`pipeline`]: decode and augment on the worker pool, collation, the producer;
//! 9. [`config`] and [`server`]: the daemon's configuration and its gRPC services.

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
