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
//! only from [`Rng::keyed`] with [`Purpose::Crop`], [`Purpose::Flip`] and
//! [`Purpose::Jitter`], in the order given. Changing any step changes the bytes users get
//! for a seed.
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
//! JPEG DCT reduction, see [`codec::Decoded::logical_size`]) the source rectangle is
//! `left = x0 * Wi`, `top = y0 * Hi`, `width = (x1 - x0) * Wi`, `height = (y1 - y0) * Hi`
//! in fractional pixels, clamped to the decoded buffer, and the resampler
//! (fast_image_resize, convolution with the [`FILTER`] kernel, kernel widened by the
//! scale factor when shrinking) reads that rectangle in place without copying it and
//! writes `(tw, th)` pixels into the output. The only quantisation is the output grid.
//!
//! **Decode size.** With `jpeg_dct_scaling` off every image is decoded at full size.
//! With it on (the default in builds with the `turbojpeg` feature), each image is
//! decoded with a needed size of `(ceil(tw / (x1 - x0)), ceil(th / (y1 - y0)))` pixels
//! for the whole image, which lets [`codec::choose_path`] decode a JPEG at 1/2, 1/4 or
//! 1/8 scale while never upsampling the crop because of it. The reduced path gives
//! slightly different bytes, which is why the switch is part of the spec.
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
//! always drawn. If the sample's texts name a direction ([`direction::names_direction`]
//! on the text, the summarized text and every turn): `skip` does not flip, `swap` flips
//! when `coin` and swaps the direction words of all texts, `ignore` flips when `coin`.
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

use std::cell::RefCell;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use serde::{Deserialize, Serialize};

use crate::dataset::sample::{Role, SampleImage, SampleMeta};
use crate::dataset::Subset;
use crate::rng::{Purpose, Rng};

use super::direction;
pub use super::direction::FlipPolicy;
use super::fit;
pub use super::fit::Fit;
use crate::codec::{self, DecodeError, DecodeLimits};

/// The resize kernel: CatmullRom (bicubic, 4 taps at scale 1, widened by the scale
/// factor when shrinking, so it antialiases). It is visibly sharper than bilinear on
/// 2-4x downscales and about as sharp as Lanczos3 with less ringing. Measured on
/// 1024x768 RGB8 (`benches/decode.rs`): to 256x256 bilinear 0.23 ms, CatmullRom 0.33 ms,
/// Lanczos3 0.67 ms; to 512x512 0.47, 0.62 and 0.97 ms. Against about 11 ms to decode and
/// augment a JPEG + PNG pair, the cheaper bilinear kernel would save 1%.
pub const FILTER: FilterType = FilterType::CatmullRom;

/// [`FILTER`]'s support in source pixels at scale 1 (fast_image_resize's CatmullRom
/// covers -2..2), which bounds what a resize reads around the crop box.
const FILTER_SUPPORT: f64 = 2.0;

/// Attempts at a random crop before the centred fallback (as torchvision).
pub const CROP_ATTEMPTS: u32 = 10;

fn default_crop() -> bool {
    true
}
fn default_crop_scale() -> [f64; 2] {
    [0.5, 1.0]
}
fn default_crop_ratio() -> [f64; 2] {
    [3.0 / 4.0, 4.0 / 3.0]
}
fn default_hflip() -> f64 {
    0.5
}
fn default_jpeg_dct_scaling() -> bool {
    cfg!(feature = "turbojpeg")
}
fn default_max_pixels() -> u64 {
    codec::DEFAULT_MAX_PIXELS
}
fn default_jitter_strength() -> f64 {
    0.1
}

