//! Why a sample could not be augmented: the one error type of the augment stage.
//!
//! Part of DECODE + AUGMENT (store -> shard reader -> plan -> prefetch -> DECODE +
//! AUGMENT -> collate -> gRPC).

use crate::codec::DecodeError;
use crate::dataset::sample::Role;

use super::spec::SpecError;

/// Why a sample could not be augmented.
#[derive(Debug, thiserror::Error)]
pub enum AugmentError {
    /// The spec is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The sample has no images.
    #[error("sample has no images")]
    NoImages,
    /// The target size is empty or too large.
    #[error("target size {width}x{height} is not usable")]
    Target {
        /// Target width.
        width: u32,
        /// Target height.
        height: u32,
    },
    /// The output buffer has the wrong length.
    #[error("output buffer holds {got} bytes, {images} images at the target size need {expected}")]
    Output {
        /// Images in the sample.
        images: usize,
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// An image failed to decode.
    #[error("{} image: {source}", role.field())]
    Decode {
        /// Which image.
        role: Role,
        /// Why.
        #[source]
        source: DecodeError,
    },
    /// An image failed to resize.
    #[error("{} image: resize failed: {message}", role.field())]
    Resize {
        /// Which image.
        role: Role,
        /// The resizer's message.
        message: String,
    },
}
