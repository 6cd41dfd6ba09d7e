//! The augment spec: how each sample's images are transformed (crop, flip, jitter, fit,
//! decode limits and DCT scaling), its serde form with named defaults, and its
//! validation.
//!
//! Part of DECODE + AUGMENT (store -> shard reader -> plan -> prefetch -> DECODE +
//! AUGMENT -> collate -> gRPC). Streams fingerprint the spec's `Debug` text, so its field
//! order, names and `Debug` output are part of the cursor contract.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::pipeline::direction::FlipPolicy;
use crate::pipeline::fit::Fit;

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
/// given to [`process`](super::process) per batch.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> AugmentSpec {
        AugmentSpec::default()
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
}
