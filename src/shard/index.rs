//! The sidecar index of a shard (`<shard>.idx`): for each sample, its key, the offset and
//! length of its zstd frame in the shard, its uncompressed tar length and a content
//! digest. With it, sample i is one range read.
//!
//! Binary layout, little endian:
//! ```text
//! magic      8 bytes  "EFIDX\0\0\x01"
//! count      u64      number of samples
//! data_len   u64      length of the shard file the index describes
//! entries    count x { offset u64, frame_len u32, raw_len u32, digest [u8; 32],
//!                      key_len u16, key [u8; key_len] }
//! checksum   [u8; 32] sha256 of everything above
//! ```
//! The digest is the sample's content hash ([`sample_digest`]): it does not depend on
//! compression or shard layout, so resharding keeps it.

use sha2::{Digest, Sha256};

/// The leading bytes of every index file; the last byte is the format version.
pub const MAGIC: &[u8; 8] = b"EFIDX\0\0\x01";
const FIXED_ENTRY: usize = 8 + 4 + 4 + 32 + 2;

/// Where one sample's frame is and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The sample key.
    pub key: String,
    /// Byte offset of the sample's zstd frame in the shard.
    pub offset: u64,
    /// Length of the frame in bytes.
    pub frame_len: u32,
    /// Length of the frame's uncompressed tar bytes.
    pub raw_len: u32,
    /// The sample's content digest.
    pub digest: [u8; 32],
}

impl IndexEntry {
    /// The frame's byte range in the shard.
    pub fn range(&self) -> std::ops::Range<u64> {
        self.offset..self.offset + self.frame_len as u64
    }
}

/// A parsed shard index.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShardIndex {
    /// Entries in sample order.
    pub entries: Vec<IndexEntry>,
    /// The length of the shard file the index describes.
    pub data_len: u64,
}

/// Why an index file could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IndexError {
    /// The structure is wrong at this byte offset of the index file.
    #[error("bad shard index at byte {offset}: {why}")]
    Malformed { offset: usize, why: String },
    /// The trailing checksum does not match the contents.
    #[error("shard index checksum mismatch (the file is corrupt or truncated)")]
    Checksum,
}

/// The content digest of one sample: sha256 over its key and, per member in order, the
/// field name and bytes, each length-prefixed.
pub fn sample_digest<'a>(
    key: &str,
    members: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((key.len() as u64).to_le_bytes());
    h.update(key.as_bytes());
    for (field, data) in members {
        h.update((field.len() as u64).to_le_bytes());
        h.update(field.as_bytes());
        h.update((data.len() as u64).to_le_bytes());
        h.update(data);
    }
    h.finalize().into()
}

impl ShardIndex {
    /// Serialises the index.
    pub fn encode(&self) -> Vec<u8> {
        let keys: usize = self.entries.iter().map(|e| e.key.len()).sum();
        let mut out = Vec::with_capacity(24 + self.entries.len() * FIXED_ENTRY + keys + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.data_len.to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(&e.frame_len.to_le_bytes());
            out.extend_from_slice(&e.raw_len.to_le_bytes());
            out.extend_from_slice(&e.digest);
            out.extend_from_slice(&(e.key.len() as u16).to_le_bytes());
            out.extend_from_slice(e.key.as_bytes());
        }
        let sum: [u8; 32] = Sha256::digest(&out).into();
        out.extend_from_slice(&sum);
        out
    }

