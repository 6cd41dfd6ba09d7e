//! Image codecs: format sniffing, header parsing and limits, decoding JPEG, PNG, WebP,
//! QOI and PPM bytes to packed RGB8 (JPEG at a reduced DCT scale when the caller needs a
//! much smaller image), and encoding for pack-time transcodes.
//!
//! Stage: below both the packing side (`dataset`: importers check and transcode images)
//! and the serving side (`pipeline`: its augment step decodes on the worker pool, never
//! on the async runtime). It imports nothing of the stages above it.
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

pub mod decode;
pub mod encode;
pub mod error;
pub mod format;
pub mod header;
mod jpeg;
#[cfg(feature = "turbojpeg")]
pub mod jpeg_turbo;
pub mod path;
mod png_rows;
pub mod ppm;

pub use decode::{decode, decode_path, Decoded};
pub use encode::{encode, EncodeError, TranscodeTarget, DEFAULT_JPEG_QUALITY};
pub use error::DecodeError;
pub use format::ImageFormat;
pub use header::{check_limits, probe, DecodeLimits, Header, JpegFrame, DEFAULT_MAX_PIXELS};
pub use jpeg::JPEG_DCT_DECODER;
pub use path::{choose_path, DecodePath, Region};
