//! Reads one image file of a row, checks that it is a decodable JPEG, PNG, WebP, QOI or
//! PPM and, only when the user asked, transcodes or shrinks it. Without options the bytes are
//! stored exactly as published and the member extension follows the sniffed content,
//! not the file name.
//!
//! Flow: row -> source resolution -> IMAGE LOADING (here) -> writer.

use bytes::Bytes;

use crate::codec::{self, DecodeLimits, ImageFormat, TranscodeTarget};
use crate::dataset::input_files::{InputFileError, DEFAULT_MAX_IMAGE_BYTES};
use crate::dataset::input_root::InputFile;
use crate::dataset::sample::{Role, SampleImage};
use crate::dataset::transcode::{probe, transcode, DEFAULT_PIXEL_LIMIT};

/// What to do to images at import time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageOptions {
    /// Re-encode edited images (edit, chosen, rejected, turns) to this format; source
    /// photos keep theirs.
    pub transcode_edits: Option<TranscodeTarget>,
    /// Shrink every image of a sample so its longer side is at most this many pixels.
    pub max_side: Option<u32>,
    /// Refuse images whose header declares more pixels than this (the daemon's
    /// `max_decode_pixels` by default, so nothing is packed that it would refuse), with
    /// or without transcoding.
    pub pixel_limit: u64,
    /// Refuse image files larger than this many bytes, checked before reading.
    pub max_image_bytes: u64,
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions {
            transcode_edits: None,
            max_side: None,
            pixel_limit: DEFAULT_PIXEL_LIMIT,
            max_image_bytes: DEFAULT_MAX_IMAGE_BYTES,
        }
    }
}

impl ImageOptions {
    /// Whether any image may be re-encoded.
    pub fn rewrites(&self) -> bool {
        self.transcode_edits.is_some() || self.max_side.is_some()
    }
}

/// Why an image could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Read(std::io::Error),
    /// The path names a FIFO, a device, a socket or a folder (the message says which).
    NotRegular(String),
    /// The file is larger than [`ImageOptions::max_image_bytes`] (the message says so).
    TooLarge(String),
    /// The bytes are not a decodable image.
    Decode(String),
}

/// Reads, checks and (when asked) transcodes the image in `file` for `role`.
pub fn load_image(
    file: &InputFile,
    role: Role,
    opts: &ImageOptions,
) -> Result<SampleImage, LoadError> {
    let bytes = Bytes::from(
        file.read_bounded(opts.max_image_bytes)
            .map_err(|e| match e {
                InputFileError::Missing { source, .. } | InputFileError::Read { source, .. } => {
                    LoadError::Read(source)
                }
                e @ InputFileError::NotRegular { .. } => LoadError::NotRegular(e.to_string()),
                e => LoadError::TooLarge(e.to_string()),
            })?,
    );
    // The daemon's own header parser and limit check, so a bomb is refused here
    // rather than on every read; undecodable headers are left to the probe below.
    if let Some(declared) = ImageFormat::sniff(&bytes) {
        if let Ok(header) = codec::probe(declared, &bytes) {
            let limits = DecodeLimits {
                max_pixels: opts.pixel_limit,
            };
            codec::check_limits(&header, &limits)
                .map_err(|e| LoadError::TooLarge(format!("{e} (--max-decode-pixels)")))?;
        }
    }
    let (format, bytes): (ImageFormat, Bytes) = if opts.rewrites() {
        let target = if role == Role::Source {
            None
        } else {
            opts.transcode_edits
        };
        transcode(&bytes, target, opts.max_side, opts.pixel_limit)
            .map_err(|e| LoadError::Decode(e.to_string()))?
    } else {
        let info = probe(&bytes).map_err(|e| LoadError::Decode(e.to_string()))?;
        (info.format, bytes)
    };
    Ok(SampleImage {
        role,
        format,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode;
    use image::{DynamicImage, RgbImage};

    #[test]
    fn sources_keep_their_format_and_edits_follow_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(40, 20, |x, _| {
            image::Rgb([x as u8, 0, 0])
        }));
        let path = dir.path().join("a.png");
        let file = InputFile::Local(path.clone());
        std::fs::write(&path, encode(&img, TranscodeTarget::Png).unwrap()).unwrap();
        let plain = load_image(&file, Role::Edit, &ImageOptions::default()).unwrap();
        assert_eq!(plain.bytes, std::fs::read(&path).unwrap());
        let opts = ImageOptions {
            transcode_edits: Some(TranscodeTarget::Jpeg { quality: 80 }),
            max_side: Some(20),
            ..Default::default()
        };
        let edit = load_image(&file, Role::Edit, &opts).unwrap();
        assert_eq!(edit.format, ImageFormat::Jpeg);
        let src = load_image(&file, Role::Source, &opts).unwrap();
        assert_eq!(src.format, ImageFormat::Png);
        assert_eq!(probe(&src.bytes).unwrap().width, 20);
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(
            load_image(&file, Role::Edit, &opts),
            Err(LoadError::Decode(_))
        ));
        assert!(matches!(
            load_image(
                &InputFile::Local(dir.path().join("none")),
                Role::Edit,
                &opts
            ),
            Err(LoadError::Read(_))
        ));
    }
}