/// How each sample's images are transformed. The output size is not part of it: it is
/// given to [`process`] per batch.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentSpec {
    /// Random resized crop on or off. Off: every image is resized whole to the target
    /// size (stretched if its aspect differs; aspect buckets avoid that).
    #[serde(default = "default_crop")]
    pub crop: bool,
    /// The range of the crop's area as a fraction of the image area, `[min, max]` in (0,
    /// 1]. The default `[0.5, 1.0]` is much tighter than torchvision's `[0.08, 1.0]`
    /// because the edit must stay visible: a small crop of a local edit ("add a hat") can
    /// cut the edited region out and leave a pair that shows no edit at all.
    #[serde(default = "default_crop_scale")]
    pub crop_scale: [f64; 2],
    /// The range of the crop's aspect ratio relative to the target aspect ratio, `[min,
    /// max]`, drawn log-uniformly. `[1, 1]` keeps the target's aspect exactly.
    #[serde(default = "default_crop_ratio")]
    pub crop_ratio: [f64; 2],
    /// The probability of a horizontal flip, in [0, 1]. 0 disables flips.
    #[serde(default = "default_hflip")]
    pub hflip: f64,
    /// What a flip does to samples whose instructions name a direction (left, right...):
    /// `skip` (default) does not flip them, `swap` flips them and swaps the direction
    /// words in every instruction, `ignore` flips them and leaves the text wrong.
    #[serde(default)]
    pub flip_policy: FlipPolicy,
    /// Photometric jitter, the same for every image of a sample. Off (absent) by default,
    /// because it changes what an edit is about ("make it brighter", "desaturate").
    #[serde(default)]
    pub jitter: Option<Jitter>,
    /// The most pixels an image may declare in its header before it is refused
    /// undecoded (decompression-bomb protection). Default 64 megapixels.
    #[serde(default = "default_max_pixels")]
    pub max_pixels: u64,
    /// Decode JPEGs at 1/2, 1/4 or 1/8 scale in the DCT domain when the target and crop
    /// need at most half the image ([`codec::JPEG_DCT_DECODER`]). On by default in
    /// builds with the `turbojpeg` feature: libjpeg-turbo's 1/2-scale decode of a
    /// 1024x768 q90 source costs 25% less CPU than zune-jpeg's full decode. Off by
    /// default otherwise: jpeg-decoder's reduced decode costs as much or more CPU than
    /// zune-jpeg's full decode, except at 1/8 on small images (`benches/decode.rs`).
    /// Turning it on changes the output bytes slightly (a different low-pass filter, and
    /// with libjpeg-turbo another JPEG decoder), deterministically.
    #[serde(default = "default_jpeg_dct_scaling")]
    pub jpeg_dct_scaling: bool,
    /// How a whole image is fitted to the target when `crop` is off ([`Fit`]): stretched
    /// (the default), centre-cropped or letterboxed.
    #[serde(default)]
    pub fit: Fit,
}

/// The derived form, with `fit` only when it is not the default: streams fingerprint
/// this text, and the cursors of streams that stretch stay valid across versions.
impl std::fmt::Debug for AugmentSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("AugmentSpec");
        d.field("crop", &self.crop)
            .field("crop_scale", &self.crop_scale)
            .field("crop_ratio", &self.crop_ratio)
            .field("hflip", &self.hflip)
            .field("flip_policy", &self.flip_policy)
            .field("jitter", &self.jitter)
            .field("max_pixels", &self.max_pixels)
            .field("jpeg_dct_scaling", &self.jpeg_dct_scaling);
        if self.fit != Fit::Stretch {
            d.field("fit", &self.fit);
        }
        d.finish()
    }
}

impl Default for AugmentSpec {
    fn default() -> Self {
        AugmentSpec {
            crop: default_crop(),
            crop_scale: default_crop_scale(),
            crop_ratio: default_crop_ratio(),
            hflip: default_hflip(),
            flip_policy: FlipPolicy::default(),
            jitter: None,
            max_pixels: default_max_pixels(),
            jpeg_dct_scaling: default_jpeg_dct_scaling(),
            fit: Fit::Stretch,
        }
    }
}

