//! Lower-case hexadecimal text of digests (shard and sample checksums, dataset versions,
//! cache keys). Below every stage: any module may use it.

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
