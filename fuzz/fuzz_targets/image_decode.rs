//! The image-decode wrapper (header probe, pixel cap, decoder choice, decode) on
//! arbitrary bytes declared as JPEG, PNG, WebP, QOI or PPM, with a small pixel cap so that a
//! header declaring a huge image must be refused before anything is allocated.
#![no_main]

use editfeed::codec::{decode, DecodeLimits, ImageFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let format = [
        ImageFormat::Jpeg,
        ImageFormat::Png,
        ImageFormat::Webp,
        ImageFormat::Qoi,
        ImageFormat::Ppm,
    ][pick as usize % 5];
    let need = (pick & 0x80 != 0).then_some((32, 32));
    let limits = DecodeLimits {
        max_pixels: 4 << 20,
    };
    if let Ok(d) = decode(format, bytes, need, &limits) {
        assert!(d.width as u64 * d.height as u64 <= limits.max_pixels);
        assert_eq!(d.pixels.len(), d.width as usize * d.height as usize * 3);
    }
});
