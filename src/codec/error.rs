//! Why an image could not be probed or decoded: one error type for every codec, naming
//! the format and, for decoder failures, the decoder. Part of the codec stage (below
//! dataset and pipeline).

use super::format::ImageFormat;

/// Why an image could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The header is missing, truncated or malformed.
    #[error("{} header: {why}", name(*format))]
    BadHeader {
        /// The format whose header was read.
        format: ImageFormat,
        /// What is wrong.
        why: String,
    },
    /// The header declares more pixels than the limit allows.
    #[error(
        "{} declares {width}x{height} ({pixels} pixels), over the limit of {max_pixels} pixels",
        name(*format)
    )]
    TooLarge {
        /// The image format.
        format: ImageFormat,
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// Declared width times height.
        pixels: u64,
        /// The limit.
        max_pixels: u64,
    },
    /// The image uses a feature the chosen decoder does not support.
    #[error("{} {what} is not supported by {decoder}", name(*format))]
    Unsupported {
        /// The image format.
        format: ImageFormat,
        /// Which decoder.
        decoder: &'static str,
        /// What is unsupported.
        what: String,
    },
    /// The decoder failed (corrupt or truncated data).
    #[error("{} decode with {decoder} failed: {message}", name(*format))]
    Decoder {
        /// The image format.
        format: ImageFormat,
        /// Which decoder (`image`, `jpeg-decoder` or `libjpeg-turbo`).
        decoder: &'static str,
        /// The decoder's message.
        message: String,
    },
    /// The decoder produced a size other than the header declared.
    #[error(
        "{} decoded to {got_width}x{got_height}, expected {width}x{height}",
        name(*format)
    )]
    SizeMismatch {
        /// The image format.
        format: ImageFormat,
        /// Expected width.
        width: u32,
        /// Expected height.
        height: u32,
        /// Decoded width.
        got_width: u32,
        /// Decoded height.
        got_height: u32,
    },
}

pub(super) fn name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::Png => "png",
        ImageFormat::Webp => "webp",
        ImageFormat::Qoi => "qoi",
        ImageFormat::Ppm => "ppm",
    }
}

pub(super) fn bad(format: ImageFormat, why: impl Into<String>) -> DecodeError {
    DecodeError::BadHeader {
        format,
        why: why.into(),
    }
}
