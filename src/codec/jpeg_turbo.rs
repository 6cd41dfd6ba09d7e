//! The libjpeg-turbo backend of [`DecodePath::JpegDct`](super::path::DecodePath)
//! (cargo feature `turbojpeg`), over the TurboJPEG 3 API.
//!
//! libjpeg-turbo scales in the DCT domain at 1/2, 1/4 and 1/8 with SIMD IDCT, upsampling
//! and colour conversion; at full scale it is also faster than zune-jpeg on 1024x768
//! q90 photo-like JPEGs (`benches/decode.rs`). Given the region the caller will read, it
//! decodes only that region plus one iMCU of context on every side, its left edge
//! aligned to an iMCU as libjpeg-turbo requires: rows above it and columns beside it
//! skip the IDCT, upsampling and colour conversion, and in a baseline JPEG the rows
//! below it are not decoded at all (a progressive JPEG's scans are all read first). The
//! region's pixels are the same as a whole decode's (`tests/augment.rs`); a cropped
//! decode that fails is retried whole, so that the crop never decides between this
//! decoder and the fallback for an image this decoder can read. Each worker thread
//! keeps one decompressor.

use std::cell::RefCell;
use std::ffi::CStr;

use turbojpeg_sys as tj;

use super::error::DecodeError;
use super::format::ImageFormat;
use super::header::Header;
use super::path::{DecodePath, Region};

/// The decoder's name in errors.
pub const DECODER: &str = "libjpeg-turbo";

/// A TurboJPEG decompressor instance.
struct Decompressor(tj::tjhandle);

impl Decompressor {
    fn new() -> Result<Self, DecodeError> {
        // SAFETY: tj3Init has no preconditions; it returns null on failure.
        let handle = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as libc::c_int) };
        if handle.is_null() {
            return Err(failed("tj3Init failed".into()));
        }
        Ok(Decompressor(handle))
    }

    /// Turns a TurboJPEG return code into the instance's error message.
    fn check(&self, rc: libc::c_int) -> Result<(), DecodeError> {
        if rc == 0 {
            return Ok(());
        }
        // SAFETY: the handle is valid; the message is a NUL-terminated string owned by
        // the instance, copied out before the next call.
        let message = unsafe { CStr::from_ptr(tj::tj3GetErrorStr(self.0)) };
        Err(failed(message.to_string_lossy().into_owned()))
    }

    fn get(&self, param: tj::TJPARAM) -> libc::c_int {
        // SAFETY: the handle is valid; an unknown parameter returns -1.
        unsafe { tj::tj3Get(self.0, param as libc::c_int) }
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.0) }
    }
}

thread_local! {
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
}

fn failed(message: String) -> DecodeError {
    DecodeError::Decoder {
        format: ImageFormat::Jpeg,
        decoder: DECODER,
        message,
    }
}

/// Decodes `bytes` (whose probed header is `header`, already within the limits) at
/// `1/reduction` scale to RGB8; returns the decoded size and the pixels. With `read`,
/// only that part of the decoded image (and some context around it) is decoded; the
/// other pixels are zero.
#[allow(clippy::type_complexity)]
pub fn decode(
    header: &Header,
    bytes: &[u8],
    reduction: u32,
    read: Option<Region>,
) -> Result<((u32, u32), Vec<u8>), DecodeError> {
    let result = with_decompressor(|d| decode_with(d, header, bytes, reduction, read));
    match result {
        // libjpeg-turbo's own iMCU can be wider than TurboJPEG's table says (unusual
        // sampling factors), which refuses the cropping region: decode it whole.
        Err(_) if read.is_some() => {
            with_decompressor(|d| decode_with(d, header, bytes, reduction, None))
        }
        result => result,
    }
}

/// Runs `f` with this thread's decompressor, replacing it after a failure.
fn with_decompressor<T>(
    f: impl FnOnce(&mut Decompressor) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    DECOMPRESSOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        let d = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(Decompressor::new()?),
        };
        let result = f(d);
        if result.is_err() {
            // A fresh decompressor for the next image, whatever state this one is in.
            *slot = None;
        }
        result
    })
}

/// The scaled iMCU size of a JPEG with chrominance subsampling `subsamp`, or `None` when
/// libjpeg-turbo cannot name it (then the image is decoded whole).
fn scaled_imcu(subsamp: libc::c_int, reduction: u32) -> Option<(u32, u32)> {
    // turbojpeg.h's tjMCUWidth and tjMCUHeight (header-only constants), by TJSAMP:
    // 444, 422, 420, GRAY, 440, 411, 441.
    const WIDTH: [u32; 7] = [8, 16, 16, 8, 8, 32, 8];
    const HEIGHT: [u32; 7] = [8, 8, 16, 8, 16, 8, 32];
    let i = usize::try_from(subsamp).ok().filter(|&i| i < 7)?;
    Some((WIDTH[i].div_ceil(reduction), HEIGHT[i].div_ceil(reduction)))
}

