//! Encoding decoded pixels for pack-time transcodes: the targets a pack may re-encode
//! images to (JPEG, PNG, lossless WebP, QOI, PPM) and the encoder for each. Part of the
//! codec stage; the dataset's transcode step decides when to use it.

use std::str::FromStr;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::qoi::QoiEncoder;
use image::codecs::webp::WebPEncoder;
use image::DynamicImage;

use super::format::ImageFormat;

/// The JPEG quality used when `jpeg` is asked for without one.
pub const DEFAULT_JPEG_QUALITY: u8 = 90;

/// The encoding an image is converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranscodeTarget {
    /// Lossy JPEG at a quality in 1..=100; an alpha channel is dropped.
    Jpeg {
        /// The encoder quality (1..=100).
        quality: u8,
    },
    /// Lossless PNG.
    Png,
    /// Lossless WebP (the only WebP encoding available without native libraries).
    WebpLossless,
    /// Lossless QOI: larger than PNG, but several times faster to decode, so the
    /// daemon's workers spend far less time per edit (`BENCHMARKS.md`).
    Qoi,
    /// The binary pixmap (8-bit RGB): the pixels the daemon decodes from a lossless
    /// image, stored raw, so its workers read them in place instead of decoding. Larger
    /// than PNG; alpha and 16-bit depth, which the daemon drops when it decodes, are not
    /// kept. A JPEG becomes its full-size decode, which the daemon may otherwise decode
    /// at a reduced DCT scale for small crops.
    Ppm,
}

impl TranscodeTarget {
    /// The format the target produces.
    pub fn format(self) -> ImageFormat {
        match self {
            TranscodeTarget::Jpeg { .. } => ImageFormat::Jpeg,
            TranscodeTarget::Png => ImageFormat::Png,
            TranscodeTarget::WebpLossless => ImageFormat::Webp,
            TranscodeTarget::Qoi => ImageFormat::Qoi,
            TranscodeTarget::Ppm => ImageFormat::Ppm,
        }
    }
}

impl FromStr for TranscodeTarget {
    type Err = String;

    /// Parses `jpeg:QUALITY` (or `jpg:QUALITY`, or `jpeg` for quality 90), `png`,
    /// `webp` (lossless), `qoi` and `ppm`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        match (name.to_ascii_lowercase().as_str(), arg) {
            ("jpeg" | "jpg", None) => Ok(TranscodeTarget::Jpeg {
                quality: DEFAULT_JPEG_QUALITY,
            }),
            ("jpeg" | "jpg", Some(q)) => match q.parse::<u8>() {
                Ok(quality) if (1..=100).contains(&quality) => {
                    Ok(TranscodeTarget::Jpeg { quality })
                }
                _ => Err(format!("bad jpeg quality {q:?}: expected 1..=100")),
            },
            ("png", None) => Ok(TranscodeTarget::Png),
            ("qoi", None) => Ok(TranscodeTarget::Qoi),
            ("ppm", None) => Ok(TranscodeTarget::Ppm),
            ("webp", None) | ("webp", Some("lossless")) => Ok(TranscodeTarget::WebpLossless),
            (n @ ("png" | "webp" | "qoi" | "ppm"), Some(a)) => {
                Err(format!("{n} is lossless and takes no option (got {a:?})"))
            }
            _ => Err(format!(
                "unknown image target {s:?}: expected jpeg:QUALITY, png, webp, qoi or ppm"
            )),
        }
    }
}

impl std::fmt::Display for TranscodeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TranscodeTarget::Jpeg { quality } => write!(f, "jpeg:{quality}"),
            TranscodeTarget::Png => f.write_str("png"),
            TranscodeTarget::WebpLossless => f.write_str("webp"),
            TranscodeTarget::Qoi => f.write_str("qoi"),
            TranscodeTarget::Ppm => f.write_str("ppm"),
        }
    }
}

/// An encoder failed.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("encoding {target} failed: {why}")]
pub struct EncodeError {
    /// What was being written.
    pub target: TranscodeTarget,
    /// The encoder's message.
    pub why: String,
}

/// Encodes decoded pixels, converting them to a colour type the encoder accepts.
pub fn encode(img: &DynamicImage, target: TranscodeTarget) -> Result<Vec<u8>, EncodeError> {
    let enc_err = |e: image::ImageError| EncodeError {
        target,
        why: e.to_string(),
    };
    let mut out = Vec::new();
    match target {
        TranscodeTarget::Jpeg { quality } => {
            let enc = JpegEncoder::new_with_quality(&mut out, quality);
            // JPEG has no alpha and the encoder takes 8-bit luma or RGB only.
            if img.color().has_color() {
                DynamicImage::ImageRgb8(img.to_rgb8()).write_with_encoder(enc)
            } else {
                DynamicImage::ImageLuma8(img.to_luma8()).write_with_encoder(enc)
            }
            .map_err(enc_err)?;
        }
        TranscodeTarget::Png => img
            .write_with_encoder(PngEncoder::new(&mut out))
            .map_err(enc_err)?,
        TranscodeTarget::WebpLossless => {
            let enc = WebPEncoder::new_lossless(&mut out);
            // The WebP encoder takes 8-bit RGB(A) only.
            if img.color().has_alpha() {
                DynamicImage::ImageRgba8(img.to_rgba8()).write_with_encoder(enc)
            } else {
                DynamicImage::ImageRgb8(img.to_rgb8()).write_with_encoder(enc)
            }
            .map_err(enc_err)?;
        }
        TranscodeTarget::Qoi => {
            let enc = QoiEncoder::new(&mut out);
            // QOI holds 8-bit RGB or RGBA.
            if img.color().has_alpha() {
                DynamicImage::ImageRgba8(img.to_rgba8()).write_with_encoder(enc)
            } else {
                DynamicImage::ImageRgb8(img.to_rgb8()).write_with_encoder(enc)
            }
            .map_err(enc_err)?;
        }
        TranscodeTarget::Ppm => {
            // The daemon's own conversion (`decode`): alpha dropped, 16 bits rounded.
            let rgb = img.to_rgb8();
            out = super::ppm::write(rgb.width(), rgb.height(), rgb.as_raw());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print() {
        assert_eq!("jpeg:80".parse(), Ok(TranscodeTarget::Jpeg { quality: 80 }));
        assert_eq!(
            "jpg".parse(),
            Ok(TranscodeTarget::Jpeg {
                quality: DEFAULT_JPEG_QUALITY
            })
        );
        assert_eq!("png".parse(), Ok(TranscodeTarget::Png));
        assert_eq!("webp".parse(), Ok(TranscodeTarget::WebpLossless));
        assert_eq!("qoi".parse(), Ok(TranscodeTarget::Qoi));
        assert!("qoi:1".parse::<TranscodeTarget>().is_err());
        assert_eq!("PPM".parse(), Ok(TranscodeTarget::Ppm));
        assert_eq!(TranscodeTarget::Ppm.to_string(), "ppm");
        assert!("ppm:16".parse::<TranscodeTarget>().is_err());
        assert!("jpeg:0".parse::<TranscodeTarget>().is_err());
        assert!("jpeg:101".parse::<TranscodeTarget>().is_err());
        assert!("png:9".parse::<TranscodeTarget>().is_err());
        assert!("gif".parse::<TranscodeTarget>().is_err());
        assert_eq!(TranscodeTarget::Jpeg { quality: 75 }.to_string(), "jpeg:75");
    }
}
