//! Image decoding: JPEG, PNG, WebP, QOI and PPM bytes to packed RGB8, with a pixel cap checked
//! against the header before anything is allocated, and JPEG decoding at a reduced DCT
//! scale when the caller needs a much smaller image.
//!
//! Sits in DECODE + AUGMENT (store -> shard reader -> plan -> prefetch -> DECODE +
//! AUGMENT -> collate -> gRPC). It is CPU-bound and runs on the worker pool, never on the
//! async runtime. [`crate::pipeline::augment`] is its caller.
//!
//! How an image is decoded:
//!
//! 1. [`probe`] reads the declared width and height from the header with a small parser
//!    of our own (PNG `IHDR`, JPEG `SOFn`, WebP `VP8 `/`VP8L`/`VP8X`, the QOI and PPM
//!    headers);
//!    the format is
//!    sniffed from the magic bytes and the declared format is only a fallback, because
//!    real datasets hold `.png` members that are JPEGs. An image whose declared pixel
//!    count exceeds [`DecodeLimits::max_pixels`] is refused here, before any decoder
//!    runs: decompression-bomb protection. The decoders also get [`image::Limits`] (the
//!    header's size as the maximum, and an allocation cap), as a second line.
//! 2. [`choose_path`] picks the decoder. When the caller gives a needed size at most
//!    half the declared size in both dimensions, a baseline or progressive 8-bit
//!    greyscale or YCbCr JPEG is decoded at 1/2, 1/4 or 1/8 scale in the DCT domain (the
//!    largest reduction that still yields at least the needed size), which skips most
//!    of the IDCT and colour conversion work. The DCT-domain decoder is
//!    [`JPEG_DCT_DECODER`]: libjpeg-turbo in builds with the `turbojpeg` feature, where
//!    it also decodes the JPEGs it cannot reduce (at full scale, faster than zune-jpeg),
//!    and `jpeg-decoder` otherwise. Everything else goes through `image`'s decoders:
//!    zune-jpeg for JPEG, the faster full-size JPEG decoder without libjpeg-turbo (about
//!    1.5x jpeg-decoder, see `benches/decode.rs`). zune-jpeg's entropy decoding is fast
//!    enough that jpeg-decoder's reduced decode rarely beats it, so without
//!    libjpeg-turbo the augment stage only asks for a reduced decode when its spec says
//!    so. A JPEG that libjpeg-turbo refuses (it also fails on recoverable damage, such
//!    as stray bytes before a marker) is decoded by the full-size path instead.
//! 3. When the caller names the region it will read ([`decode_path`]), libjpeg-turbo
//!    decodes only that region (with an iMCU of context around it) and an 8-bit RGB or
//!    RGBA PNG that is not interlaced is decoded row by row down to the region's last
//!    row; the pixels in the region are those of a whole decode. An 8-bit PPM is not
//!    decoded at all: its raster is the pixels, borrowed from the member's bytes.
//! 4. The result is converted to RGB8: greyscale is expanded, alpha is dropped (not
//!    composited), 16-bit samples are rounded to 8 bits. EXIF orientation is not applied:
//!    pixels are used in stored order.
//!
//! Determinism: a reduced-scale decode gives slightly different pixels from a full decode
//! followed by the same resize (the DCT-domain reduction is a different low-pass filter),
//! so the choice must itself be deterministic. It is: [`choose_path`] is a pure function
//! of the header and the needed size, and the needed size is a pure function of the
//! augment spec, the target size and the sample's RNG key. The same sample with the same
//! spec is always decoded by the same path to the same bytes.

use std::borrow::Cow;
use std::io::Cursor;

use image::{DynamicImage, ImageDecoder};

use super::ppm;
use crate::dataset::sample::ImageFormat;

/// The default pixel cap: 64 megapixels (an 8000x8000 image).
pub const DEFAULT_MAX_PIXELS: u64 = 64_000_000;

/// Limits that protect the decoder from hostile or broken images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// The most pixels (width x height) an image may declare in its header.
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

