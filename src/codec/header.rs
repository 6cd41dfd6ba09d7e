//! Image headers read by a small parser of our own (PNG `IHDR`, JPEG `SOFn`, WebP
//! `VP8 `/`VP8L`/`VP8X`, the QOI and PPM headers), and the pixel limit checked against
//! them before any decoder allocates: decompression-bomb protection. Part of the codec
//! stage.

use super::error::{bad, DecodeError};
use super::format::ImageFormat;
use super::ppm;

/// The default pixel cap: 64 megapixels (an 8000x8000 image).
pub const DEFAULT_MAX_PIXELS: u64 = 64_000_000;

/// Limits that protect the decoder from hostile or broken images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// The most pixels (width x height) an image may declare in its header.
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

/// The frame parameters of a JPEG that decide whether it can be decoded at reduced scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegFrame {
    /// The start-of-frame marker (0xC0 baseline, 0xC1 extended, 0xC2 progressive, ...).
    pub sof: u8,
    /// Bits per sample (8 for nearly every JPEG).
    pub precision: u8,
    /// Colour components: 1 greyscale, 3 YCbCr or RGB, 4 CMYK or YCCK.
    pub components: u8,
}

/// What an image's header declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The format found in the bytes (the declared one when the bytes say nothing).
    pub format: ImageFormat,
    /// Declared width in pixels.
    pub width: u32,
    /// Declared height in pixels.
    pub height: u32,
    /// The JPEG frame parameters; `None` for other formats.
    pub jpeg: Option<JpegFrame>,
}

impl Header {
    /// Declared width times height.
    pub fn pixels(&self) -> u64 {
        self.width as u64 * self.height as u64
    }
}

fn be16(b: &[u8], at: usize) -> Option<u32> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?) as u32)
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le16(b: &[u8], at: usize) -> Option<u32> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as u32)
}

fn le24(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 3)?;
    Some(s[0] as u32 | (s[1] as u32) << 8 | (s[2] as u32) << 16)
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Reads the format and declared size of an encoded image without decoding it. Does not
/// apply any limit (see [`check_limits`]).
pub fn probe(declared: ImageFormat, bytes: &[u8]) -> Result<Header, DecodeError> {
    let format = ImageFormat::sniff(bytes).unwrap_or(declared);
    let header = match format {
        ImageFormat::Png => probe_png(bytes)?,
        ImageFormat::Jpeg => probe_jpeg(bytes)?,
        ImageFormat::Webp => probe_webp(bytes)?,
        ImageFormat::Qoi => probe_qoi(bytes)?,
        ImageFormat::Ppm => {
            let p = ppm::parse(bytes).map_err(|why| bad(ImageFormat::Ppm, why))?;
            Header {
                format: ImageFormat::Ppm,
                width: p.width,
                height: p.height,
                jpeg: None,
            }
        }
    };
    if header.width == 0 || header.height == 0 {
        return Err(bad(
            format,
            format!(
                "declares an empty image ({}x{})",
                header.width, header.height
            ),
        ));
    }
    Ok(header)
}

fn probe_png(b: &[u8]) -> Result<Header, DecodeError> {
    let f = ImageFormat::Png;
    if !b.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err(bad(f, "no png signature"));
    }
    if b.get(12..16) != Some(b"IHDR") {
        return Err(bad(f, "first chunk is not IHDR"));
    }
    let (Some(width), Some(height)) = (be32(b, 16), be32(b, 20)) else {
        return Err(bad(f, "truncated IHDR"));
    };
    Ok(Header {
        format: f,
        width,
        height,
        jpeg: None,
    })
}

fn probe_jpeg(b: &[u8]) -> Result<Header, DecodeError> {
    let f = ImageFormat::Jpeg;
    if !b.starts_with(&[0xFF, 0xD8]) {
        return Err(bad(f, "no start-of-image marker"));
    }
    let truncated = || bad(f, "truncated before the frame header");
    let mut i = 2;
    loop {
        // Skip anything up to the next marker, as libjpeg does with extraneous bytes,
        // then any fill bytes.
        while *b.get(i).ok_or_else(truncated)? != 0xFF {
            i += 1;
        }
        while *b.get(i).ok_or_else(truncated)? == 0xFF {
            i += 1;
        }
        let marker = b[i];
        i += 1;
        match marker {
            // Markers without a length: SOI, TEM, RSTn.
            0xD8 | 0x01 | 0xD0..=0xD7 => continue,
            0xD9 => return Err(bad(f, "end of image before a frame header")),
            0xDA => return Err(bad(f, "scan before a frame header")),
            // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let seg = b.get(i..i + 8).ok_or_else(truncated)?;
                return Ok(Header {
                    format: f,
                    width: be16(seg, 5).expect("slice has 8 bytes"),
                    height: be16(seg, 3).expect("slice has 8 bytes"),
                    jpeg: Some(JpegFrame {
                        sof: marker,
                        precision: seg[2],
                        components: seg[7],
                    }),
                });
            }
            _ => {
                let len = be16(b, i).ok_or_else(truncated)? as usize;
                if len < 2 {
                    return Err(bad(f, format!("marker 0x{marker:02X} has length {len}")));
                }
                i += len;
            }
        }
    }
}