/// The cropping region that covers `read` in an image of `size`: one iMCU of context
/// added on every side, the left edge aligned down to an iMCU, as libjpeg-turbo needs.
/// `None` when that is the whole image.
fn cropping(read: Region, size: (u32, u32), imcu: (u32, u32)) -> Option<Region> {
    let (w, h) = size;
    let x0 = read.x0.saturating_sub(imcu.0) / imcu.0 * imcu.0;
    let y0 = read.y0.saturating_sub(imcu.1);
    let x1 = read.x1.saturating_add(imcu.0).min(w);
    let y1 = read.y1.saturating_add(imcu.1).min(h);
    let region = Region { x0, y0, x1, y1 };
    (region != Region::whole(size) && x0 < x1 && y0 < y1).then_some(region)
}

#[allow(clippy::type_complexity)]
fn decode_with(
    d: &mut Decompressor,
    header: &Header,
    bytes: &[u8],
    reduction: u32,
    read: Option<Region>,
) -> Result<((u32, u32), Vec<u8>), DecodeError> {
    // SAFETY: the handle is valid and the pointer and length describe `bytes`.
    d.check(unsafe { tj::tj3DecompressHeader(d.0, bytes.as_ptr(), bytes.len() as _) })?;
    let found = (
        d.get(tj::TJPARAM_TJPARAM_JPEGWIDTH),
        d.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT),
    );
    // The limits were checked on our own probe of the header; libjpeg-turbo must find
    // the same size, which is what bounds the allocation below.
    if found != (header.width as libc::c_int, header.height as libc::c_int) {
        return Err(DecodeError::SizeMismatch {
            format: ImageFormat::Jpeg,
            width: header.width,
            height: header.height,
            got_width: found.0.max(0) as u32,
            got_height: found.1.max(0) as u32,
        });
    }
    let factor = tj::tjscalingfactor {
        num: 1,
        denom: reduction as libc::c_int,
    };
    // SAFETY: the handle is valid and holds a header.
    d.check(unsafe { tj::tj3SetScalingFactor(d.0, factor) })?;
    // TJSCALED: the scaled size, rounded up.
    let (w, h) = DecodePath::JpegDct { reduction }.decoded_size(header);
    let crop = read
        .zip(scaled_imcu(d.get(tj::TJPARAM_TJPARAM_SUBSAMP), reduction))
        .and_then(|(read, imcu)| cropping(read, (w, h), imcu));
    let region = crop.unwrap_or(Region::whole((w, h)));
    let uncropped = tj::tjregion {
        x: 0,
        y: 0,
        w: 0,
        h: 0,
    };
    let tj_region = match crop {
        Some(r) => tj::tjregion {
            x: r.x0 as libc::c_int,
            y: r.y0 as libc::c_int,
            w: (r.x1 - r.x0) as libc::c_int,
            h: (r.y1 - r.y0) as libc::c_int,
        },
        None => uncropped,
    };
    // SAFETY: the handle is valid and holds a header; the region lies within the
    // scaled image and its left edge is on an iMCU boundary.
    d.check(unsafe { tj::tj3SetCroppingRegion(d.0, tj_region) })?;
    let pitch = w as usize * 3;
    let mut pixels = vec![0u8; pitch * h as usize];
    let start = region.y0 as usize * pitch + region.x0 as usize * 3;
    // SAFETY: the handle is valid; libjpeg-turbo writes `region`'s rows, each
    // `(x1 - x0) * 3` bytes at `pitch` apart from `start`, which all lie within
    // `pixels` because the region lies within the `w` x `h` image.
    let rc = unsafe {
        tj::tj3Decompress8(
            d.0,
            bytes.as_ptr(),
            bytes.len() as _,
            pixels.as_mut_ptr().add(start),
            pitch as libc::c_int,
            tj::TJPF_TJPF_RGB as libc::c_int,
        )
    };
    d.check(rc)?;
    Ok(((w, h), pixels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cropping_region_adds_an_imcu_of_context_and_aligns_its_left_edge() {
        let read = Region {
            x0: 100,
            y0: 50,
            x1: 700,
            y1: 600,
        };
        let got = cropping(read, (1024, 768), (16, 16)).unwrap();
        assert_eq!(
            got,
            Region {
                x0: 80,
                y0: 34,
                x1: 716,
                y1: 616
            }
        );
        // At the edges the context is clipped; a region reaching every edge is no crop.
        let near = Region {
            x0: 5,
            y0: 3,
            x1: 1020,
            y1: 766,
        };
        assert_eq!(cropping(near, (1024, 768), (8, 8)), None);
        assert_eq!(scaled_imcu(2, 4), Some((4, 4)));
        assert_eq!(scaled_imcu(-1, 1), None);
    }
}
