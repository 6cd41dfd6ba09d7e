//! How a whole image is fitted to the output size when no random crop is drawn: the
//! deterministic transforms of evaluation streams (and of training with `crop = false`).
//!
//! Part of the determinism contract, like the rest of [`super::augment`]. With the
//! reference image's declared aspect `As = W / H` and the target's `At = tw / th`:
//! - **stretch**: the box `[0, 0, 1, 1]` resized to the target (aspect not kept);
//! - **centre crop**: the largest centred box of aspect `At`: `cw = At / As, ch = 1`
//!   when `At < As`, `cw = 1, ch = As / At` when `At > As`, resized to the target;
//! - **letterbox**: the whole image resized to the largest `(iw, ih)` inside the target
//!   with aspect `As` (`iw = tw, ih = round(tw / As)` when `As >= At`, else `ih = th,
//!   iw = round(th * As)`, each at least 1), placed at `((tw - iw) / 2, (th - ih) / 2)`
//!   (integer division) on zeros.
//!
//! Every image of a sample gets the reference image's box and placement, so a source
//! and its edit stay aligned pixel for pixel.

use serde::{Deserialize, Serialize};

/// How a whole image is fitted to the output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// The whole image, stretched to the output (the training default).
    #[default]
    Stretch,
    /// The largest centred box of the output's aspect ratio (the evaluation default).
    CenterCrop,
    /// The whole image inside the output, aspect kept, centred on zero padding.
    Letterbox,
}

/// The centred box (relative) of aspect `a` (in source pixels) in an image of aspect
/// `a_src`, as large as fits.
pub fn centred_box(a_src: f64, a: f64) -> [f64; 4] {
    let (cw, ch) = if a < a_src {
        (a / a_src, 1.0)
    } else if a > a_src {
        (1.0, a_src / a)
    } else {
        (1.0, 1.0)
    };
    let (x0, y0) = ((1.0 - cw) / 2.0, (1.0 - ch) / 2.0);
    [x0, y0, x0 + cw, y0 + ch]
}

/// Where a letterboxed image goes in the target: `(left, top, width, height)` in
/// pixels, for a reference image of `reference` declared size.
pub fn letterbox_rect(reference: (u32, u32), target: (u32, u32)) -> (u32, u32, u32, u32) {
    let (tw, th) = target;
    let a_src = reference.0 as f64 / reference.1 as f64;
    let a_tgt = tw as f64 / th as f64;
    let (iw, ih) = if a_src >= a_tgt {
        (tw, ((tw as f64 / a_src).round() as u32).clamp(1, th))
    } else {
        (((th as f64 * a_src).round() as u32).clamp(1, tw), th)
    };
    ((tw - iw) / 2, (th - ih) / 2, iw, ih)
}

/// Writes the packed RGB8 image `inner` (`rect`'s size) into `dst` (the target's size,
/// `target_width` wide) at `rect`, and zeros around it.
pub fn place(inner: &[u8], rect: (u32, u32, u32, u32), target_width: u32, dst: &mut [u8]) {
    let (left, top, iw, _) = rect;
    let row = target_width as usize * 3;
    let inner_row = iw as usize * 3;
    dst.fill(0);
    for (y, src) in inner.chunks_exact(inner_row).enumerate() {
        let at = (top as usize + y) * row + left as usize * 3;
        dst[at..at + inner_row].copy_from_slice(src);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_centre_crop_keeps_the_target_aspect_and_stays_centred() {
        // A 2:1 image to a square target: the middle half of its width.
        assert_eq!(centred_box(2.0, 1.0), [0.25, 0.0, 0.75, 1.0]);
        // A 1:2 image to a square target: the middle half of its height.
        assert_eq!(centred_box(0.5, 1.0), [0.0, 0.25, 1.0, 0.75]);
        assert_eq!(centred_box(1.5, 1.5), [0.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn the_letterbox_keeps_the_aspect_inside_the_target() {
        assert_eq!(letterbox_rect((200, 100), (64, 64)), (0, 16, 64, 32));
        assert_eq!(letterbox_rect((100, 300), (60, 60)), (20, 0, 20, 60));
        assert_eq!(letterbox_rect((640, 480), (64, 48)), (0, 0, 64, 48));
        // Extreme panoramas keep at least one row.
        assert_eq!(letterbox_rect((10_000, 1), (32, 32)), (0, 15, 32, 1));
    }

    #[test]
    fn placing_pads_with_zeros_around_the_image() {
        let inner = vec![7u8; 2 * 3]; // 2x1 pixels
        let mut dst = vec![9u8; 4 * 3 * 3];
        place(&inner, (1, 1, 2, 1), 4, &mut dst);
        let row = |y: usize| &dst[y * 12..(y + 1) * 12];
        assert_eq!(row(0), &[0; 12]);
        assert_eq!(row(1), &[0, 0, 0, 7, 7, 7, 7, 7, 7, 0, 0, 0]);
        assert_eq!(row(2), &[0; 12]);
    }
}