/// The frame parameters of a JPEG that decide whether it can be decoded at reduced scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegFrame {
    /// The start-of-frame marker (0xC0 baseline, 0xC1 extended, 0xC2 progressive, ...).
    pub sof: u8,
    /// Bits per sample (8 for nearly every JPEG).
    pub precision: u8,
    /// Colour components: 1 greyscale, 3 YCbCr or RGB, 4 CMYK or YCCK.
    pub components: u8,
}

/// What an image's header declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The format found in the bytes (the declared one when the bytes say nothing).
    pub format: ImageFormat,
    /// Declared width in pixels.
    pub width: u32,
    /// Declared height in pixels.
    pub height: u32,
    /// The JPEG frame parameters; `None` for other formats.
    pub jpeg: Option<JpegFrame>,
}

impl Header {
    /// Declared width times height.
    pub fn pixels(&self) -> u64 {
        self.width as u64 * self.height as u64
    }
}

/// Which decoder runs, and at what scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodePath {
    /// The format's decoder in `image` (zune-jpeg for JPEG), at full size.
    Full,
    /// [`JPEG_DCT_DECODER`] at `1/reduction` of the full size (1, 2, 4 or 8), scaled in
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
    /// [`Decoded::logical_size`]).
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

/// A decoded image: packed RGB8, row-major, `width * height * 3` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// What the header declared.
    pub header: Header,
    /// How it was decoded.
    pub path: DecodePath,
    /// Width of `pixels` (the declared width divided by the reduction, rounded up).
    pub width: u32,
    /// Height of `pixels`.
    pub height: u32,
    /// The pixels, RGB8. With a region to read ([`decode_path`]), only those in it are
    /// sure to be decoded. Borrowed from the encoded bytes when they hold raw RGB8 (an
    /// 8-bit PPM).
    pub pixels: Cow<'a, [u8]>,
}

impl Decoded<'_> {
    /// The declared size in units of decoded pixels: `(width, height) / reduction`,
    /// unrounded. A relative coordinate `x` in [0, 1] of the full image is at
    /// `x * logical_size().0` in `pixels`, whatever the path; a reduced decode has a
    /// partial last column or row beyond it when the size is not a multiple of the
    /// reduction.
    pub fn logical_size(&self) -> (f64, f64) {
        self.path.logical_size(&self.header)
    }
}

/// A decoder's output: width, height and packed RGB8 pixels.
type Raster = (u32, u32, Vec<u8>);

/// Why an image could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The header is missing, truncated or malformed.
    #[error("{} header: {why}", name(*format))]
    BadHeader {
        /// The format whose header was read.
        format: ImageFormat,
        /// What is wrong.
        why: String,
    },
    /// The header declares more pixels than the limit allows.
    #[error(
        "{} declares {width}x{height} ({pixels} pixels), over the limit of {max_pixels} pixels",
        name(*format)
    )]
    TooLarge {
        /// The image format.
        format: ImageFormat,
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// Declared width times height.
        pixels: u64,
        /// The limit.
        max_pixels: u64,
    },
    /// The image uses a feature the chosen decoder does not support.
    #[error("{} {what} is not supported by {decoder}", name(*format))]
    Unsupported {
        /// The image format.
        format: ImageFormat,
        /// Which decoder.
        decoder: &'static str,
        /// What is unsupported.
        what: String,
    },
    /// The decoder failed (corrupt or truncated data).
    #[error("{} decode with {decoder} failed: {message}", name(*format))]
    Decoder {
        /// The image format.
        format: ImageFormat,
        /// Which decoder (`image`, `jpeg-decoder` or `libjpeg-turbo`).
        decoder: &'static str,
        /// The decoder's message.
        message: String,
    },
    /// The decoder produced a size other than the header declared.
    #[error(
        "{} decoded to {got_width}x{got_height}, expected {width}x{height}",
        name(*format)
    )]
    SizeMismatch {
        /// The image format.
        format: ImageFormat,
        /// Expected width.
        width: u32,
        /// Expected height.
        height: u32,
        /// Decoded width.
        got_width: u32,
        /// Decoded height.
        got_height: u32,
    },
}

