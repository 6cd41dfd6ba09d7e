//! Decoding to packed RGB8: [`decode`] probes the header, applies the limits, picks the
//! path and runs the format's decoder (`image`, the PNG row decoder, the JPEG DCT
//! decoder, or an 8-bit PPM's raster borrowed in place). Part of the codec stage; the
//! pipeline's augment step is its caller at serving time, and pack-time checks use it
//! too.

use std::borrow::Cow;
use std::io::Cursor;

use image::{DynamicImage, ImageDecoder};

use super::error::{bad, DecodeError};
use super::format::ImageFormat;
use super::header::{alloc_cap, check_limits, probe, DecodeLimits, Header};
use super::jpeg::decode_jpeg_dct;
use super::path::{choose_path, DecodePath, Region};
use super::png_rows::decode_png_rows;
use super::ppm;

/// A decoder's output: width, height and packed RGB8 pixels.
pub(super) type Raster = (u32, u32, Vec<u8>);

/// A decoded image: packed RGB8, row-major, `width * height * 3` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// What the header declared.
    pub header: Header,
    /// How it was decoded.
    pub path: DecodePath,
    /// Width of `pixels` (the declared width divided by the reduction, rounded up).
    pub width: u32,
    /// Height of `pixels`.
    pub height: u32,
    /// The pixels, RGB8. With a region to read ([`decode_path`]), only those in it are
    /// sure to be decoded. Borrowed from the encoded bytes when they hold raw RGB8 (an
    /// 8-bit PPM).
    pub pixels: Cow<'a, [u8]>,
}

impl Decoded<'_> {
    /// The declared size in units of decoded pixels: `(width, height) / reduction`,
    /// unrounded. A relative coordinate `x` in [0, 1] of the full image is at
    /// `x * logical_size().0` in `pixels`, whatever the path; a reduced decode has a
    /// partial last column or row beyond it when the size is not a multiple of the
    /// reduction.
    pub fn logical_size(&self) -> (f64, f64) {
        self.path.logical_size(&self.header)
    }
}

/// Decodes an image to RGB8: probes the header, applies the limits, picks the path with
/// [`choose_path`] and decodes. `need` is the smallest size of the whole image the
/// caller can use (`None`: full size); the result may be smaller than the declared size
/// but is never smaller than `need`.
pub fn decode<'a>(
    declared: ImageFormat,
    bytes: &'a [u8],
    need: Option<(u32, u32)>,
    limits: &DecodeLimits,
) -> Result<Decoded<'a>, DecodeError> {
    let header = probe(declared, bytes)?;
    check_limits(&header, limits)?;
    decode_path(&header, bytes, choose_path(&header, need), None)
}

/// Decodes an image by a given path. `header` must come from [`probe`] on the same bytes
/// and have passed [`check_limits`]: the decoders are held to the header's size, which
/// is what bounds their allocations. `read`, in the coordinates of the path's decoded
/// size ([`DecodePath::decoded_size`]), is the part of the image the caller will read
/// (`None`: all of it). libjpeg-turbo then decodes only that part, and a PNG that decodes
/// to 8-bit RGB or RGBA only the rows down to its bottom; both give the same pixels there
/// as a whole decode, and the pixels outside may be left zero. An 8-bit PPM's raster is
/// returned as it is, borrowed from `bytes`. Damage outside the part
/// read goes unnoticed then: a truncated or corrupt image decodes for the crops that do
/// not reach the damage (deterministically, as the crop is), where a whole decode would
/// fail, or for a JPEG fall back to zune-jpeg. `editfeed verify` decodes every image
/// whole. Exposed for benchmarks and tests; [`decode`] is the normal entry point.
pub fn decode_path<'a>(
    header: &Header,
    bytes: &'a [u8],
    path: DecodePath,
    read: Option<Region>,
) -> Result<Decoded<'a>, DecodeError> {
    if let (ImageFormat::Ppm, DecodePath::Full) = (header.format, path) {
        if let Some(raster) = ppm_raster(header, bytes)? {
            return Ok(Decoded {
                header: *header,
                path,
                width: header.width,
                height: header.height,
                pixels: Cow::Borrowed(raster),
            });
        }
    }
    let (path, (width, height, pixels)) = match path {
        DecodePath::Full => {
            let rows = read
                .filter(|r| header.format == ImageFormat::Png && r.y1 <= header.height)
                .and_then(|r| decode_png_rows(header, bytes, r.y1));
            match rows {
                Some(decoded) => (path, decoded?),
                None => (path, decode_image(header, bytes)?),
            }
        }
        DecodePath::JpegDct { reduction } => {
            match decode_jpeg_dct(header, bytes, reduction, read) {
                Ok(decoded) => (path, decoded),
                // libjpeg-turbo (TurboJPEG counts its warnings as errors) fails on
                // recoverable damage too, such as extraneous bytes before a marker, which
                // zune-jpeg decodes: such an image takes the full-size path, so that no
                // build loses it.
                Err(_) if cfg!(feature = "turbojpeg") => {
                    (DecodePath::Full, decode_image(header, bytes)?)
                }
                Err(e) => return Err(e),
            }
        }
    };
    Ok(Decoded {
        header: *header,
        path,
        width,
        height,
        pixels: Cow::Owned(pixels),
    })
}

