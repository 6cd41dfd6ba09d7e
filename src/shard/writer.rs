//! Writes one shard: sample frames ([`super::frame`]) appended in order, then a last
//! frame holding the tar end-of-archive marker. The file is an ordinary `.tar.zst`, and
//! the [`ShardIndex`] built alongside makes every sample one range read. Frames may be
//! compressed on other threads and handed in with [`ShardWriter::add_frame`]: a frame
//! does not depend on where in the shard it lands, so the shard's bytes are the same.

use std::io::Write;

use sha2::{Digest, Sha256};

use crate::hex::hex;

use super::frame::{Frame, FrameCompressor};
use super::index::{IndexEntry, ShardIndex};

/// What a finished shard is: its index, length and checksum.
#[derive(Debug, Clone)]
pub struct FinishedShard {
    /// The sidecar index.
    pub index: ShardIndex,
    /// The shard's length in bytes.
    pub bytes: u64,
    /// sha256 of the shard file, hex.
    pub sha256: String,
}

/// Streams samples into one shard.
pub struct ShardWriter<W: Write> {
    out: W,
    hasher: Sha256,
    compressor: FrameCompressor,
    written: u64,
    index: ShardIndex,
}

impl<W: Write> ShardWriter<W> {
    /// A writer compressing as [`FrameCompressor::new`] does.
    pub fn new(out: W, level: i32, compress_literals: bool) -> std::io::Result<Self> {
        Ok(ShardWriter {
            out,
            hasher: Sha256::new(),
            compressor: FrameCompressor::new(level, compress_literals)?,
            written: 0,
            index: ShardIndex::default(),
        })
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// The content digest of the last sample added.
    pub fn last_digest(&self) -> Option<[u8; 32]> {
        self.index.entries.last().map(|e| e.digest)
    }

    /// Samples written so far.
    pub fn samples(&self) -> usize {
        self.index.entries.len()
    }

    /// Appends one sample given as `(field, bytes)` members; returns its frame length.
    pub fn add<'a>(
        &mut self,
        key: &str,
        members: impl IntoIterator<Item = (&'a str, &'a [u8])> + Clone,
    ) -> std::io::Result<u64> {
        let frame = self.compressor.sample(key, members)?;
        self.add_frame(frame)
    }

    /// Appends a sample frame compressed elsewhere (by a [`FrameCompressor`] with this
    /// writer's level and literal setting); returns its length.
    pub fn add_frame(&mut self, frame: Frame) -> std::io::Result<u64> {
        self.write(&frame.bytes)?;
        let len = frame.bytes.len() as u64;
        self.index.entries.push(IndexEntry {
            key: frame.key,
            offset: self.written - len,
            frame_len: len as u32,
            raw_len: frame.raw_len,
            digest: frame.digest,
        });
        Ok(len)
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Writes the end-of-archive frame and flushes; returns the writer and the shard's
    /// description.
    pub fn finish(mut self) -> std::io::Result<(W, FinishedShard)> {
        let tail = self.compressor.end_of_archive()?;
        self.write(&tail)?;
        self.out.flush()?;
        self.index.data_len = self.written;
        let sha256 = hex(&self.hasher.finalize());
        Ok((
            self.out,
            FinishedShard {
                index: self.index,
                bytes: self.written,
                sha256,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::reader::decode_frame;

    /// Random bytes from a 16-symbol alphabet: matches save little, a Huffman stage
    /// halves them.
    fn skewed(len: usize) -> Vec<u8> {
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        (0..len).map(|_| b'a' + (next() >> 60) as u8).collect()
    }

    /// Random 5-byte words drawn from 4096 of them: each word recurs, while a 6-byte
    /// run almost never does.
    fn five_byte_words(count: usize) -> Vec<u8> {
        let mut next = xorshift(0x2545_F491_4F6C_DD1D);
        let words: Vec<u64> = (0..4096).map(|_| next()).collect();
        (0..count)
            .flat_map(|_| words[(next() >> 52) as usize].to_le_bytes()[..5].to_vec())
            .collect()
    }

    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// Frame sizes of `members` written without and with zstd's defaults, after checking
    /// that both frames read back as the members, under the index's digest.
    fn frame_sizes(members: &[(&str, &[u8])]) -> (usize, usize) {
        let sizes = [false, true].map(|compress_literals| {
            let mut w = ShardWriter::new(Vec::new(), 3, compress_literals).unwrap();
            w.add("k", members.iter().copied()).unwrap();
            let (out, shard) = w.finish().unwrap();
            let entry = &shard.index.entries[0];
            let frame = &out[..entry.frame_len as usize];
            let sample = decode_frame("s", 0, frame, entry.raw_len).unwrap();
            assert_eq!(sample.members.len(), members.len());
            for ((_, got), (_, want)) in sample.members.iter().zip(members) {
                assert_eq!(&got[..], *want);
            }
            assert_eq!(sample.digest(), entry.digest);
            frame.len()
        });
        (sizes[0], sizes[1])
    }

    #[test]
    fn literals_are_huffman_coded_only_when_asked_and_read_back_the_same() {
        let text = skewed(64 << 10);
        let (plain, coded) = frame_sizes(&[("json", b"{\"a\": 1}"), ("txt", &text)]);
        assert!(plain > text.len() * 9 / 10, "{plain} bytes");
        assert!(coded < text.len() * 6 / 10, "{coded} bytes");
    }

    #[test]
    fn matches_under_6_bytes_are_left_out_unless_literals_are_coded() {
        let data = five_byte_words(20_000);
        let (media, coded) = frame_sizes(&[("bin", &data)]);
        assert!(media > data.len() * 97 / 100, "{media} bytes");
        assert!(coded < data.len() * 9 / 10, "{coded} bytes");
    }
}