fn name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::Png => "png",
        ImageFormat::Webp => "webp",
        ImageFormat::Qoi => "qoi",
        ImageFormat::Ppm => "ppm",
    }
}

fn bad(format: ImageFormat, why: impl Into<String>) -> DecodeError {
    DecodeError::BadHeader {
        format,
        why: why.into(),
    }
}

fn be16(b: &[u8], at: usize) -> Option<u32> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?) as u32)
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le16(b: &[u8], at: usize) -> Option<u32> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as u32)
}

fn le24(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 3)?;
    Some(s[0] as u32 | (s[1] as u32) << 8 | (s[2] as u32) << 16)
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Reads the format and declared size of an encoded image without decoding it. Does not
/// apply any limit (see [`check_limits`]).
pub fn probe(declared: ImageFormat, bytes: &[u8]) -> Result<Header, DecodeError> {
    let format = ImageFormat::sniff(bytes).unwrap_or(declared);
    let header = match format {
        ImageFormat::Png => probe_png(bytes)?,
        ImageFormat::Jpeg => probe_jpeg(bytes)?,
        ImageFormat::Webp => probe_webp(bytes)?,
        ImageFormat::Qoi => probe_qoi(bytes)?,
        ImageFormat::Ppm => {
            let p = ppm::parse(bytes).map_err(|why| bad(ImageFormat::Ppm, why))?;
            Header {
                format: ImageFormat::Ppm,
                width: p.width,
                height: p.height,
                jpeg: None,
            }
        }
    };
    if header.width == 0 || header.height == 0 {
        return Err(bad(
            format,
            format!(
                "declares an empty image ({}x{})",
                header.width, header.height
            ),
        ));
    }
    Ok(header)
}

fn probe_png(b: &[u8]) -> Result<Header, DecodeError> {
    let f = ImageFormat::Png;
    if !b.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err(bad(f, "no png signature"));
    }
    if b.get(12..16) != Some(b"IHDR") {
        return Err(bad(f, "first chunk is not IHDR"));
    }
    let (Some(width), Some(height)) = (be32(b, 16), be32(b, 20)) else {
        return Err(bad(f, "truncated IHDR"));
    };
    Ok(Header {
        format: f,
        width,
        height,
        jpeg: None,
    })
}

fn probe_jpeg(b: &[u8]) -> Result<Header, DecodeError> {
    let f = ImageFormat::Jpeg;
    if !b.starts_with(&[0xFF, 0xD8]) {
        return Err(bad(f, "no start-of-image marker"));
    }
    let truncated = || bad(f, "truncated before the frame header");
    let mut i = 2;
    loop {
        // Skip anything up to the next marker, as libjpeg does with extraneous bytes,
        // then any fill bytes.
        while *b.get(i).ok_or_else(truncated)? != 0xFF {
            i += 1;
        }
        while *b.get(i).ok_or_else(truncated)? == 0xFF {
            i += 1;
        }
        let marker = b[i];
        i += 1;
        match marker {
            // Markers without a length: SOI, TEM, RSTn.
            0xD8 | 0x01 | 0xD0..=0xD7 => continue,
            0xD9 => return Err(bad(f, "end of image before a frame header")),
            0xDA => return Err(bad(f, "scan before a frame header")),
            // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let seg = b.get(i..i + 8).ok_or_else(truncated)?;
                return Ok(Header {
                    format: f,
                    width: be16(seg, 5).expect("slice has 8 bytes"),
                    height: be16(seg, 3).expect("slice has 8 bytes"),
                    jpeg: Some(JpegFrame {
                        sof: marker,
                        precision: seg[2],
                        components: seg[7],
                    }),
                });
            }
            _ => {
                let len = be16(b, i).ok_or_else(truncated)? as usize;
                if len < 2 {
                    return Err(bad(f, format!("marker 0x{marker:02X} has length {len}")));
                }
                i += len;
            }
        }
    }
}

