//! Which decoder runs, and at what scale: [`choose_path`] takes a reduced DCT-domain
//! JPEG decode when the caller needs at most half the declared size, and is a pure
//! function of the header and the needed size, so the decoded bytes are deterministic.
//! Part of the codec stage.

use super::header::Header;

/// Which decoder runs, and at what scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodePath {
    /// The format's decoder in `image` (zune-jpeg for JPEG), at full size.
    Full,
    /// [`JPEG_DCT_DECODER`](super::JPEG_DCT_DECODER) at `1/reduction` of the full size (1, 2, 4 or 8), scaled in
    /// the DCT domain. [`choose_path`] picks it with a reduction of 2 or more, and with
    /// libjpeg-turbo also with 1. Without its `rayon` feature (our build), jpeg-decoder
    /// starts one thread per colour component for each image wider than 128 output
    /// pixels, so it uses more CPU than wall time.
    JpegDct {
        /// The size divisor: 1, 2, 4 or 8.
        reduction: u32,
    },
}

impl DecodePath {
    /// The size divisor of the path (1 for full size).
    pub fn reduction(self) -> u32 {
        match self {
            DecodePath::Full => 1,
            DecodePath::JpegDct { reduction } => reduction,
        }
    }

    /// The declared size of `header` divided by the reduction, unrounded (see
    /// [`Decoded::logical_size`](super::Decoded::logical_size)).
    pub fn logical_size(self, header: &Header) -> (f64, f64) {
        let r = self.reduction() as f64;
        (header.width as f64 / r, header.height as f64 / r)
    }

    /// The size of the pixels this path decodes an image of `header` to: the declared
    /// size divided by the reduction, rounded up.
    pub fn decoded_size(self, header: &Header) -> (u32, u32) {
        let r = self.reduction();
        (header.width.div_ceil(r), header.height.div_ceil(r))
    }
}

/// A rectangle of decoded pixels: columns `x0..x1`, rows `y0..y1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First column.
    pub x0: u32,
    /// First row.
    pub y0: u32,
    /// One past the last column.
    pub x1: u32,
    /// One past the last row.
    pub y1: u32,
}

impl Region {
    /// All of an image of `(width, height)`.
    pub fn whole((width, height): (u32, u32)) -> Region {
        Region {
            x0: 0,
            y0: 0,
            x1: width,
            y1: height,
        }
    }
}

/// jpeg-decoder's output length for a dimension at `scale`/8 (its `choose_idct_size`).
fn dct_scaled(len: u32, scale: u32) -> u32 {
    (len * scale).div_ceil(8)
}

/// The scale (in eighths) jpeg-decoder picks for a requested size: the first of 1, 2, 4
/// where EITHER dimension reaches the request, else 8. Mirrored here so that we only
/// request sizes it will honour exactly.
fn jpeg_decoder_choice(w: u32, h: u32, req_w: u32, req_h: u32) -> u32 {
    [1, 2, 4]
        .into_iter()
        .find(|&s| dct_scaled(w, s) >= req_w || dct_scaled(h, s) >= req_h)
        .unwrap_or(8)
}

