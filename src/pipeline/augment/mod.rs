//! Paired augmentation: one geometric transform (random resized crop, horizontal flip)
//! and optionally one photometric jitter, drawn once per sample and applied to every
//! image of the sample (source, edit, chosen, rejected, every turn), with the flip's
//! effect on direction words in the instructions handled by a [`FlipPolicy`].
//!
//! Sits in DECODE + AUGMENT (store -> shard reader -> plan -> prefetch -> DECODE +
//! AUGMENT -> collate -> gRPC) and runs on the CPU worker pool, never on the async
//! runtime. [`process`] takes a sample's encoded images and writes uint8 HWC RGB at the
//! caller's target size into the caller's buffer (a slice of the batch tensor), so the
//! caller decides between a fixed size and per-batch aspect buckets.
//!
//! # The transform, exactly (part of the determinism contract)
//!
//! Everything below is a pure function of the spec, the target size, the images' headers
//! and bytes, and the key (seed, subset id, epoch, sample ordinal); random numbers come
//! only from [`Rng::keyed`](crate::rng::Rng::keyed) with [`Purpose::Crop`],
//! [`Purpose::Flip`] and [`Purpose::Jitter`], in the order given. Changing any step
//! changes the bytes users get for a seed.
//!
//! **Reference image.** The first image whose role is `Source`, else the first image.
//! `W`, `H` are its DECLARED header size (not the decoded size, which depends on the
//! decode path). `As = W / H`; `At = tw / th` for the target `(tw, th)`.
//!
//! **Crop box.** A box `[x0, y0, x1, y1]` in relative coordinates of the image, `0 <= x0
//! < x1 <= 1`. With `crop = false` it is `[0, 0, 1, 1]` (the whole image, stretched to
//! the target if the aspects differ) and no crop numbers are drawn. Otherwise, with `r =
//! Rng::keyed(seed, subset, epoch, ordinal, Crop)`, up to 10 attempts:
//!
//! 1. `s = r.range_f64(crop_scale[0], crop_scale[1])`: the area fraction;
//! 2. `a = At * exp(r.range_f64(ln crop_ratio[0], ln crop_ratio[1]))`: the crop's
//!    aspect in source pixels (log-uniform around the target aspect);
//! 3. `cw = sqrt(s * a / As)`, `ch = sqrt(s * As / a)` (so `cw * ch = s` and the crop is
//!    `a` wide in pixels);
//! 4. if `cw <= 1` and `ch <= 1`: `x0 = r.next_f64() * (1 - cw)`, `y0 = r.next_f64() *
//!    (1 - ch)`, and the box is `[x0, y0, min(x0 + cw, 1), min(y0 + ch, 1)]`. Done.
//!
//! If all 10 attempts fail, the fallback is a centred crop of the largest area with an
//! aspect `a = clamp(As, At * crop_ratio[0], At * crop_ratio[1])`: `cw = a / As, ch = 1`
//! when `a < As`, `cw = 1, ch = As / a` when `a > As`, the whole image otherwise; `x0 =
//! (1 - cw) / 2`, `y0 = (1 - ch) / 2`.
//!
//! **Applying the box.** The same relative box is applied to every image, whatever its
//! size and aspect ratio (an edit rarely keeps the source's). Nothing is rounded to
//! pixels: for an image whose logical size is `(Wi, Hi)` (declared size divided by the
//! JPEG DCT reduction, see
//! [`codec::Decoded::logical_size`](crate::codec::Decoded::logical_size)) the source
//! rectangle is `left = x0 * Wi`, `top = y0 * Hi`, `width = (x1 - x0) * Wi`, `height =
//! (y1 - y0) * Hi` in fractional pixels, clamped to the decoded buffer, and the resampler
//! (fast_image_resize, convolution with the [`FILTER`] kernel, kernel widened by the
//! scale factor when shrinking) reads that rectangle in place without copying it and
//! writes `(tw, th)` pixels into the output. The only quantisation is the output grid.
//!
//! **Decode size.** With `jpeg_dct_scaling` off every image is decoded at full size.
//! With it on (the default in builds with the `turbojpeg` feature), each image is
//! decoded with a needed size of `(ceil(tw / (x1 - x0)), ceil(th / (y1 - y0)))` pixels
//! for the whole image, which lets [`codec::choose_path`](crate::codec::choose_path)
//! decode a JPEG at 1/2, 1/4 or 1/8 scale while never upsampling the crop because of it.
//! The reduced path gives slightly different bytes, which is why the switch is part of
//! the spec.
//!
//! **Decode region.** Each image's decoder is told which pixels the resize will read
//! ([`resize_reads`]: the source rectangle widened by the kernel's reach); libjpeg-turbo
//! decodes only those (plus an iMCU of context), and an 8-bit RGB or RGBA PNG stops after
//! their last row. This changes no byte of the output (`tests/augment.rs` compares it
//! with whole decodes), so it is not part of the spec.
//!
//! **Fit.** With `crop = false`, [`Fit`] says how the whole image meets the target:
//! stretched (the box above), centre-cropped or letterboxed ([`super::fit`]).
//!
//! **Flip.** `coin = Rng::keyed(seed, subset, epoch, ordinal, Flip).next_f64() < hflip`,
//! always drawn. If the sample's texts name a direction
//! ([`direction::names_direction`](super::direction::names_direction) on the text, the
//! summarized text and every turn): `skip` does not flip, `swap` flips when `coin` and
//! swaps the direction words of all texts, `ignore` flips when `coin`.
//! Otherwise the sample flips when `coin`. A flip mirrors each OUTPUT image (small) left
//! to right; the reported crop box stays in unflipped coordinates.
//!
//! **Jitter** (off by default: DESIGN says photometric changes alter what an edit is
//! about, for example "make it brighter"). With `r = Rng::keyed(.., Jitter)`, factors `b
//! = r.range_f64(max(0, 1 - brightness), 1 + brightness)`, then `c` (contrast) and `s`
//! (saturation) the same way. One pointwise colour map is applied to every output image:
//! `v = ((v * b) - 128) * c + 128` per channel (a fixed pivot, not the image mean, so
//! source and edit get exactly the same map), rounded and clamped, then `v = g + (v - g)
//! * s` with `g = 0.299 R + 0.587 G + 0.114 B` of the pixel, rounded and clamped.
//!
//! # Layout
//!
//! [`process`] (here) runs the steps in that order; the spec and its validation are in
//! `spec`, the sample's RNG key in `sample_rng`, the crop box in `crop`, the flip and the
//! texts it may rewrite in `flip`, the jitter in `jitter`, the decode request to
//! [`crate::codec`] in `decode`, the resize in `resize` and the error in `error`.

