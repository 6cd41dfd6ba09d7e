//! The libjpeg-turbo backend of [`DecodePath::JpegDct`] (cargo feature `turbojpeg`).
//!
//! libjpeg-turbo scales in the DCT domain at 1/2, 1/4 and 1/8 with SIMD IDCT, upsampling
//! and colour conversion; at full scale it is also faster than zune-jpeg on 1024x768
//! q90 photo-like JPEGs (`benches/decode.rs`). Each worker thread keeps one
//! decompressor.

use std::cell::RefCell;

use turbojpeg::{Decompressor, Image, PixelFormat, ScalingFactor};

use super::decode::{DecodeError, Header};
use crate::dataset::sample::ImageFormat;

/// The decoder's name in errors.
pub const DECODER: &str = "libjpeg-turbo";

thread_local! {
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
}

fn failed(e: turbojpeg::Error) -> DecodeError {
    DecodeError::Decoder {
        format: ImageFormat::Jpeg,
        decoder: DECODER,
        message: e.to_string(),
    }
}

/// Decodes `bytes` (whose probed header is `header`, already within the limits) at
/// `1/reduction` scale to RGB8; returns the decoded size and the pixels.
#[allow(clippy::type_complexity)]
pub fn decode(
    header: &Header,
    bytes: &[u8],
    reduction: u32,
) -> Result<((u32, u32), Vec<u8>), DecodeError> {
    DECOMPRESSOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        let d = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(Decompressor::new().map_err(failed)?),
        };
        let result = decode_with(d, header, bytes, reduction);
        if result.is_err() {
            // A fresh decompressor for the next image, whatever state this one is in.
            *slot = None;
        }
        result
    })
}

#[allow(clippy::type_complexity)]
fn decode_with(
    d: &mut Decompressor,
    header: &Header,
    bytes: &[u8],
    reduction: u32,
) -> Result<((u32, u32), Vec<u8>), DecodeError> {
    let found = d.read_header(bytes).map_err(failed)?;
    // The limits were checked on our own probe of the header; libjpeg-turbo must
    // find the same size, which is what bounds the allocation below.
    if (found.width, found.height) != (header.width as usize, header.height as usize) {
        return Err(DecodeError::SizeMismatch {
            format: ImageFormat::Jpeg,
            width: header.width,
            height: header.height,
            got_width: found.width as u32,
            got_height: found.height as u32,
        });
    }
    let factor = ScalingFactor::new(1, reduction as usize);
    d.set_scaling_factor(factor).map_err(failed)?;
    let scaled = found.scaled(factor);
    let (w, h) = (scaled.width, scaled.height);
    let mut pixels = vec![0u8; w * h * 3];
    let image = Image {
        pixels: pixels.as_mut_slice(),
        width: w,
        pitch: w * 3,
        height: h,
        format: PixelFormat::RGB,
    };
    d.decompress(bytes, image).map_err(failed)?;
    Ok(((w as u32, h as u32), pixels))
}