/// The raster of an 8-bit PPM of `header`: its packed RGB8 pixels, in place. `None` for
/// a 16-bit PPM, which [`decode_image`] converts.
fn ppm_raster<'a>(header: &Header, bytes: &'a [u8]) -> Result<Option<&'a [u8]>, DecodeError> {
    let p = ppm::parse(bytes).map_err(|why| bad(ImageFormat::Ppm, why))?;
    if (p.width, p.height) != (header.width, header.height) {
        return Err(DecodeError::SizeMismatch {
            format: ImageFormat::Ppm,
            width: header.width,
            height: header.height,
            got_width: p.width,
            got_height: p.height,
        });
    }
    Ok(p.is_rgb8().then(|| &bytes[p.raster]))
}

/// Full-size decode through `image`.
fn decode_image(header: &Header, bytes: &[u8]) -> Result<Raster, DecodeError> {
    let format = header.format;
    let failed = |e: image::ImageError| match e {
        image::ImageError::Unsupported(u) => DecodeError::Unsupported {
            format,
            decoder: "image",
            what: u.to_string(),
        },
        other => DecodeError::Decoder {
            format,
            decoder: "image",
            message: other.to_string(),
        },
    };
    // A second line behind check_limits: the decoder must find the size the header
    // declared (which passed the cap), and may allocate at most `alloc_cap`.
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(header.width);
    limits.max_image_height = Some(header.height);
    limits.max_alloc = Some(alloc_cap(header));
    let cursor = Cursor::new(bytes);
    let img = match format {
        ImageFormat::Jpeg => {
            let mut d = image::codecs::jpeg::JpegDecoder::new(cursor).map_err(failed)?;
            d.set_limits(limits).map_err(failed)?;
            DynamicImage::from_decoder(d)
        }
        ImageFormat::Png => {
            let d = image::codecs::png::PngDecoder::with_limits(cursor, limits).map_err(failed)?;
            DynamicImage::from_decoder(d)
        }
        ImageFormat::Webp => {
            let mut d = image::codecs::webp::WebPDecoder::new(cursor).map_err(failed)?;
            d.set_limits(limits).map_err(failed)?;
            DynamicImage::from_decoder(d)
        }
        ImageFormat::Qoi => {
            let mut d = image::codecs::qoi::QoiDecoder::new(cursor).map_err(failed)?;
            d.set_limits(limits).map_err(failed)?;
            DynamicImage::from_decoder(d)
        }
        ImageFormat::Ppm => {
            let mut d = image::codecs::pnm::PnmDecoder::new(cursor).map_err(failed)?;
            d.set_limits(limits).map_err(failed)?;
            DynamicImage::from_decoder(d)
        }
    }
    .map_err(failed)?;
    let rgb = img.into_rgb8();
    let (w, h) = rgb.dimensions();
    if (w, h) != (header.width, header.height) {
        return Err(DecodeError::SizeMismatch {
            format,
            width: header.width,
            height: header.height,
            got_width: w,
            got_height: h,
        });
    }
    Ok((w, h, rgb.into_raw()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppm_rasters_are_read_in_place_and_16_bit_ones_converted() {
        let limits = DecodeLimits::default();
        let pixels: Vec<u8> = (0..36u8).map(|v| v.wrapping_mul(7)).collect();
        let ppm8 = ppm::write(4, 3, &pixels);
        // Sniffed whatever the member's name says.
        let d = decode(ImageFormat::Png, &ppm8, None, &limits).unwrap();
        assert_eq!(
            (d.header.format, d.width, d.height),
            (ImageFormat::Ppm, 4, 3)
        );
        let raster = &ppm8[ppm8.len() - 36..];
        assert!(matches!(d.pixels, Cow::Borrowed(p) if std::ptr::eq(p, raster)));
        // 16-bit samples are rounded to 8 bits, as for PNG.
        let mut ppm16 = b"P6 4 3 65535\n".to_vec();
        for &v in &pixels {
            ppm16.extend_from_slice(&(u16::from(v) * 257 + 100).to_be_bytes());
        }
        let d16 = decode(ImageFormat::Ppm, &ppm16, None, &limits).unwrap();
        assert!(matches!(d16.pixels, Cow::Owned(_)));
        assert_eq!(&*d16.pixels, &pixels[..]);
        let cut = decode(ImageFormat::Ppm, &ppm8[..ppm8.len() - 1], None, &limits);
        assert_eq!(
            cut.unwrap_err().to_string(),
            "ppm header: raster of 4x3 needs 36 bytes, 35 are there"
        );
        let empty = decode(ImageFormat::Ppm, b"P6\n0 5\n255\n", None, &limits);
        assert_eq!(
            empty.unwrap_err().to_string(),
            "ppm header: declares an empty image (0x5)"
        );
        let small = DecodeLimits { max_pixels: 11 };
        assert!(matches!(
            decode(ImageFormat::Ppm, &ppm8, None, &small),
            Err(DecodeError::TooLarge { pixels: 12, .. })
        ));
    }
}
