//! The transport: how batches and requests travel between the daemon and its trainers.
//!
//! Stage: above `plan` (a wire stream spec converts to and from the planner's
//! [`crate::plan::StreamSpec`]) and below `pipeline` (collation builds wire tensors and
//! writes shared-memory files) and `server`, so nothing here imports those.
//!
//! - [`proto`]: the wire contract, generated from `proto/editfeed/v1` by `build.rs`.
//! - [`wire`]: building tensors, and the batch digest every client computes the same way.
//! - [`convert`]: wire messages to and from the library's own types.
//! - [`shared_memory`]: tensors handed over as files on a tmpfs shared with a trainer on
//!   the same host, instead of inside the messages.
//! - [`client`]: the Rust client of the Loader and Admin services (endpoints, TLS, token).

pub mod client;
pub mod convert;
pub mod proto;
pub mod shared_memory;
pub mod wire;
