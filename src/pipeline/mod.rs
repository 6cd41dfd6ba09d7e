//! The serving pipeline after the plan: read and decode (through [`crate::codec`]) on the
//! CPU worker pool, paired augmentation (crop, resize, flip, fit), collation into
//! contiguous tensors, and the per-stream producer that keeps a bounded number of
//! batches in flight in plan order.
//!
//! store -> shard reader -> plan -> PREFETCH -> DECODE + AUGMENT -> COLLATE -> gRPC

pub mod augment;
pub mod budget;
pub mod buffers;
pub mod collate;
pub mod direction;
pub mod fit;
pub mod pool;
pub mod prepare;
pub mod stream;
pub mod timing;