fn probe_webp(b: &[u8]) -> Result<Header, DecodeError> {
    let f = ImageFormat::Webp;
    if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WEBP" {
        return Err(bad(f, "no RIFF/WEBP signature"));
    }
    let truncated = || bad(f, "truncated first chunk");
    let chunk = b.get(12..16).ok_or_else(truncated)?;
    let d = 20; // chunk payload
    let (width, height) = match chunk {
        b"VP8 " => {
            if b.get(d + 3..d + 6) != Some(&[0x9D, 0x01, 0x2A]) {
                return Err(bad(f, "bad VP8 start code"));
            }
            let w = le16(b, d + 6).ok_or_else(truncated)?;
            let h = le16(b, d + 8).ok_or_else(truncated)?;
            (w & 0x3FFF, h & 0x3FFF)
        }
        b"VP8L" => {
            if b.get(d) != Some(&0x2F) {
                return Err(bad(f, "bad VP8L signature"));
            }
            let bits = le32(b, d + 1).ok_or_else(truncated)?;
            ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        }
        b"VP8X" => {
            let w = le24(b, d + 4).ok_or_else(truncated)?;
            let h = le24(b, d + 7).ok_or_else(truncated)?;
            (w + 1, h + 1)
        }
        other => {
            return Err(bad(
                f,
                format!("unknown first chunk {:?}", String::from_utf8_lossy(other)),
            ))
        }
    };
    Ok(Header {
        format: f,
        width,
        height,
        jpeg: None,
    })
}

fn probe_qoi(b: &[u8]) -> Result<Header, DecodeError> {
    let f = ImageFormat::Qoi;
    if !b.starts_with(b"qoif") {
        return Err(bad(f, "no qoif magic"));
    }
    let (Some(width), Some(height)) = (be32(b, 4), be32(b, 8)) else {
        return Err(bad(f, "truncated header"));
    };
    Ok(Header {
        format: f,
        width,
        height,
        jpeg: None,
    })
}

/// Refuses a header that declares more pixels than the limits allow.
pub fn check_limits(header: &Header, limits: &DecodeLimits) -> Result<(), DecodeError> {
    if header.pixels() > limits.max_pixels {
        return Err(DecodeError::TooLarge {
            format: header.format,
            width: header.width,
            height: header.height,
            pixels: header.pixels(),
            max_pixels: limits.max_pixels,
        });
    }
    Ok(())
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

/// Decodes an image to RGB8: probes the header, applies the limits, picks the path with
/// [`choose_path`] and decodes. `need` is the smallest size of the whole image the
/// caller can use (`None`: full size); the result may be smaller than the declared size
/// but is never smaller than `need`.
pub fn decode<'a>(
    declared: ImageFormat,
    bytes: &'a [u8],
    need: Option<(u32, u32)>,
    limits: &DecodeLimits,
) -> Result<Decoded<'a>, DecodeError> {
    let header = probe(declared, bytes)?;
    check_limits(&header, limits)?;
    decode_path(&header, bytes, choose_path(&header, need), None)
}

