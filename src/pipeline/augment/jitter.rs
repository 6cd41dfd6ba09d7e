//! Photometric jitter: the factors drawn for a sample and the pointwise colour map
//! applied to each of its output images (the map is spelt out in the [augment module
//! docs](super)).
//!
//! Part of DECODE + AUGMENT (store -> shard reader -> plan -> prefetch -> DECODE +
//! AUGMENT -> collate -> gRPC).

use crate::rng::Rng;

use super::spec::Jitter;

/// The jitter factors `[brightness, contrast, saturation]` of a sample, drawn in that
/// order from `rng` (the sample's [`Purpose::Jitter`](crate::rng::Purpose::Jitter)
/// stream).
pub(super) fn jitter_factors(j: &Jitter, rng: &mut Rng) -> [f64; 3] {
    let mut draw = |x: f64| rng.range_f64((1.0 - x).max(0.0), 1.0 + x);
    [draw(j.brightness), draw(j.contrast), draw(j.saturation)]
}

fn round_u8(v: f64) -> u8 {
    (v + 0.5).floor().clamp(0.0, 255.0) as u8
}

/// Applies the jitter colour map (see the [augment module docs](super)) to packed RGB8
/// in place.
pub(super) fn apply_jitter(pixels: &mut [u8], [b, c, s]: [f64; 3]) {
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

    #[test]
    fn jitter_is_pointwise_and_exact() {
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
