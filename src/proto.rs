//! The wire contract, generated from `proto/editfeed/v1` by `build.rs`.

#![allow(clippy::all, missing_docs)]

/// `editfeed.v1`: the Loader and Admin services and their messages.
pub mod v1 {
    tonic::include_proto!("editfeed.v1");
}