/// Decodes an image by a given path. `header` must come from [`probe`] on the same bytes
/// and have passed [`check_limits`]: the decoders are held to the header's size, which
/// is what bounds their allocations. `read`, in the coordinates of the path's decoded
/// size ([`DecodePath::decoded_size`]), is the part of the image the caller will read
/// (`None`: all of it). libjpeg-turbo then decodes only that part, and a PNG that decodes
/// to 8-bit RGB or RGBA only the rows down to its bottom; both give the same pixels there
/// as a whole decode, and the pixels outside may be left zero. An 8-bit PPM's raster is
/// returned as it is, borrowed from `bytes`. Damage outside the part
/// read goes unnoticed then: a truncated or corrupt image decodes for the crops that do
/// not reach the damage (deterministically, as the crop is), where a whole decode would
/// fail, or for a JPEG fall back to zune-jpeg. `editfeed verify` decodes every image
/// whole. Exposed for benchmarks and tests; [`decode`] is the normal entry point.
pub fn decode_path<'a>(
    header: &Header,
    bytes: &'a [u8],
    path: DecodePath,
    read: Option<Region>,
) -> Result<Decoded<'a>, DecodeError> {
    if let (ImageFormat::Ppm, DecodePath::Full) = (header.format, path) {
        if let Some(raster) = ppm_raster(header, bytes)? {
            return Ok(Decoded {
                header: *header,
                path,
                width: header.width,
                height: header.height,
                pixels: Cow::Borrowed(raster),
            });
        }
    }
    let (path, (width, height, pixels)) = match path {
        DecodePath::Full => {
            let rows = read
                .filter(|r| header.format == ImageFormat::Png && r.y1 <= header.height)
                .and_then(|r| decode_png_rows(header, bytes, r.y1));
            match rows {
                Some(decoded) => (path, decoded?),
                None => (path, decode_image(header, bytes)?),
            }
        }
        DecodePath::JpegDct { reduction } => {
            match decode_jpeg_dct(header, bytes, reduction, read) {
                Ok(decoded) => (path, decoded),
                // libjpeg-turbo (TurboJPEG counts its warnings as errors) fails on
                // recoverable damage too, such as extraneous bytes before a marker, which
                // zune-jpeg decodes: such an image takes the full-size path, so that no
                // build loses it.
                Err(_) if cfg!(feature = "turbojpeg") => {
                    (DecodePath::Full, decode_image(header, bytes)?)
                }
                Err(e) => return Err(e),
            }
        }
    };
    Ok(Decoded {
        header: *header,
        path,
        width,
        height,
        pixels: Cow::Owned(pixels),
    })
}

/// The raster of an 8-bit PPM of `header`: its packed RGB8 pixels, in place. `None` for
/// a 16-bit PPM, which [`decode_image`] converts.
fn ppm_raster<'a>(header: &Header, bytes: &'a [u8]) -> Result<Option<&'a [u8]>, DecodeError> {
    let p = ppm::parse(bytes).map_err(|why| bad(ImageFormat::Ppm, why))?;
    if (p.width, p.height) != (header.width, header.height) {
        return Err(DecodeError::SizeMismatch {
            format: ImageFormat::Ppm,
            width: header.width,
            height: header.height,
            got_width: p.width,
            got_height: p.height,
        });
    }
    Ok(p.is_rgb8().then(|| &bytes[p.raster]))
}

/// The most a decoder may allocate for an image of `header` (which passed
/// [`check_limits`]): a 16-bit RGBA image of its size plus working room.
fn alloc_cap(header: &Header) -> u64 {
    header.pixels() * 8 + (64 << 20)
}

/// Decodes the first `rows` rows of a PNG that decodes to 8-bit RGB or RGBA (palette
/// images included) and is not interlaced, the form of nearly every edit, and stops
/// there: the rest of the image data is neither inflated nor unfiltered. The rows below
/// are left zero; alpha is dropped, as in [`decode_image`], whose pixels these rows are.
/// `None` for any other PNG, which [`decode_image`] decodes whole.
fn decode_png_rows(
    header: &Header,
    bytes: &[u8],
    rows: u32,
) -> Option<Result<Raster, DecodeError>> {
    let failed = |message: String| DecodeError::Decoder {
        format: ImageFormat::Png,
        decoder: "png",
        message,
    };
    // As `image` does: the same allocation cap, and EXPAND (palette and low bit depths to
    // 8 bits, tRNS to alpha).
    let limits = png::Limits {
        bytes: usize::try_from(alloc_cap(header)).unwrap_or(usize::MAX),
    };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), limits);
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = match decoder.read_info() {
        Ok(reader) => reader,
        Err(e) => return Some(Err(failed(e.to_string()))),
    };
    let info = reader.info();
    if info.interlaced || (info.width, info.height) != (header.width, header.height) {
        return None;
    }
    let channels = match reader.output_color_type() {
        (png::ColorType::Rgb, png::BitDepth::Eight) => 3,
        (png::ColorType::Rgba, png::BitDepth::Eight) => 4,
        _ => return None,
    };
    let width = header.width as usize;
    let (stride, len) = (width * 3, width * header.height as usize * 3);
    // Each row is zeroed just before it is written, while it is in the cache, rather
    // than the whole image up front.
    let mut pixels = Vec::with_capacity(len);
    for y in 0..rows as usize {
        pixels.resize((y + 1) * stride, 0);
        let dst = &mut pixels[y * stride..];
        let ended = || failed(format!("image data ends at row {y}"));
        if channels == 3 {
            match reader.read_row(dst) {
                Ok(Some(_)) => continue,
                Ok(None) => return Some(Err(ended())),
                Err(e) => return Some(Err(failed(e.to_string()))),
            }
        }
        let row = match reader.next_row() {
            Ok(Some(row)) => row.data(),
            Ok(None) => return Some(Err(ended())),
            Err(e) => return Some(Err(failed(e.to_string()))),
        };
        for (d, s) in dst.chunks_exact_mut(3).zip(row.chunks_exact(4)) {
            d.copy_from_slice(&s[..3]);
        }
    }
    pixels.resize(len, 0);
    Some(Ok((header.width, header.height, pixels)))
}