/// Photometric jitter strengths; each factor is drawn uniformly from `[max(0, 1 - x), 1 +
/// x]` for strength `x` in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jitter {
    /// Brightness strength: pixel values are multiplied by the factor. Default 0.1.
    #[serde(default = "default_jitter_strength")]
    pub brightness: f64,
    /// Contrast strength: values are scaled about mid-grey (128) by the factor. Default
    /// 0.1.
    #[serde(default = "default_jitter_strength")]
    pub contrast: f64,
    /// Saturation strength: each pixel is blended with its own grey by the factor.
    /// Default 0.1.
    #[serde(default = "default_jitter_strength")]
    pub saturation: f64,
}

impl Default for Jitter {
    fn default() -> Self {
        Jitter {
            brightness: default_jitter_strength(),
            contrast: default_jitter_strength(),
            saturation: default_jitter_strength(),
        }
    }
}

/// An invalid augment spec, naming the field.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("augment.{field}: {why}")]
pub struct SpecError {
    /// The field, as spelt in config (`crop_scale`, `jitter.contrast`).
    pub field: &'static str,
    /// What is wrong with it.
    pub why: String,
}

fn range_ok(
    field: &'static str,
    [lo, hi]: [f64; 2],
    ok: impl Fn(f64) -> bool,
    domain: &str,
) -> Result<(), SpecError> {
    if !(lo.is_finite() && hi.is_finite() && ok(lo) && ok(hi)) {
        return Err(SpecError {
            field,
            why: format!("[{lo}, {hi}] must lie in {domain}"),
        });
    }
    if lo > hi {
        return Err(SpecError {
            field,
            why: format!("minimum {lo} is above maximum {hi}"),
        });
    }
    Ok(())
}

impl AugmentSpec {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), SpecError> {
        range_ok(
            "crop_scale",
            self.crop_scale,
            |v| v > 0.0 && v <= 1.0,
            "(0, 1]",
        )?;
        range_ok(
            "crop_ratio",
            self.crop_ratio,
            |v| v > 0.0 && v <= 100.0,
            "(0, 100]",
        )?;
        if !(0.0..=1.0).contains(&self.hflip) {
            return Err(SpecError {
                field: "hflip",
                why: format!("probability {} is not in [0, 1]", self.hflip),
            });
        }
        if let Some(j) = &self.jitter {
            for (field, v) in [
                ("jitter.brightness", j.brightness),
                ("jitter.contrast", j.contrast),
                ("jitter.saturation", j.saturation),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    return Err(SpecError {
                        field,
                        why: format!("strength {v} is not in [0, 1]"),
                    });
                }
            }
        }
        if self.max_pixels == 0 {
            return Err(SpecError {
                field: "max_pixels",
                why: "must be positive".into(),
            });
        }
        Ok(())
    }
}

/// The RNG key of one sample: every random choice of [`process`] derives from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRng {
    /// The stream's seed.
    pub seed: u64,
    /// The sample's subset.
    pub subset: Subset,
    /// The subset epoch the sample is served in.
    pub epoch: u64,
    /// The sample's ordinal in the subset's canonical order.
    pub ordinal: u64,
}

impl SampleRng {
    /// The stream for one purpose.
    pub fn rng(&self, purpose: Purpose) -> Rng {
        Rng::keyed(
            self.seed,
            self.subset.id() as u64,
            self.epoch,
            self.ordinal,
            purpose,
        )
    }
}

/// The instruction texts of a sample, which a flip may rewrite.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Texts {
    /// The (long) instruction.
    pub text: String,
    /// The short rewrite, where published.
    pub summarized_text: Option<String>,
    /// Multi-turn: one instruction per turn.
    pub turns: Vec<String>,
}

impl Texts {
    /// The texts of a sample's metadata.
    pub fn from_meta(meta: &SampleMeta) -> Texts {
        Texts {
            text: meta.text.clone(),
            summarized_text: meta.summarized_text.clone(),
            turns: meta.turns.clone(),
        }
    }

    /// Whether any of the texts names a direction.
    pub fn names_direction(&self) -> bool {
        direction::names_direction(&self.text)
            || self
                .summarized_text
                .as_deref()
                .is_some_and(direction::names_direction)
            || self.turns.iter().any(|t| direction::names_direction(t))
    }

