//! Row-by-row decoding of the common PNG (8-bit RGB or RGBA, palette included, not
//! interlaced) that stops after the last row a crop reads. Part of the codec stage.

use std::io::Cursor;

use super::decode::Raster;
use super::error::DecodeError;
use super::format::ImageFormat;
use super::header::{alloc_cap, Header};

/// Decodes the first `rows` rows of a PNG that decodes to 8-bit RGB or RGBA (palette
/// images included) and is not interlaced, the form of nearly every edit, and stops
/// there: the rest of the image data is neither inflated nor unfiltered. The rows below
/// are left zero; alpha is dropped, as in the full decode (`decode_image`), whose pixels these rows are.
/// `None` for any other PNG, which the full decode (`decode_image`) decodes whole.
pub(super) fn decode_png_rows(
    header: &Header,
    bytes: &[u8],
    rows: u32,
) -> Option<Result<Raster, DecodeError>> {
    let failed = |message: String| DecodeError::Decoder {
        format: ImageFormat::Png,
        decoder: "png",
        message,
    };
    // As `image` does: the same allocation cap, and EXPAND (palette and low bit depths to
    // 8 bits, tRNS to alpha).
    let limits = png::Limits {
        bytes: usize::try_from(alloc_cap(header)).unwrap_or(usize::MAX),
    };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), limits);
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = match decoder.read_info() {
        Ok(reader) => reader,
        Err(e) => return Some(Err(failed(e.to_string()))),
    };
    let info = reader.info();
    if info.interlaced || (info.width, info.height) != (header.width, header.height) {
        return None;
    }
    let channels = match reader.output_color_type() {
        (png::ColorType::Rgb, png::BitDepth::Eight) => 3,
        (png::ColorType::Rgba, png::BitDepth::Eight) => 4,
        _ => return None,
    };
    let width = header.width as usize;
    let (stride, len) = (width * 3, width * header.height as usize * 3);
    // Each row is zeroed just before it is written, while it is in the cache, rather
    // than the whole image up front.
    let mut pixels = Vec::with_capacity(len);
    for y in 0..rows as usize {
        pixels.resize((y + 1) * stride, 0);
        let dst = &mut pixels[y * stride..];
        let ended = || failed(format!("image data ends at row {y}"));
        if channels == 3 {
            match reader.read_row(dst) {
                Ok(Some(_)) => continue,
                Ok(None) => return Some(Err(ended())),
                Err(e) => return Some(Err(failed(e.to_string()))),
            }
        }
        let row = match reader.next_row() {
            Ok(Some(row)) => row.data(),
            Ok(None) => return Some(Err(ended())),
            Err(e) => return Some(Err(failed(e.to_string()))),
        };
        for (d, s) in dst.chunks_exact_mut(3).zip(row.chunks_exact(4)) {
            d.copy_from_slice(&s[..3]);
        }
    }
    pixels.resize(len, 0);
    Some(Ok((header.width, header.height, pixels)))
}