/// Full-size decode through `image`.
fn decode_image(header: &Header, bytes: &[u8]) -> Result<Raster, DecodeError> {
    let format = header.format;
    let failed = |e: image::ImageError| match e {
        image::ImageError::Unsupported(u) => DecodeError::Unsupported {
            format,
            decoder: "image",
            what: u.to_string(),
        },
        other => DecodeError::Decoder {
            format,
            decoder: "image",
            message: other.to_string(),
        },
    };
    // A second line behind check_limits: the decoder must find the size the header
    // declared (which passed the cap), and may allocate at most `alloc_cap`.
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(header.width);
    limits.max_image_height = Some(header.height);
    limits.max_alloc = Some(alloc_cap(header));
    let cursor = Cursor::new(bytes);
    let img = match format {
        ImageFormat::Jpeg => {
            let mut d = image::codecs::jpeg::JpegDecoder::new(cursor).map_err(failed)?;
            d.set_limits(limits).map_err(failed)?;
            DynamicImage::from_decoder(d)
        }
        ImageFormat::Png => {
            let d = image::codecs::png::PngDecoder::with_limits(cursor, limits).map_err(failed)?;
            DynamicImage::from_decoder(d)
        }
        ImageFormat::Webp => {
            let mut d = image::codecs::webp::WebPDecoder::new(cursor).map_err(failed)?;
            d.set_limits(limits).map_err(failed)?;
            DynamicImage::from_decoder(d)
        }
        ImageFormat::Qoi => {
            let mut d = image::codecs::qoi::QoiDecoder::new(cursor).map_err(failed)?;
            d.set_limits(limits).map_err(failed)?;
            DynamicImage::from_decoder(d)
        }
        ImageFormat::Ppm => {
            let mut d = image::codecs::pnm::PnmDecoder::new(cursor).map_err(failed)?;
            d.set_limits(limits).map_err(failed)?;
            DynamicImage::from_decoder(d)
        }
    }
    .map_err(failed)?;
    let rgb = img.into_rgb8();
    let (w, h) = rgb.dimensions();
    if (w, h) != (header.width, header.height) {
        return Err(DecodeError::SizeMismatch {
            format,
            width: header.width,
            height: header.height,
            got_width: w,
            got_height: h,
        });
    }
    Ok((w, h, rgb.into_raw()))
}

/// The decoder behind [`DecodePath::JpegDct`] in this build.
#[cfg(feature = "turbojpeg")]
pub const JPEG_DCT_DECODER: &str = super::jpeg_turbo::DECODER;
/// The decoder behind [`DecodePath::JpegDct`] in this build.
#[cfg(not(feature = "turbojpeg"))]
pub const JPEG_DCT_DECODER: &str = "jpeg-decoder";

