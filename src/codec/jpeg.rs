//! JPEG decoding in the DCT domain at 1/1, 1/2, 1/4 or 1/8 scale, by this build's
//! [`JPEG_DCT_DECODER`]: libjpeg-turbo with the `turbojpeg` feature
//! ([`super::jpeg_turbo`]), `jpeg-decoder` without it. The checks on the request and on
//! the result are here, around the backend. Part of the codec stage.

use super::decode::Raster;
use super::error::DecodeError;
use super::format::ImageFormat;
use super::header::Header;
use super::path::{DecodePath, Region};

/// The decoder behind [`DecodePath::JpegDct`] in this build.
#[cfg(feature = "turbojpeg")]
pub const JPEG_DCT_DECODER: &str = super::jpeg_turbo::DECODER;
/// The decoder behind [`DecodePath::JpegDct`] in this build.
#[cfg(not(feature = "turbojpeg"))]
pub const JPEG_DCT_DECODER: &str = "jpeg-decoder";

/// JPEG decode in the DCT domain at `1/reduction` scale, by [`JPEG_DCT_DECODER`]: the
/// checks on the request and on the result, around the build's backend.
pub(super) fn decode_jpeg_dct(
    header: &Header,
    bytes: &[u8],
    reduction: u32,
    read: Option<Region>,
) -> Result<Raster, DecodeError> {
    let format = ImageFormat::Jpeg;
    if header.format != format || !matches!(reduction, 1 | 2 | 4 | 8) {
        return Err(DecodeError::Unsupported {
            format: header.format,
            decoder: JPEG_DCT_DECODER,
            what: format!("reduction 1/{reduction}"),
        });
    }
    let expect = DecodePath::JpegDct { reduction }.decoded_size(header);
    #[cfg(feature = "turbojpeg")]
    let (got, pixels) = super::jpeg_turbo::decode(header, bytes, reduction, read)?;
    #[cfg(not(feature = "turbojpeg"))]
    let (got, pixels) = {
        let _ = read; // jpeg-decoder decodes every pixel.
        jpeg_decoder_dct(header, bytes, expect)?
    };
    if got != expect {
        return Err(DecodeError::SizeMismatch {
            format,
            width: expect.0,
            height: expect.1,
            got_width: got.0,
            got_height: got.1,
        });
    }
    if pixels.len() != got.0 as usize * got.1 as usize * 3 {
        return Err(DecodeError::Decoder {
            format,
            decoder: JPEG_DCT_DECODER,
            message: format!("returned {} bytes for {}x{}", pixels.len(), got.0, got.1),
        });
    }
    Ok((got.0, got.1, pixels))
}

/// `jpeg-decoder` asked for `expect` pixels (the scaled size); returns the size it
/// decoded and RGB8 pixels.
#[cfg(not(feature = "turbojpeg"))]
#[allow(clippy::type_complexity)]
fn jpeg_decoder_dct(
    header: &Header,
    bytes: &[u8],
    expect: (u32, u32),
) -> Result<((u32, u32), Vec<u8>), DecodeError> {
    let format = ImageFormat::Jpeg;
    let failed = |e: jpeg_decoder::Error| match e {
        jpeg_decoder::Error::Unsupported(u) => DecodeError::Unsupported {
            format,
            decoder: JPEG_DCT_DECODER,
            what: format!("{u:?}"),
        },
        other => DecodeError::Decoder {
            format,
            decoder: JPEG_DCT_DECODER,
            message: other.to_string(),
        },
    };
    let mut d = jpeg_decoder::Decoder::new(bytes);
    // CMYK is the widest output: 4 bytes per pixel.
    d.set_max_decoding_buffer_size((header.pixels() * 4) as usize);
    if expect != (header.width, header.height) {
        // Dimensions were checked against the header, and JPEG sizes fit in u16.
        d.scale(expect.0 as u16, expect.1 as u16).map_err(failed)?;
    }
    let raw = d.decode().map_err(failed)?;
    let info = d.info().expect("decode succeeded, so the header was read");
    let pixels = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => raw,
        jpeg_decoder::PixelFormat::L8 => raw.iter().flat_map(|&v| [v, v, v]).collect(),
        other => {
            return Err(DecodeError::Unsupported {
                format,
                decoder: JPEG_DCT_DECODER,
                what: format!("pixel format {other:?}"),
            })
        }
    };
    Ok(((info.width as u32, info.height as u32), pixels))
}