fn probe_webp(b: &[u8]) -> Result<Header, DecodeError> {
    let f = ImageFormat::Webp;
    if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WEBP" {
        return Err(bad(f, "no RIFF/WEBP signature"));
    }
    let truncated = || bad(f, "truncated first chunk");
    let chunk = b.get(12..16).ok_or_else(truncated)?;
    let d = 20; // chunk payload
    let (width, height) = match chunk {
        b"VP8 " => {
            if b.get(d + 3..d + 6) != Some(&[0x9D, 0x01, 0x2A]) {
                return Err(bad(f, "bad VP8 start code"));
            }
            let w = le16(b, d + 6).ok_or_else(truncated)?;
            let h = le16(b, d + 8).ok_or_else(truncated)?;
            (w & 0x3FFF, h & 0x3FFF)
        }
        b"VP8L" => {
            if b.get(d) != Some(&0x2F) {
                return Err(bad(f, "bad VP8L signature"));
            }
            let bits = le32(b, d + 1).ok_or_else(truncated)?;
            ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        }
        b"VP8X" => {
            let w = le24(b, d + 4).ok_or_else(truncated)?;
            let h = le24(b, d + 7).ok_or_else(truncated)?;
            (w + 1, h + 1)
        }
        other => {
            return Err(bad(
                f,
                format!("unknown first chunk {:?}", String::from_utf8_lossy(other)),
            ))
        }
    };
    Ok(Header {
        format: f,
        width,
        height,
        jpeg: None,
    })
}

fn probe_qoi(b: &[u8]) -> Result<Header, DecodeError> {
    let f = ImageFormat::Qoi;
    if !b.starts_with(b"qoif") {
        return Err(bad(f, "no qoif magic"));
    }
    let (Some(width), Some(height)) = (be32(b, 4), be32(b, 8)) else {
        return Err(bad(f, "truncated header"));
    };
    Ok(Header {
        format: f,
        width,
        height,
        jpeg: None,
    })
}

/// Refuses a header that declares more pixels than the limits allow.
pub fn check_limits(header: &Header, limits: &DecodeLimits) -> Result<(), DecodeError> {
    if header.pixels() > limits.max_pixels {
        return Err(DecodeError::TooLarge {
            format: header.format,
            width: header.width,
            height: header.height,
            pixels: header.pixels(),
            max_pixels: limits.max_pixels,
        });
    }
    Ok(())
}

/// The most a decoder may allocate for an image of `header` (which passed
/// [`check_limits`]): a 16-bit RGBA image of its size plus working room.
pub(super) fn alloc_cap(header: &Header) -> u64 {
    header.pixels() * 8 + (64 << 20)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A baseline 8-bit YCbCr JPEG's header of `w` x `h`.
    pub(in crate::codec) fn jpeg_header(w: u32, h: u32) -> Header {
        Header {
            format: ImageFormat::Jpeg,
            width: w,
            height: h,
            jpeg: Some(JpegFrame {
                sof: 0xC0,
                precision: 8,
                components: 3,
            }),
        }
    }

    #[test]
    fn probes_headers_by_hand() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&300u32.to_be_bytes());
        png.extend_from_slice(&200u32.to_be_bytes());
        let h = probe(ImageFormat::Png, &png).unwrap();
        assert_eq!((h.width, h.height), (300, 200));
        // Sniffing wins over the declared format.
        assert_eq!(
            probe(ImageFormat::Jpeg, &png).unwrap().format,
            ImageFormat::Png
        );
        // JPEG: SOI, an APP0 segment, fill bytes, then SOF2.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB, 0xFF, 0xFF, 0xC2, 0x00, 0x11, 8, 0x01,
            0x2C, 0x01, 0x90, 3,
        ];
        let h = probe(ImageFormat::Jpeg, &jpeg).unwrap();
        assert_eq!((h.width, h.height), (400, 300));
        assert_eq!(h.jpeg.unwrap().sof, 0xC2);
        assert!(matches!(
            probe(ImageFormat::Jpeg, &jpeg[..12]),
            Err(DecodeError::BadHeader { .. })
        ));
        // WebP lossless: 14-bit width-1 and height-1.
        let mut webp = b"RIFF\0\0\0\0WEBPVP8L\0\0\0\0\x2f".to_vec();
        webp.extend_from_slice(&((199u32) | (99u32 << 14)).to_le_bytes());
        let h = probe(ImageFormat::Webp, &webp).unwrap();
        assert_eq!((h.width, h.height), (200, 100));
        // QOI: magic, then big-endian width and height.
        let mut qoi = b"qoif".to_vec();
        qoi.extend_from_slice(&1184u32.to_be_bytes());
        qoi.extend_from_slice(&864u32.to_be_bytes());
        qoi.extend_from_slice(&[3, 0]);
        let h = probe(ImageFormat::Png, &qoi).unwrap();
        assert_eq!((h.format, h.width, h.height), (ImageFormat::Qoi, 1184, 864));
        assert!(probe(ImageFormat::Qoi, &qoi[..9]).is_err());
        assert!(probe(ImageFormat::Png, b"GIF89a").is_err());
    }

    #[test]
    fn limits_are_checked_on_the_declared_size() {
        let h = jpeg_header(10_000, 10_000);
        let e = check_limits(&h, &DecodeLimits::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "jpeg declares 10000x10000 (100000000 pixels), over the limit of 64000000 pixels"
        );
        assert!(check_limits(&jpeg_header(8000, 8000), &DecodeLimits::default()).is_ok());
    }
}