/// JPEG decode in the DCT domain at `1/reduction` scale, by [`JPEG_DCT_DECODER`]: the
/// checks on the request and on the result, around the build's backend.
fn decode_jpeg_dct(
    header: &Header,
    bytes: &[u8],
    reduction: u32,
    read: Option<Region>,
) -> Result<Raster, DecodeError> {
    let format = ImageFormat::Jpeg;
    if header.format != format || !matches!(reduction, 1 | 2 | 4 | 8) {
        return Err(DecodeError::Unsupported {
            format: header.format,
            decoder: JPEG_DCT_DECODER,
            what: format!("reduction 1/{reduction}"),
        });
    }
    let expect = DecodePath::JpegDct { reduction }.decoded_size(header);
    #[cfg(feature = "turbojpeg")]
    let (got, pixels) = super::jpeg_turbo::decode(header, bytes, reduction, read)?;
    #[cfg(not(feature = "turbojpeg"))]
    let (got, pixels) = {
        let _ = read; // jpeg-decoder decodes every pixel.
        jpeg_decoder_dct(header, bytes, expect)?
    };
    if got != expect {
        return Err(DecodeError::SizeMismatch {
            format,
            width: expect.0,
            height: expect.1,
            got_width: got.0,
            got_height: got.1,
        });
    }
    if pixels.len() != got.0 as usize * got.1 as usize * 3 {
        return Err(DecodeError::Decoder {
            format,
            decoder: JPEG_DCT_DECODER,
            message: format!("returned {} bytes for {}x{}", pixels.len(), got.0, got.1),
        });
    }
    Ok((got.0, got.1, pixels))
}

