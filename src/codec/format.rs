//! The encoded image formats a sample may hold, by member extension and by the magic
//! bytes that identify them. Part of the codec stage, the lowest image layer: the shard
//! schema, the importers and the decoders all name formats through it.

use serde::{Deserialize, Serialize};

/// An encoded image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageFormat {
    /// JPEG (`.jpg`).
    Jpeg,
    /// PNG (`.png`).
    Png,
    /// WebP (`.webp`).
    Webp,
    /// QOI, the "Quite OK Image" format (`.qoi`): lossless, and several times faster to
    /// decode than PNG; written only when a pack transcodes to it.
    Qoi,
    /// The binary Netpbm pixmap (`.ppm`, `P6`): raw RGB samples after a short header,
    /// read in place by the resizer; what `--transcode-edits ppm` writes.
    Ppm,
}

impl ImageFormat {
    /// The file extension used in member names.
    pub fn ext(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Png => "png",
            ImageFormat::Webp => "webp",
            ImageFormat::Qoi => "qoi",
            ImageFormat::Ppm => "ppm",
        }
    }

    /// Parses a member-name extension.
    pub fn from_ext(ext: &str) -> Option<ImageFormat> {
        match ext.to_ascii_lowercase().as_str() {
            "jpg" | "jpeg" => Some(ImageFormat::Jpeg),
            "png" => Some(ImageFormat::Png),
            "webp" => Some(ImageFormat::Webp),
            "qoi" => Some(ImageFormat::Qoi),
            "ppm" => Some(ImageFormat::Ppm),
            _ => None,
        }
    }

    /// Recognises a format from the first bytes of the encoded image.
    pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageFormat::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ImageFormat::Png)
        } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(ImageFormat::Webp)
        } else if bytes.starts_with(b"qoif") {
            Some(ImageFormat::Qoi)
        } else if super::ppm::sniff(bytes) {
            Some(ImageFormat::Ppm)
        } else {
            None
        }
    }
}