use std::cell::RefCell;

use crate::dataset::sample::{Role, SampleImage};
use crate::rng::Purpose;

use super::fit;
use flip::mirror_rows;
use jitter::{apply_jitter, jitter_factors};

mod crop;
mod decode;
mod error;
mod flip;
mod jitter;
mod resize;
mod sample_rng;
mod spec;

pub use super::direction::FlipPolicy;
pub use super::fit::Fit;
pub use crop::{crop_box, CROP_ATTEMPTS};
pub use error::AugmentError;
pub use flip::{flip_decision, Texts};
pub use resize::{resize_crop, resize_reads, FILTER};
pub use sample_rng::SampleRng;
pub use spec::{AugmentSpec, Jitter, SpecError};

/// What [`process`] did to a sample, besides writing the pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Augmented {
    /// The texts to train on: the input's, direction-swapped if the sample was flipped
    /// under [`FlipPolicy::Swap`].
    pub texts: Texts,
    /// Whether the images were mirrored left to right.
    pub flipped: bool,
    /// The crop box `[x0, y0, x1, y1]` in relative coordinates of every image, before
    /// the flip.
    pub crop: [f64; 4],
    /// The jitter factors `[brightness, contrast, saturation]`, if jitter is on.
    pub jitter: Option<[f64; 3]>,
}

