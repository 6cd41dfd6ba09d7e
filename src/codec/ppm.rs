//! The binary Netpbm pixmap (`P6`, `.ppm`): a short text header and then the raw RGB
//! samples, row by row. A pack can store edits this way (`--transcode-edits ppm`): the
//! members are larger than PNG or QOI, but decoding them is reading them, so the resize
//! reads the member's bytes in place (see [`super::decode::decode_path`]).
//!
//! The header is `P6`, whitespace, the width, whitespace, the height, whitespace, the
//! largest sample value (1 to 65535), and exactly one whitespace character; a `#` starts
//! a comment that runs to the end of its line, and may follow a number directly (the
//! line end then delimits it). Samples are one byte each when the
//! largest value is under 256, else two (big-endian). Bytes after the raster are
//! ignored, as Pillow and `image` ignore them.

use std::ops::Range;

/// What a pixmap's header declares, and where its raster lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixmap {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The largest sample value (255 for the 8-bit pixmaps editfeed writes).
    pub maxval: u32,
    /// The raster's byte range in the member: `width * height * 3` samples.
    pub raster: Range<usize>,
}

impl Pixmap {
    /// Whether the raster is packed RGB8 exactly as the resizer reads it.
    pub fn is_rgb8(&self) -> bool {
        self.maxval == 255
    }
}

/// The magic of a binary pixmap, followed by whitespace.
pub fn sniff(bytes: &[u8]) -> bool {
    bytes.len() > 2 && bytes.starts_with(b"P6") && is_space(bytes[2])
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C)
}

/// Reads a pixmap's header. `Err` names what is wrong. A raster shorter than the header
/// declares is refused here, so a parsed header's range is always within `bytes`.
pub fn parse(bytes: &[u8]) -> Result<Pixmap, String> {
    if !sniff(bytes) {
        return Err("no P6 magic".into());
    }
    let mut at = 2;
    let mut field = |name: &str| -> Result<u32, String> {
        // Whitespace and comments before the number.
        loop {
            match bytes.get(at) {
                Some(&b) if is_space(b) => at += 1,
                Some(b'#') => {
                    while !matches!(bytes.get(at), None | Some(b'\n' | b'\r')) {
                        at += 1;
                    }
                }
                _ => break,
            }
        }
        let start = at;
        let mut value = 0u32;
        while let Some(d) = bytes.get(at).filter(|b| b.is_ascii_digit()) {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u32::from(d - b'0')))
                .ok_or_else(|| format!("{name} does not fit in 32 bits"))?;
            at += 1;
        }
        if at > start && bytes.get(at) == Some(&b'#') {
            // A comment may follow a number directly; the line end after it delimits.
            while !matches!(bytes.get(at), None | Some(b'\n' | b'\r')) {
                at += 1;
            }
        }
        match bytes.get(at) {
            _ if at == start => Err(format!("no {name} at byte {start}")),
            Some(&b) if is_space(b) => Ok(value),
            Some(&b) => Err(format!(
                "{name} is followed by byte 0x{b:02X}, not whitespace"
            )),
            None => Err(format!("truncated after the {name}")),
        }
    };
    let width = field("width")?;
    let height = field("height")?;
    let maxval = field("maximum value")?;
    // Exactly one whitespace character ends the header (`field` stopped on it).
    let start = at + 1;
    if !(1..=65535).contains(&maxval) {
        return Err(format!("maximum value {maxval} is outside 1..=65535"));
    }
    let sample = if maxval < 256 { 1 } else { 2 };
    let len = (width as u64 * height as u64)
        .checked_mul(3 * sample)
        .filter(|&l| l <= (bytes.len() - start) as u64)
        .ok_or_else(|| {
            format!(
                "raster of {width}x{height} needs {} bytes, {} are there",
                width as u128 * height as u128 * 3 * sample as u128,
                bytes.len() - start
            )
        })? as usize;
    Ok(Pixmap {
        width,
        height,
        maxval,
        raster: start..start + len,
    })
}

/// Writes an 8-bit pixmap of packed RGB8 `pixels` (`width * height * 3` bytes).
pub fn write(width: u32, height: u32, pixels: &[u8]) -> Vec<u8> {
    debug_assert_eq!(pixels.len(), width as usize * height as usize * 3);
    let mut out = format!("P6\n{width} {height}\n255\n").into_bytes();
    out.reserve_exact(pixels.len());
    out.extend_from_slice(pixels);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_with_comments_and_any_whitespace_parse() {
        let pixels: Vec<u8> = (0..2 * 3 * 3).collect();
        let written = write(2, 3, &pixels);
        let p = parse(&written).unwrap();
        assert_eq!((p.width, p.height, p.maxval), (2, 3, 255));
        assert_eq!(&written[p.raster.clone()], &pixels[..]);
        assert!(p.is_rgb8());

        let mut odd = b"P6 # a comment\r\n 2#c\n3 #x\n255#y\n".to_vec();
        odd.extend_from_slice(&pixels);
        odd.extend_from_slice(b"trailing");
        let q = parse(&odd).unwrap();
        assert_eq!((q.width, q.height), (2, 3));
        assert_eq!(&odd[q.raster], &pixels[..]);

        let mut wide = b"P6\n1 1\n65535\n".to_vec();
        wide.extend_from_slice(&[0; 6]);
        let w = parse(&wide).unwrap();
        assert_eq!((w.raster.len(), w.is_rgb8()), (6, false));
    }

    #[test]
    fn bad_headers_say_what_is_wrong() {
        let cases: [(&[u8], &str); 8] = [
            (b"P5\n1 1\n255\n\0", "no P6 magic"),
            (b"P6\nx 1\n255\n", "no width at byte 3"),
            (b"P6\n1 1\n0\n", "maximum value 0 is outside 1..=65535"),
            (
                b"P6\n1 1\n70000\n",
                "maximum value 70000 is outside 1..=65535",
            ),
            (b"P6\n99999999999 1\n255\n", "width does not fit in 32 bits"),
            (
                b"P6\n1 1x\n255\n",
                "height is followed by byte 0x78, not whitespace",
            ),
            (b"P6\n1 1\n255", "truncated after the maximum value"),
            (
                b"P6\n2 1\n255\n\0\0\0",
                "raster of 2x1 needs 6 bytes, 3 are there",
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                parse(bytes).unwrap_err(),
                want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