/// Chooses how to decode an image of `header` when the caller needs at least `need`
/// pixels of the full image (`None`: full size). A pure function of its arguments, so
/// the choice, and with it the decoded bytes, is deterministic.
///
/// The reduced path is taken for 8-bit baseline, extended or progressive JPEGs with 1 or
/// 3 components when `need` is at most half the declared size in both dimensions: the
/// reduction is the largest of 8, 4, 2 with `declared >= need * reduction` in both
/// dimensions. With libjpeg-turbo such a JPEG that cannot be reduced takes the DCT path
/// at reduction 1.
pub fn choose_path(header: &Header, need: Option<(u32, u32)>) -> DecodePath {
    let (Some(frame), Some((need_w, need_h))) = (header.jpeg, need) else {
        return DecodePath::Full;
    };
    let supported = matches!(frame.sof, 0xC0..=0xC2)
        && frame.precision == 8
        && matches!(frame.components, 1 | 3);
    if !supported {
        return DecodePath::Full;
    }
    let (w, h) = (header.width as u64, header.height as u64);
    for reduction in [8u32, 4, 2] {
        let r = reduction as u64;
        if w >= need_w.max(1) as u64 * r && h >= need_h.max(1) as u64 * r {
            let scale = 8 / reduction;
            let (rw, rh) = DecodePath::JpegDct { reduction }.decoded_size(header);
            // Tiny images can make jpeg-decoder pick another scale for this request;
            // then try the next smaller reduction.
            if jpeg_decoder_choice(header.width, header.height, rw, rh) == scale {
                return DecodePath::JpegDct { reduction };
            }
        }
    }
    if cfg!(feature = "turbojpeg") {
        // libjpeg-turbo's full-scale decode is faster than zune-jpeg's too.
        DecodePath::JpegDct { reduction: 1 }
    } else {
        DecodePath::Full
    }
}

#[cfg(test)]
mod tests {
    use super::super::format::ImageFormat;
    use super::super::header::tests::jpeg_header;
    use super::super::header::JpegFrame;
    use super::*;

    #[test]
    fn path_takes_the_largest_reduction_that_still_covers_the_need() {
        let h = jpeg_header(1024, 768);
        // With libjpeg-turbo, a JPEG that cannot be reduced is decoded by it at full scale.
        let unreduced = if cfg!(feature = "turbojpeg") {
            DecodePath::JpegDct { reduction: 1 }
        } else {
            DecodePath::Full
        };
        assert_eq!(choose_path(&h, None), DecodePath::Full);
        assert_eq!(choose_path(&h, Some((1024, 768))), unreduced);
        assert_eq!(choose_path(&h, Some((513, 100))), unreduced);
        assert_eq!(
            choose_path(&h, Some((512, 384))),
            DecodePath::JpegDct { reduction: 2 }
        );
        assert_eq!(
            choose_path(&h, Some((256, 100))),
            DecodePath::JpegDct { reduction: 4 }
        );
        assert_eq!(
            choose_path(&h, Some((128, 96))),
            DecodePath::JpegDct { reduction: 8 }
        );
        assert_eq!(
            choose_path(&h, Some((1, 1))),
            DecodePath::JpegDct { reduction: 8 }
        );
        // Not for PNG, CMYK, 12-bit or lossless JPEG.
        let png = Header {
            format: ImageFormat::Png,
            jpeg: None,
            ..h
        };
        assert_eq!(choose_path(&png, Some((10, 10))), DecodePath::Full);
        for frame in [
            JpegFrame {
                sof: 0xC0,
                precision: 8,
                components: 4,
            },
            JpegFrame {
                sof: 0xC0,
                precision: 12,
                components: 3,
            },
            JpegFrame {
                sof: 0xC3,
                precision: 8,
                components: 3,
            },
        ] {
            let hh = Header {
                jpeg: Some(frame),
                ..h
            };
            assert_eq!(choose_path(&hh, Some((10, 10))), DecodePath::Full);
        }
    }

    #[test]
    fn tiny_jpegs_only_get_reductions_jpeg_decoder_honours() {
        for w in 1..40 {
            for hgt in 1..40 {
                let h = jpeg_header(w, hgt);
                for need in [(1, 1), (w / 2, hgt / 2), (w / 3, hgt / 5)] {
                    let path = choose_path(&h, Some(need));
                    if let DecodePath::JpegDct { reduction: 2.. } = path {
                        let s = 8 / path.reduction();
                        let (rw, rh) = (dct_scaled(w, s), dct_scaled(hgt, s));
                        assert_eq!(jpeg_decoder_choice(w, hgt, rw, rh), s);
                        assert!(rw >= need.0 && rh >= need.1);
                    }
                }
            }
        }
    }
}