/// The largest target side accepted; far above any training resolution, and it keeps
/// `need` and buffer arithmetic comfortably in range.
const MAX_TARGET_SIDE: u32 = 16_384;

thread_local! {
    // A letterboxed image before it is placed on its padding.
    static LETTERBOX: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Decodes and augments the images of one sample into `out`: `images.len()` images of
/// `target = (width, height)`, each `height * width * 3` bytes of uint8 HWC RGB, in the
/// order of `images`. All images get the same crop, flip and jitter (see the module
/// docs). Errors name the image that failed; `out` is then partly written.
pub fn process(
    images: &[&SampleImage],
    texts: &Texts,
    spec: &AugmentSpec,
    rng: SampleRng,
    target: (u32, u32),
    out: &mut [u8],
) -> Result<Augmented, AugmentError> {
    spec.validate()?;
    let (tw, th) = target;
    if tw == 0 || th == 0 || tw > MAX_TARGET_SIDE || th > MAX_TARGET_SIDE {
        return Err(AugmentError::Target {
            width: tw,
            height: th,
        });
    }
    if images.is_empty() {
        return Err(AugmentError::NoImages);
    }
    let per_image = tw as usize * th as usize * 3;
    let expected = per_image * images.len();
    if out.len() != expected {
        return Err(AugmentError::Output {
            images: images.len(),
            expected,
            got: out.len(),
        });
    }
    // Probe every header first: a bad or oversized image fails the sample before any
    // pixel work.
    let headers = decode::probe_headers(images, spec.max_pixels)?;
    let reference = images
        .iter()
        .position(|i| i.role == Role::Source)
        .unwrap_or(0);
    let href = &headers[reference];
    let crop = crop_box(
        spec,
        (href.width, href.height),
        target,
        &mut rng.rng(Purpose::Crop),
    );
    let (flipped, swapped) = flip_decision(spec, texts, &mut rng.rng(Purpose::Flip));
    let jitter = spec
        .jitter
        .map(|j| jitter_factors(&j, &mut rng.rng(Purpose::Jitter)));
    // A letterbox resizes into a rectangle of the target; everything else fills it.
    let letterbox = (!spec.crop && spec.fit == Fit::Letterbox)
        .then(|| fit::letterbox_rect((href.width, href.height), target));
    let resized = letterbox.map_or(target, |(_, _, iw, ih)| (iw, ih));
    let need = decode::decode_need(spec.jpeg_dct_scaling, crop, resized);
    for ((img, header), dst) in images
        .iter()
        .zip(&headers)
        .zip(out.chunks_exact_mut(per_image))
    {
        let decoded = decode::decode_for_resize(img, header, need, crop, resized)?;
        let resize_err = |message| AugmentError::Resize {
            role: img.role,
            message,
        };
        // Flip and jitter apply to the image, never to a letterbox's padding.
        let finish = |pixels: &mut [u8], width: u32| {
            if flipped {
                mirror_rows(pixels, width as usize);
            }
            if let Some(factors) = jitter {
                apply_jitter(pixels, factors);
            }
        };
        match letterbox {
            None => {
                resize_crop(&decoded, crop, target, dst).map_err(resize_err)?;
                finish(dst, tw);
            }
            Some(rect) => LETTERBOX.with_borrow_mut(|inner| {
                inner.resize(rect.2 as usize * rect.3 as usize * 3, 0);
                resize_crop(&decoded, crop, resized, inner).map_err(resize_err)?;
                finish(inner, rect.2);
                fit::place(inner, rect, tw, dst);
                Ok::<(), AugmentError>(())
            })?,
        }
    }
    Ok(Augmented {
        texts: swapped.unwrap_or_else(|| texts.clone()),
        flipped,
        crop,
        jitter,
    })
}
