//! The decode request of one sample's images to [`crate::codec`]: every header probed
//! and checked against the spec's pixel limit before any pixel work, the size each image
//! is decoded for (which lets a JPEG decode at a DCT-reduced scale), and the region the
//! resize reads, so that a decoder may skip the rest.
//!
//! Part of DECODE + AUGMENT (store -> shard reader -> plan -> prefetch -> DECODE +
//! AUGMENT -> collate -> gRPC); runs on the CPU worker pool.

use crate::codec::{self, DecodeLimits};
use crate::dataset::sample::SampleImage;

use super::error::AugmentError;
use super::resize::resize_reads;

/// Probes the header of every image and checks it against `max_pixels`, in the order of
/// `images`; the error names the first image that fails.
pub(super) fn probe_headers(
    images: &[&SampleImage],
    max_pixels: u64,
) -> Result<Vec<codec::Header>, AugmentError> {
    let limits = DecodeLimits { max_pixels };
    images
        .iter()
        .map(|img| {
            let decode_err = |source| AugmentError::Decode {
                role: img.role,
                source,
            };
            let h = codec::probe(img.format, &img.bytes).map_err(decode_err)?;
            codec::check_limits(&h, &limits).map_err(decode_err)?;
            Ok(h)
        })
        .collect::<Result<Vec<_>, AugmentError>>()
}

/// The size, in pixels of the whole image, that every image is decoded for when
/// `jpeg_dct_scaling` is on: `resized` divided by the extent of the crop box `crop`,
/// rounded up ("Decode size" in the [augment module docs](super)); `None`, a full
/// decode, when it is off.
pub(super) fn decode_need(
    jpeg_dct_scaling: bool,
    crop: [f64; 4],
    resized: (u32, u32),
) -> Option<(u32, u32)> {
    let [x0, y0, x1, y1] = crop;
    // `as` saturates, and the crop fractions are bounded below by the spec's scale.
    jpeg_dct_scaling.then(|| {
        (
            (resized.0 as f64 / (x1 - x0)).ceil() as u32,
            (resized.1 as f64 / (y1 - y0)).ceil() as u32,
        )
    })
}

/// Decodes `img`, whose header is `header`, for the resize of the crop box `crop` to
/// `resized`: on the path [`codec::choose_path`] picks for `need`, and only the region
/// the resize reads ([`resize_reads`]).
pub(super) fn decode_for_resize<'a>(
    img: &'a SampleImage,
    header: &codec::Header,
    need: Option<(u32, u32)>,
    crop: [f64; 4],
    resized: (u32, u32),
) -> Result<codec::Decoded<'a>, AugmentError> {
    let path = codec::choose_path(header, need);
    let read = resize_reads(crop, header, path, resized);
    codec::decode_path(header, &img.bytes, path, Some(read)).map_err(|source| {
        AugmentError::Decode {
            role: img.role,
            source,
        }
    })
}