/// `jpeg-decoder` asked for `expect` pixels (the scaled size); returns the size it
/// decoded and RGB8 pixels.
#[cfg(not(feature = "turbojpeg"))]
#[allow(clippy::type_complexity)]
fn jpeg_decoder_dct(
    header: &Header,
    bytes: &[u8],
    expect: (u32, u32),
) -> Result<((u32, u32), Vec<u8>), DecodeError> {
    let format = ImageFormat::Jpeg;
    let failed = |e: jpeg_decoder::Error| match e {
        jpeg_decoder::Error::Unsupported(u) => DecodeError::Unsupported {
            format,
            decoder: JPEG_DCT_DECODER,
            what: format!("{u:?}"),
        },
        other => DecodeError::Decoder {
            format,
            decoder: JPEG_DCT_DECODER,
            message: other.to_string(),
        },
    };
    let mut d = jpeg_decoder::Decoder::new(bytes);
    // CMYK is the widest output: 4 bytes per pixel.
    d.set_max_decoding_buffer_size((header.pixels() * 4) as usize);
    if expect != (header.width, header.height) {
        // Dimensions were checked against the header, and JPEG sizes fit in u16.
        d.scale(expect.0 as u16, expect.1 as u16).map_err(failed)?;
    }
    let raw = d.decode().map_err(failed)?;
    let info = d.info().expect("decode succeeded, so the header was read");
    let pixels = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => raw,
        jpeg_decoder::PixelFormat::L8 => raw.iter().flat_map(|&v| [v, v, v]).collect(),
        other => {
            return Err(DecodeError::Unsupported {
                format,
                decoder: JPEG_DCT_DECODER,
                what: format!("pixel format {other:?}"),
            })
        }
    };
    Ok(((info.width as u32, info.height as u32), pixels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg_header(w: u32, h: u32) -> Header {
        Header {
            format: ImageFormat::Jpeg,
            width: w,
            height: h,
            jpeg: Some(JpegFrame {
                sof: 0xC0,
                precision: 8,
                components: 3,
            }),
        }
    }

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

    #[test]
    fn probes_headers_by_hand() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&300u32.to_be_bytes());
        png.extend_from_slice(&200u32.to_be_bytes());
        let h = probe(ImageFormat::Png, &png).unwrap();
        assert_eq!((h.width, h.height), (300, 200));
        // Sniffing wins over the declared format.
        assert_eq!(
            probe(ImageFormat::Jpeg, &png).unwrap().format,
            ImageFormat::Png
        );
        // JPEG: SOI, an APP0 segment, fill bytes, then SOF2.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB, 0xFF, 0xFF, 0xC2, 0x00, 0x11, 8, 0x01,
            0x2C, 0x01, 0x90, 3,
        ];
        let h = probe(ImageFormat::Jpeg, &jpeg).unwrap();
        assert_eq!((h.width, h.height), (400, 300));
        assert_eq!(h.jpeg.unwrap().sof, 0xC2);
        assert!(matches!(
            probe(ImageFormat::Jpeg, &jpeg[..12]),
            Err(DecodeError::BadHeader { .. })
        ));
        // WebP lossless: 14-bit width-1 and height-1.
        let mut webp = b"RIFF\0\0\0\0WEBPVP8L\0\0\0\0\x2f".to_vec();
        webp.extend_from_slice(&((199u32) | (99u32 << 14)).to_le_bytes());
        let h = probe(ImageFormat::Webp, &webp).unwrap();
        assert_eq!((h.width, h.height), (200, 100));
        // QOI: magic, then big-endian width and height.
        let mut qoi = b"qoif".to_vec();
        qoi.extend_from_slice(&1184u32.to_be_bytes());
        qoi.extend_from_slice(&864u32.to_be_bytes());
        qoi.extend_from_slice(&[3, 0]);
        let h = probe(ImageFormat::Png, &qoi).unwrap();
        assert_eq!((h.format, h.width, h.height), (ImageFormat::Qoi, 1184, 864));
        assert!(probe(ImageFormat::Qoi, &qoi[..9]).is_err());
        assert!(probe(ImageFormat::Png, b"GIF89a").is_err());
    }

    #[test]
    fn ppm_rasters_are_read_in_place_and_16_bit_ones_converted() {
        let limits = DecodeLimits::default();
        let pixels: Vec<u8> = (0..36u8).map(|v| v.wrapping_mul(7)).collect();
        let ppm8 = ppm::write(4, 3, &pixels);
        // Sniffed whatever the member's name says.
        let d = decode(ImageFormat::Png, &ppm8, None, &limits).unwrap();
        assert_eq!(
            (d.header.format, d.width, d.height),
            (ImageFormat::Ppm, 4, 3)
        );
        let raster = &ppm8[ppm8.len() - 36..];
        assert!(matches!(d.pixels, Cow::Borrowed(p) if std::ptr::eq(p, raster)));
        // 16-bit samples are rounded to 8 bits, as for PNG.
        let mut ppm16 = b"P6 4 3 65535\n".to_vec();
        for &v in &pixels {
            ppm16.extend_from_slice(&(u16::from(v) * 257 + 100).to_be_bytes());
        }
        let d16 = decode(ImageFormat::Ppm, &ppm16, None, &limits).unwrap();
        assert!(matches!(d16.pixels, Cow::Owned(_)));
        assert_eq!(&*d16.pixels, &pixels[..]);
        let cut = decode(ImageFormat::Ppm, &ppm8[..ppm8.len() - 1], None, &limits);
        assert_eq!(
            cut.unwrap_err().to_string(),
            "ppm header: raster of 4x3 needs 36 bytes, 35 are there"
        );
        let empty = decode(ImageFormat::Ppm, b"P6\n0 5\n255\n", None, &limits);
        assert_eq!(
            empty.unwrap_err().to_string(),
            "ppm header: declares an empty image (0x5)"
        );
        let small = DecodeLimits { max_pixels: 11 };
        assert!(matches!(
            decode(ImageFormat::Ppm, &ppm8, None, &small),
            Err(DecodeError::TooLarge { pixels: 12, .. })
        ));
    }

    #[test]
    fn limits_are_checked_on_the_declared_size() {
        let h = jpeg_header(10_000, 10_000);
        let e = check_limits(&h, &DecodeLimits::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "jpeg declares 10000x10000 (100000000 pixels), over the limit of 64000000 pixels"
        );
        assert!(check_limits(&jpeg_header(8000, 8000), &DecodeLimits::default()).is_ok());
    }
}
