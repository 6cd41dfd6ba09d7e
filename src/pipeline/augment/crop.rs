//! The crop box of a sample: a random resized crop in relative coordinates of the
//! reference image, with the centred fallback, or the fixed box of a [`Fit`] when
//! cropping is off (the algorithm is spelt out in the [augment module docs](super)).
//!
//! Part of DECODE + AUGMENT (store -> shard reader -> plan -> prefetch -> DECODE +
//! AUGMENT -> collate -> gRPC).

use crate::pipeline::fit::{self, Fit};
use crate::rng::Rng;

use super::spec::AugmentSpec;

/// Attempts at a random crop before the centred fallback (as torchvision).
pub const CROP_ATTEMPTS: u32 = 10;

/// Draws the crop box of a sample (see the [augment module docs](super) for the
/// algorithm).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Purpose;

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
}