    /// The texts with left and right swapped everywhere.
    pub fn swapped(&self) -> Texts {
        let swap = |t: &str| direction::swap_directions(t).into_owned();
        Texts {
            text: swap(&self.text),
            summarized_text: self.summarized_text.as_deref().map(swap),
            turns: self.turns.iter().map(|t| swap(t)).collect(),
        }
    }
}

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

/// Why a sample could not be augmented.
#[derive(Debug, thiserror::Error)]
pub enum AugmentError {
    /// The spec is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The sample has no images.
    #[error("sample has no images")]
    NoImages,
    /// The target size is empty or too large.
    #[error("target size {width}x{height} is not usable")]
    Target {
        /// Target width.
        width: u32,
        /// Target height.
        height: u32,
    },
    /// The output buffer has the wrong length.
    #[error("output buffer holds {got} bytes, {images} images at the target size need {expected}")]
    Output {
        /// Images in the sample.
        images: usize,
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// An image failed to decode.
    #[error("{} image: {source}", role.field())]
    Decode {
        /// Which image.
        role: Role,
        /// Why.
        #[source]
        source: DecodeError,
    },
    /// An image failed to resize.
    #[error("{} image: resize failed: {message}", role.field())]
    Resize {
        /// Which image.
        role: Role,
        /// The resizer's message.
        message: String,
    },
}

/// The largest target side accepted; far above any training resolution, and it keeps
/// `need` and buffer arithmetic comfortably in range.
const MAX_TARGET_SIDE: u32 = 16_384;

/// Draws the crop box of a sample (see the module docs for the algorithm).
pub fn crop_box(
    spec: &AugmentSpec,
    reference: (u32, u32),
    target: (u32, u32),
    rng: &mut Rng,
) -> [f64; 4] {
    let a_src = reference.0 as f64 / reference.1 as f64;
    let a_tgt = target.0 as f64 / target.1 as f64;
    if !spec.crop {
        return match spec.fit {
            Fit::CenterCrop => fit::centred_box(a_src, a_tgt),
            Fit::Stretch | Fit::Letterbox => [0.0, 0.0, 1.0, 1.0],
        };
    }
    let [s_lo, s_hi] = spec.crop_scale;
    let [r_lo, r_hi] = spec.crop_ratio;
    let (ln_lo, ln_hi) = (r_lo.ln(), r_hi.ln());
    for _ in 0..CROP_ATTEMPTS {
        let s = rng.range_f64(s_lo, s_hi);
        let a = a_tgt * rng.range_f64(ln_lo, ln_hi).exp();
        let cw = (s * a / a_src).sqrt();
        let ch = (s * a_src / a).sqrt();
        if cw <= 1.0 && ch <= 1.0 {
            let x0 = rng.next_f64() * (1.0 - cw);
            let y0 = rng.next_f64() * (1.0 - ch);
            return [x0, y0, (x0 + cw).min(1.0), (y0 + ch).min(1.0)];
        }
    }
    fit::centred_box(a_src, a_src.clamp(a_tgt * r_lo, a_tgt * r_hi))
}

/// The flip decision and the texts to train on (see the module docs).
pub fn flip_decision(spec: &AugmentSpec, texts: &Texts, rng: &mut Rng) -> (bool, Option<Texts>) {
    let coin = rng.next_f64() < spec.hflip;
    if !coin {
        return (false, None);
    }
    if !texts.names_direction() {
        return (true, None);
    }
    match spec.flip_policy {
        FlipPolicy::Skip => (false, None),
        FlipPolicy::Swap => (true, Some(texts.swapped())),
        FlipPolicy::Ignore => (true, None),
    }
}

thread_local! {
    // The resizer keeps scratch buffers; one per worker thread avoids reallocating them
    // for every image.
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
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
    let limits = DecodeLimits {
        max_pixels: spec.max_pixels,
    };
    // Probe every header first: a bad or oversized image fails the sample before any
    // pixel work.
    let headers = images
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
        .collect::<Result<Vec<_>, AugmentError>>()?;
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
    let jitter = spec.jitter.map(|j| {
        let mut r = rng.rng(Purpose::Jitter);
        let mut draw = |x: f64| r.range_f64((1.0 - x).max(0.0), 1.0 + x);
        [draw(j.brightness), draw(j.contrast), draw(j.saturation)]
    });
    // A letterbox resizes into a rectangle of the target; everything else fills it.
    let letterbox = (!spec.crop && spec.fit == Fit::Letterbox)
        .then(|| fit::letterbox_rect((href.width, href.height), target));
    let resized = letterbox.map_or(target, |(_, _, iw, ih)| (iw, ih));
    let [x0, y0, x1, y1] = crop;
    // `as` saturates, and the crop fractions are bounded below by the spec's scale.
    let need = spec.jpeg_dct_scaling.then(|| {
        (
            (resized.0 as f64 / (x1 - x0)).ceil() as u32,
            (resized.1 as f64 / (y1 - y0)).ceil() as u32,
        )
    });
    for ((img, header), dst) in images
        .iter()
        .zip(&headers)
        .zip(out.chunks_exact_mut(per_image))
    {
        let path = codec::choose_path(header, need);
        let read = resize_reads(crop, header, path, resized);
        let decoded =
            codec::decode_path(header, &img.bytes, path, Some(read)).map_err(|source| {
                AugmentError::Decode {
                    role: img.role,
                    source,
                }
            })?;
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

/// Resizes the crop box `crop` (relative) of `decoded` to `target` into `dst` (packed
/// RGB8), as the module docs describe; the resizer reads the rectangle in place.
pub fn resize_crop(
    decoded: &codec::Decoded<'_>,
    crop: [f64; 4],
    target: (u32, u32),
    dst: &mut [u8],
) -> Result<(), String> {
    let [left, top, width, height] = source_rect(
        crop,
        decoded.logical_size(),
        (decoded.width, decoded.height),
    );
    let src = ImageRef::new(
        decoded.width,
        decoded.height,
        &decoded.pixels,
        PixelType::U8x3,
    )
    .map_err(|e| e.to_string())?;
    let mut dst = Image::from_slice_u8(target.0, target.1, dst, PixelType::U8x3)
        .map_err(|e| e.to_string())?;
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FILTER))
        .crop(left, top, width, height);
    RESIZER
        .with_borrow_mut(|resizer| resizer.resize(&src, &mut dst, &options))
        .map_err(|e| e.to_string())
}

/// The source rectangle `[left, top, width, height]`, in pixels, of the crop box `crop`
/// (relative) in an image of `logical` size (see [`codec::Decoded::logical_size`])
/// decoded to a `buffer` of pixels.
fn source_rect(crop: [f64; 4], logical: (f64, f64), buffer: (u32, u32)) -> [f64; 4] {
    let [x0, y0, x1, y1] = crop;
    let (lw, lh) = logical;
    let (left, top) = (x0 * lw, y0 * lh);
    // The logical size never exceeds the buffer; the clamp only absorbs rounding.
    let width = ((x1 - x0) * lw).min(buffer.0 as f64 - left);
    let height = ((y1 - y0) * lh).min(buffer.1 as f64 - top);
    [left, top, width, height]
}

/// The pixels the resize of the crop box `crop` to `target` reads from an image of
/// `header` decoded by `path`: the box's source rectangle (as in [`process`]) widened by
/// the kernel's reach on each side (fast_image_resize reads `FILTER_SUPPORT` times the
/// scale factor, at least 1, around each output pixel's centre), plus one pixel for
/// rounding, within the image. The decoder may skip everything else; `tests/augment.rs`
/// checks that the output bytes are those of a whole decode.
pub fn resize_reads(
    crop: [f64; 4],
    header: &codec::Header,
    path: codec::DecodePath,
    target: (u32, u32),
) -> codec::Region {
    let (w, h) = path.decoded_size(header);
    let [left, top, width, height] = source_rect(crop, path.logical_size(header), (w, h));
    let span = |from: f64, to: f64, out: u32, len: u32| -> (u32, u32) {
        let reach = FILTER_SUPPORT * ((to - from) / out as f64).max(1.0) + 1.0;
        // `as` saturates at 0 below and the min keeps the end within the image.
        let lo = (from - reach).floor() as u32;
        let hi = ((to + reach).ceil() as u32).min(len);
        (lo.min(hi), hi)
    };
    let (cx0, cx1) = span(left, left + width, target.0, w);
    let (cy0, cy1) = span(top, top + height, target.1, h);
    codec::Region {
        x0: cx0,
        y0: cy0,
        x1: cx1,
        y1: cy1,
    }
}

/// Mirrors packed RGB8 rows left to right in place.
fn mirror_rows(pixels: &mut [u8], width: usize) {
    for row in pixels.chunks_exact_mut(width * 3) {
        let (mut i, mut j) = (0, width.saturating_sub(1));
        while i < j {
            for c in 0..3 {
                row.swap(i * 3 + c, j * 3 + c);
            }
            i += 1;
            j -= 1;
        }
    }
}

fn round_u8(v: f64) -> u8 {
    (v + 0.5).floor().clamp(0.0, 255.0) as u8
}

/// Applies the jitter colour map (see the module docs) to packed RGB8 in place.
fn apply_jitter(pixels: &mut [u8], [b, c, s]: [f64; 3]) {
    let mut lut = [0u8; 256];
    for (v, slot) in lut.iter_mut().enumerate() {
        *slot = round_u8((v as f64 * b - 128.0) * c + 128.0);
    }
    for px in pixels.chunks_exact_mut(3) {
        let [r, g, bl] = [
            lut[px[0] as usize],
            lut[px[1] as usize],
            lut[px[2] as usize],
        ];
        if s == 1.0 {
            px.copy_from_slice(&[r, g, bl]);
            continue;
        }
        let grey = 0.299 * r as f64 + 0.587 * g as f64 + 0.114 * bl as f64;
        for (dst, v) in px.iter_mut().zip([r, g, bl]) {
            *dst = round_u8(grey + (v as f64 - grey) * s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> AugmentSpec {
        AugmentSpec::default()
    }

    #[test]
    fn crop_boxes_have_the_drawn_area_and_aspect_and_stay_inside() {
        let s = spec();
        for (reference, target) in [
            ((400, 300), (256, 256)),
            ((300, 400), (512, 256)),
            ((1000, 100), (64, 64)),
            ((256, 256), (256, 256)),
        ] {
            let a_src = reference.0 as f64 / reference.1 as f64;
            let a_tgt = target.0 as f64 / target.1 as f64;
            for k in 0..500 {
                let mut rng = Rng::keyed(1, 0, 0, k, Purpose::Crop);
                let [x0, y0, x1, y1] = crop_box(&s, reference, target, &mut rng);
                assert!(0.0 <= x0 && x0 < x1 && x1 <= 1.0, "{x0} {x1}");
                assert!(0.0 <= y0 && y0 < y1 && y1 <= 1.0, "{y0} {y1}");
                let (cw, ch) = (x1 - x0, y1 - y0);
                let aspect = cw * a_src / ch / a_tgt;
                // Random crops honour both ranges; the fallback honours the ratio range
                // only when the source aspect allows it.
                if cw * ch <= 1.0 - 1e-12 && (cw - 1.0).abs() > 1e-12 && (ch - 1.0).abs() > 1e-12 {
                    assert!((0.5 - 1e-9..=1.0 + 1e-9).contains(&(cw * ch)));
                    assert!(
                        (0.75 - 1e-9..=4.0 / 3.0 + 1e-9).contains(&aspect),
                        "{aspect}"
                    );
                }
            }
        }
    }

    #[test]
    fn fallback_is_a_centred_clamped_crop() {
        // A 10:1 panorama to a square target: no random crop of area >= 0.5 fits, so the
        // fallback crops the middle to the widest allowed aspect (4:3).
        let s = AugmentSpec {
            crop_scale: [0.9, 1.0],
            ..spec()
        };
        let mut rng = Rng::keyed(0, 0, 0, 0, Purpose::Crop);
        let [x0, y0, x1, y1] = crop_box(&s, (1000, 100), (64, 64), &mut rng);
        let cw = (4.0 / 3.0) / 10.0;
        assert!((x1 - x0 - cw).abs() < 1e-12);
        assert!((x0 - (1.0 - cw) / 2.0).abs() < 1e-12);
        assert_eq!((y0, y1), (0.0, 1.0));
        // Crop off: the whole image, no numbers drawn.
        let off = AugmentSpec {
            crop: false,
            ..spec()
        };
        assert_eq!(
            crop_box(&off, (1000, 100), (64, 64), &mut rng),
            [0.0, 0.0, 1.0, 1.0]
        );
    }

    #[test]
    fn crop_box_is_pinned() {
        // The exact numbers are part of the determinism contract: if this test changes,
        // every user's crops change.
        let mut rng = Rng::keyed(42, 0, 0, 7, Purpose::Crop);
        let b = crop_box(&spec(), (400, 300), (256, 256), &mut rng);
        let again = crop_box(
            &spec(),
            (400, 300),
            (256, 256),
            &mut Rng::keyed(42, 0, 0, 7, Purpose::Crop),
        );
        assert_eq!(b, again);
        // Shortest round-trip decimals: equality is exact.
        assert_eq!(
            b,
            [
                0.41887705344212556,
                0.000517758138417032,
                0.992049948968152,
                0.9542764749632047
            ]
        );
    }

    #[test]
    fn spec_validation_names_the_field_and_misspelt_keys_are_rejected() {
        assert!(spec().validate().is_ok());
        let bad = AugmentSpec {
            crop_scale: [0.0, 1.0],
            ..spec()
        };
        assert_eq!(bad.validate().unwrap_err().field, "crop_scale");
        let bad = AugmentSpec {
            crop_ratio: [2.0, 1.0],
            ..spec()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("augment.crop_ratio: "));
        let bad = AugmentSpec {
            hflip: 1.5,
            ..spec()
        };
        assert_eq!(bad.validate().unwrap_err().field, "hflip");
        let bad = AugmentSpec {
            jitter: Some(Jitter {
                contrast: f64::NAN,
                ..Jitter::default()
            }),
            ..spec()
        };
        assert_eq!(bad.validate().unwrap_err().field, "jitter.contrast");
        let parsed: AugmentSpec = serde_json::from_str(r#"{"hflip": 0.0}"#).unwrap();
        assert_eq!(
            parsed,
            AugmentSpec {
                hflip: 0.0,
                ..spec()
            }
        );
        assert!(serde_json::from_str::<AugmentSpec>(r#"{"hflips": 0.0}"#).is_err());
        assert!(serde_json::from_str::<AugmentSpec>(r#"{"jitter": {"hue": 0.1}}"#).is_err());
        let j: AugmentSpec = serde_json::from_str(r#"{"jitter": {}}"#).unwrap();
        assert_eq!(j.jitter, Some(Jitter::default()));
    }

    #[test]
    fn mirror_and_jitter_are_pointwise_and_exact() {
        let mut px = vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
        mirror_rows(&mut px, 5);
        assert_eq!(px, [13, 14, 15, 10, 11, 12, 7, 8, 9, 4, 5, 6, 1, 2, 3]);
        let mut px = vec![0, 128, 255, 10, 10, 10];
        apply_jitter(&mut px, [1.0, 1.0, 1.0]);
        assert_eq!(px, [0, 128, 255, 10, 10, 10]);
        apply_jitter(&mut px, [1.0, 1.0, 0.0]);
        assert!(px[0] == px[1] && px[1] == px[2]);
        let mut px = vec![100, 100, 100];
        apply_jitter(&mut px, [1.2, 1.0, 1.0]);
        assert_eq!(px, [120, 120, 120]);
    }
}
