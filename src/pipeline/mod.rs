//! The serving pipeline after the plan: read and decode on the CPU worker pool, paired
//! augmentation, collation into contiguous tensors, and the per-stream producer that
//! keeps a bounded number of batches in flight in plan order.
//!
//! store -> shard reader -> plan -> PREFETCH -> DECODE + AUGMENT -> COLLATE -> gRPC

pub mod augment;
pub mod budget;
pub mod buffers;
pub mod collate;
pub mod decode;
pub mod direction;
pub mod fit;
#[cfg(feature = "turbojpeg")]
pub mod jpeg_turbo;
pub mod pool;
pub mod ppm;
pub mod prepare;
pub mod stream;
pub mod timing;