    /// Parses and checks an index: magic, checksum, bounds, frames in increasing
    /// non-overlapping order inside `data_len`.
    pub fn parse(bytes: &[u8]) -> Result<ShardIndex, IndexError> {
        let bad = |offset: usize, why: &str| IndexError::Malformed {
            offset,
            why: why.to_string(),
        };
        if bytes.len() < 24 + 32 {
            return Err(bad(0, "shorter than the header"));
        }
        if &bytes[..8] != MAGIC {
            return Err(bad(0, "not an editfeed shard index (bad magic)"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != sum {
            return Err(IndexError::Checksum);
        }
        let u64_at = |p: usize| u64::from_le_bytes(body[p..p + 8].try_into().unwrap());
        let count = u64_at(8);
        let data_len = u64_at(16);
        if count > (body.len() / FIXED_ENTRY) as u64 {
            return Err(bad(8, "sample count larger than the file can hold"));
        }
        let mut entries = Vec::with_capacity(count as usize);
        let mut pos = 24;
        let mut prev_end = 0u64;
        for i in 0..count {
            if pos + FIXED_ENTRY > body.len() {
                return Err(bad(pos, &format!("entry {i} is truncated")));
            }
            let offset = u64_at(pos);
            let frame_len = u32::from_le_bytes(body[pos + 8..pos + 12].try_into().unwrap());
            let raw_len = u32::from_le_bytes(body[pos + 12..pos + 16].try_into().unwrap());
            let digest: [u8; 32] = body[pos + 16..pos + 48].try_into().unwrap();
            let key_len = u16::from_le_bytes(body[pos + 48..pos + 50].try_into().unwrap()) as usize;
            pos += FIXED_ENTRY;
            if pos + key_len > body.len() {
                return Err(bad(pos, &format!("entry {i}: key runs past the end")));
            }
            let key = std::str::from_utf8(&body[pos..pos + key_len])
                .map_err(|_| bad(pos, &format!("entry {i}: key is not utf-8")))?
                .to_string();
            pos += key_len;
            if offset < prev_end {
                return Err(bad(
                    pos,
                    &format!("entry {i} ({key}): frame overlaps the previous one"),
                ));
            }
            let end = offset
                .checked_add(frame_len as u64)
                .filter(|&e| e <= data_len);
            let Some(end) = end else {
                return Err(bad(
                    pos,
                    &format!("entry {i} ({key}): frame runs past the shard end"),
                ));
            };
            if frame_len == 0 {
                return Err(bad(pos, &format!("entry {i} ({key}): empty frame")));
            }
            prev_end = end;
            entries.push(IndexEntry {
                key,
                offset,
                frame_len,
                raw_len,
                digest,
            });
        }
        if pos != body.len() {
            return Err(bad(pos, "trailing bytes after the last entry"));
        }
        Ok(ShardIndex { entries, data_len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_index() -> ShardIndex {
        ShardIndex {
            entries: (0..3)
                .map(|i| IndexEntry {
                    key: format!("{i:08}"),
                    offset: i * 100,
                    frame_len: 90,
                    raw_len: 2048,
                    digest: [i as u8; 32],
                })
                .collect(),
            data_len: 1324,
        }
    }

    #[test]
    fn round_trip() {
        let idx = sample_index();
        assert_eq!(ShardIndex::parse(&idx.encode()).unwrap(), idx);
    }

    #[test]
    fn corruption_truncation_and_bad_bounds_are_refused() {
        let bytes = sample_index().encode();
        let mut flipped = bytes.clone();
        flipped[30] ^= 1;
        assert_eq!(ShardIndex::parse(&flipped), Err(IndexError::Checksum));
        assert!(ShardIndex::parse(&bytes[..bytes.len() - 5]).is_err());
        let mut past_end = sample_index();
        past_end.data_len = 250;
        let e = ShardIndex::parse(&past_end.encode()).unwrap_err();
        assert!(e.to_string().contains("past the shard end"), "{e}");
        let mut overlap = sample_index();
        overlap.entries[1].offset = 50;
        let e = ShardIndex::parse(&overlap.encode()).unwrap_err();
        assert!(e.to_string().contains("overlaps"), "{e}");
    }

    #[test]
    fn digest_depends_on_fields_and_bytes() {
        let a = sample_digest("k", [("src.jpg", &b"ab"[..]), ("json", &b"{}"[..])]);
        let b = sample_digest("k", [("src.jpg", &b"a"[..]), ("json", &b"b{}"[..])]);
        assert_ne!(a, b);
    }
}
