//! Image probing and optional transcoding at pack time. The importers call [`probe`] on
//! every image they store (a cheap decodability check: format sniff plus header
//! dimensions) and, only when the user asks, [`transcode`] to re-encode edits or to
//! shrink every image of a sample for training at low resolution. Resharding uses the
//! same functions. Without options, image bytes are stored exactly as published.
//!
//! Flow: source files -> importer -> PROBE / TRANSCODE -> dataset writer -> shards.

use std::io::Cursor;

use bytes::Bytes;
use image::imageops::FilterType;
use image::{DynamicImage, ImageReader};

use crate::codec::{encode, EncodeError, ImageFormat, TranscodeTarget};

/// The default cap on the pixels of an image that [`transcode`] will decode (64 Mpx, far
/// above Pico-Banana's one-megapixel images), so a forged header cannot exhaust memory.
pub const DEFAULT_PIXEL_LIMIT: u64 = 64 << 20;

/// The JPEG quality used when a JPEG must be re-encoded only because it was shrunk.
pub const RESIZED_JPEG_QUALITY: u8 = 95;

/// Why an image could not be probed or transcoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TranscodeError {
    /// The bytes are not JPEG, PNG, WebP, QOI or PPM.
    #[error("not a jpeg, png, webp, qoi or ppm image")]
    Unrecognised,
    /// The header or pixel data does not decode.
    #[error("{} does not decode: {why}", format.ext())]
    Decode {
        /// The sniffed format.
        format: ImageFormat,
        /// The decoder's message.
        why: String,
    },
    /// The image has more pixels than the limit allows.
    #[error("{width}x{height} image is over the {limit}-pixel limit")]
    TooLarge {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// The limit in pixels.
        limit: u64,
    },
    /// The encoder failed.
    #[error("encoding {target} failed: {why}")]
    Encode {
        /// What was being written.
        target: TranscodeTarget,
        /// The encoder's message.
        why: String,
    },
}

/// What [`probe`] learns about an image without decoding its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    /// The format from the leading bytes (not from a file name).
    pub format: ImageFormat,
    /// Width in pixels, as stored (before any EXIF rotation).
    pub width: u32,
    /// Height in pixels, as stored.
    pub height: u32,
}

fn reader(bytes: &[u8], format: ImageFormat) -> ImageReader<Cursor<&[u8]>> {
    let mut r = ImageReader::new(Cursor::new(bytes));
    r.set_format(match format {
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        ImageFormat::Png => image::ImageFormat::Png,
        ImageFormat::Webp => image::ImageFormat::WebP,
        ImageFormat::Qoi => image::ImageFormat::Qoi,
        ImageFormat::Ppm => image::ImageFormat::Pnm,
    });
    r
}

/// Checks that bytes are an image cheaply: sniffs the format and reads the dimensions
/// from the header. Truncated pixel data past the header is not detected.
pub fn probe(bytes: &[u8]) -> Result<ImageInfo, TranscodeError> {
    let format = ImageFormat::sniff(bytes).ok_or(TranscodeError::Unrecognised)?;
    let (width, height) = if format == ImageFormat::Ppm {
        // The daemon's own parser, so that nothing is imported that it would refuse.
        let p = crate::codec::ppm::parse(bytes)
            .map_err(|why| TranscodeError::Decode { format, why })?;
        (p.width, p.height)
    } else {
        reader(bytes, format)
            .into_dimensions()
            .map_err(|e| TranscodeError::Decode {
                format,
                why: e.to_string(),
            })?
    };
    if width == 0 || height == 0 {
        return Err(TranscodeError::Decode {
            format,
            why: format!("empty {width}x{height} image"),
        });
    }
    Ok(ImageInfo {
        format,
        width,
        height,
    })
}

/// The size an image of `width` x `height` is shrunk to so that its longer side is at
/// most `max_side`, keeping the aspect ratio; `None` when it already fits (never grows).
pub fn fit_within(width: u32, height: u32, max_side: u32) -> Option<(u32, u32)> {
    let long = width.max(height);
    if long <= max_side || max_side == 0 {
        return None;
    }
    let scale = max_side as f64 / long as f64;
    let w = ((width as f64 * scale).round() as u32).clamp(1, max_side);
    let h = ((height as f64 * scale).round() as u32).clamp(1, max_side);
    Some((w, h))
}

