//! The wire contract, generated from `proto/editfeed/v1` by `build.rs`.

#![allow(clippy::all, missing_docs)]

/// `editfeed.v1`: the Loader and Admin services and their messages.
pub mod v1 {
    tonic::include_proto!("editfeed.v1");
}

/// The encoded file descriptor set of `proto/`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/editfeed_descriptor.bin"));