/// Re-encodes an image when asked: to `target` (or its own format when `None`) and/or
/// shrunk so its longer side is at most `max_side`. Returns the bytes unchanged when
/// nothing needs doing: no target and it fits, or the target is its own format and it
/// fits (re-encoding JPEG as JPEG only loses quality; PNG and lossless WebP gain nothing).
/// Images over `pixel_limit` pixels are refused before decoding. Pixels keep their stored
/// order: EXIF orientation is not applied, as the daemon does not apply it when it
/// decodes, so a re-encoded image is served as the original would have been.
pub fn transcode(
    bytes: &Bytes,
    target: Option<TranscodeTarget>,
    max_side: Option<u32>,
    pixel_limit: u64,
) -> Result<(ImageFormat, Bytes), TranscodeError> {
    let info = probe(bytes)?;
    let resize = max_side.and_then(|m| fit_within(info.width, info.height, m));
    let same_format = target.is_none_or(|t| t.format() == info.format);
    if resize.is_none() && same_format {
        return Ok((info.format, bytes.clone()));
    }
    if info.width as u64 * info.height as u64 > pixel_limit {
        return Err(TranscodeError::TooLarge {
            width: info.width,
            height: info.height,
            limit: pixel_limit,
        });
    }
    let target = target.unwrap_or(match info.format {
        ImageFormat::Jpeg => TranscodeTarget::Jpeg {
            quality: RESIZED_JPEG_QUALITY,
        },
        ImageFormat::Png => TranscodeTarget::Png,
        ImageFormat::Webp => TranscodeTarget::WebpLossless,
        ImageFormat::Qoi => TranscodeTarget::Qoi,
        ImageFormat::Ppm => TranscodeTarget::Ppm,
    });
    let decode_err = |e: image::ImageError| TranscodeError::Decode {
        format: info.format,
        why: e.to_string(),
    };
    let decoder = reader(bytes, info.format)
        .into_decoder()
        .map_err(decode_err)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    if let Some(m) = max_side {
        if let Some((w, h)) = fit_within(img.width(), img.height(), m) {
            img = img.resize_exact(w, h, FilterType::CatmullRom);
        }
    }
    let out = encode(&img, target)
        .map_err(|EncodeError { target, why }| TranscodeError::Encode { target, why })?;
    Ok((target.format(), Bytes::from(out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    fn png(w: u32, h: u32) -> Bytes {
        let img = RgbaImage::from_fn(w, h, |x, y| Rgba([x as u8, y as u8, 7, 200]));
        Bytes::from(encode(&DynamicImage::ImageRgba8(img), TranscodeTarget::Png).unwrap())
    }

    fn jpeg(w: u32, h: u32) -> Bytes {
        let img = RgbImage::from_fn(w, h, |x, y| Rgb([x as u8, y as u8, 90]));
        let t = TranscodeTarget::Jpeg { quality: 90 };
        Bytes::from(encode(&DynamicImage::ImageRgb8(img), t).unwrap())
    }

    #[test]
    fn fit_only_shrinks_and_keeps_aspect() {
        assert_eq!(fit_within(64, 48, 64), None);
        assert_eq!(fit_within(64, 48, 100), None);
        assert_eq!(fit_within(64, 48, 32), Some((32, 24)));
        assert_eq!(fit_within(1184, 864, 512), Some((512, 374)));
        assert_eq!(fit_within(5000, 2, 100), Some((100, 1)));
    }

    #[test]
    fn nothing_to_do_keeps_the_bytes() {
        let p = png(16, 8);
        let (f, out) = transcode(&p, None, Some(64), DEFAULT_PIXEL_LIMIT).unwrap();
        assert_eq!((f, &out), (ImageFormat::Png, &p));
        let (f, out) =
            transcode(&p, Some(TranscodeTarget::Png), None, DEFAULT_PIXEL_LIMIT).unwrap();
        assert_eq!((f, &out), (ImageFormat::Png, &p));
        let j = jpeg(16, 8);
        let t = Some(TranscodeTarget::Jpeg { quality: 10 });
        assert_eq!(transcode(&j, t, None, DEFAULT_PIXEL_LIMIT).unwrap().1, j);
    }

    #[test]
    fn each_target_decodes_at_the_expected_size() {
        let p = png(64, 40);
        for (target, max, want) in [
            (Some(TranscodeTarget::Jpeg { quality: 80 }), None, (64, 40)),
            (Some(TranscodeTarget::WebpLossless), Some(32), (32, 20)),
            (Some(TranscodeTarget::Qoi), None, (64, 40)),
            (Some(TranscodeTarget::Png), Some(16), (16, 10)),
            (None, Some(32), (32, 20)),
        ] {
            let (format, out) = transcode(&p, target, max, DEFAULT_PIXEL_LIMIT).unwrap();
            let info = probe(&out).unwrap();
            assert_eq!(info.format, format);
            assert_eq!(format, target.map_or(ImageFormat::Png, |t| t.format()));
            assert_eq!((info.width, info.height), want, "{target:?}");
            let img = image::load_from_memory(&out).unwrap();
            assert_eq!((img.width(), img.height()), want);
        }
        let (format, out) = transcode(&jpeg(48, 64), None, Some(24), DEFAULT_PIXEL_LIMIT).unwrap();
        assert_eq!(format, ImageFormat::Jpeg);
        let info = probe(&out).unwrap();
        assert_eq!((info.width, info.height), (18, 24));
    }

    /// QOI and PPM are pack options that keep the served pixels: the pipeline must
    /// decode exactly the PNG's pixels from them, so that packing with
    /// `--transcode-edits qoi` or `ppm` leaves every batch unchanged.
    #[test]
    fn qoi_and_ppm_decode_to_exactly_the_pixels_of_the_png() {
        use crate::codec::{decode, DecodeLimits};
        use crate::dataset::synth::{synth_sample, SynthOptions};
        use crate::dataset::Subset;
        use std::borrow::Cow;
        let opts = SynthOptions {
            scale: 0.25,
            ..Default::default()
        };
        let sample = synth_sample(&opts, Subset::Sft, 3);
        let photo = sample.image(crate::dataset::sample::Role::Edit).unwrap();
        assert_eq!(photo.format, ImageFormat::Png);
        let rgba = png(67, 41);
        for target in [TranscodeTarget::Qoi, TranscodeTarget::Ppm] {
            for png_bytes in [&photo.bytes, &rgba] {
                let (format, out) =
                    transcode(png_bytes, Some(target), None, DEFAULT_PIXEL_LIMIT).unwrap();
                assert_eq!(format, target.format());
                assert_eq!(ImageFormat::sniff(&out), Some(format));
                assert_ne!(&out, png_bytes);
                // Through the pipeline's decoder (RGB8)...
                let limits = DecodeLimits::default();
                let from_png = decode(ImageFormat::Png, png_bytes, None, &limits).unwrap();
                let from_out = decode(format, &out, None, &limits).unwrap();
                assert_eq!(
                    (from_out.width, from_out.height),
                    (from_png.width, from_png.height)
                );
                assert!(from_png.pixels.iter().any(|&v| v != from_png.pixels[0]));
                assert!(
                    from_out.pixels == from_png.pixels,
                    "{target}: pixels differ"
                );
                // A PPM's pixels are its raster, read in place.
                let borrowed = matches!(from_out.pixels, Cow::Borrowed(_));
                assert_eq!(borrowed, target == TranscodeTarget::Ppm);
                // ...and through `image`: QOI keeps every channel, alpha included; PPM
                // the RGB the daemon serves.
                let a = image::load_from_memory(png_bytes).unwrap();
                let b = image::load_from_memory(&out).unwrap();
                if target == TranscodeTarget::Qoi {
                    assert!(a.into_rgba8() == b.into_rgba8(), "rgba pixels differ");
                } else {
                    assert!(a.into_rgb8() == b.into_rgb8(), "rgb pixels differ");
                }
            }
        }
        // A transcoded pack can be transcoded again.
        let (_, ppm) =
            transcode(&rgba, Some(TranscodeTarget::Ppm), None, DEFAULT_PIXEL_LIMIT).unwrap();
        let (format, back) =
            transcode(&ppm, Some(TranscodeTarget::Png), None, DEFAULT_PIXEL_LIMIT).unwrap();
        assert_eq!(
            (format, probe(&back).unwrap().width),
            (ImageFormat::Png, 67)
        );
    }

    /// The daemon uses pixels in stored order, so a re-encode must not apply an EXIF
    /// orientation either: the transcoded image is served as the original would be.
    #[test]
    fn an_exif_orientation_is_not_applied_when_re_encoding() {
        use crate::codec::{decode, DecodeLimits};
        use image::ImageDecoder;
        fn crc32(data: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &b in data {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
                }
            }
            !crc
        }
        // A big-endian TIFF block with one tag: Orientation (0x0112) = 6, "rotate 90".
        let exif = [
            b'M', b'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0,
            0,
        ];
        let mut chunk = b"eXIf".to_vec();
        chunk.extend_from_slice(&exif);
        let crc = crc32(&chunk);
        let plain = png(40, 30);
        // After the signature (8 bytes) and IHDR (25 bytes).
        let mut tagged = plain[..33].to_vec();
        tagged.extend_from_slice(&(exif.len() as u32).to_be_bytes());
        tagged.extend_from_slice(&chunk);
        tagged.extend_from_slice(&crc.to_be_bytes());
        tagged.extend_from_slice(&plain[33..]);
        let tagged = Bytes::from(tagged);
        let oriented = reader(&tagged, ImageFormat::Png)
            .into_decoder()
            .unwrap()
            .orientation()
            .unwrap();
        assert_eq!(oriented, image::metadata::Orientation::Rotate90);
        let limits = DecodeLimits::default();
        let served = decode(ImageFormat::Png, &tagged, None, &limits).unwrap();
        for target in [
            TranscodeTarget::Ppm,
            TranscodeTarget::Qoi,
            TranscodeTarget::Png,
        ] {
            let (format, out) =
                transcode(&tagged, Some(target), None, DEFAULT_PIXEL_LIMIT).unwrap();
            let again = decode(format, &out, None, &limits).unwrap();
            assert_eq!((again.width, again.height), (40, 30), "{target}");
            assert!(again.pixels == served.pixels, "{target}: pixels differ");
        }
    }

    #[test]
    fn garbage_and_oversized_images_are_refused() {
        assert_eq!(probe(b"not an image"), Err(TranscodeError::Unrecognised));
        let mut truncated = png(8, 8).to_vec();
        truncated.truncate(12);
        assert!(matches!(
            probe(&truncated),
            Err(TranscodeError::Decode { .. })
        ));
        let e =
            transcode(&png(64, 64), Some(TranscodeTarget::WebpLossless), None, 100).unwrap_err();
        assert!(matches!(
            e,
            TranscodeError::TooLarge {
                width: 64,
                height: 64,
                limit: 100
            }
        ));
    }
}
