//! One sample as one zstd frame: its members laid out as tar entries
//! (`<key>.<field>`) and compressed on their own. A frame is a pure function of the key,
//! the members, the zstd level and the literal setting (zstd resets its session before
//! every frame, and the tar headers carry no times or owners), so frames can be
//! compressed on any thread and appended later by the [`super::ShardWriter`].

use super::index::sample_digest;
use super::members::{append_member, end_of_archive};

/// A compressed sample, ready to append to a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The sample's key.
    pub key: String,
    /// The zstd frame.
    pub bytes: Vec<u8>,
    /// The length of the tar bytes inside the frame.
    pub raw_len: u32,
    /// The sample's content digest (as stored in the index).
    pub digest: [u8; 32],
}

/// Compresses samples into frames; one per thread.
pub struct FrameCompressor {
    compressor: zstd::bulk::Compressor<'static>,
    tar_buf: Vec<u8>,
}

impl FrameCompressor {
    /// A compressor at a zstd level (1..=22, or -1 down to -131072 for zstd's fast
    /// levels), with zstd's defaults, or with neither Huffman-coded literals nor matches
    /// under 6 bytes (see
    /// [`crate::dataset::writer::WriteOptions::compress_literals`]).
    pub fn new(level: i32, compress_literals: bool) -> std::io::Result<Self> {
        use zstd::zstd_safe::{CParameter, ParamSwitch};
        let mut compressor = zstd::bulk::Compressor::new(level)?;
        // A content checksum in every frame: images are stored raw inside the frame, so
        // without it a flipped byte would decode silently into a wrong image.
        compressor.set_parameter(CParameter::ChecksumFlag(true))?;
        let literals = if compress_literals {
            ParamSwitch::Enable
        } else {
            ParamSwitch::Disable
        };
        compressor.set_parameter(CParameter::LiteralCompressionMode(literals))?;
        if !compress_literals && level >= 1 {
            // Matches of at least 6 bytes: in entropy-coded image bytes the shorter ones
            // are coincidences, each a sequence to decode for a byte or two saved.
            compressor.set_parameter(CParameter::MinMatch(6))?;
        }
        Ok(FrameCompressor {
            compressor,
            tar_buf: Vec::new(),
        })
    }

    /// Compresses one sample given as `(field, bytes)` members.
    pub fn sample<'a>(
        &mut self,
        key: &str,
        members: impl IntoIterator<Item = (&'a str, &'a [u8])> + Clone,
    ) -> std::io::Result<Frame> {
        self.tar_buf.clear();
        for (field, data) in members.clone() {
            append_member(&mut self.tar_buf, &format!("{key}.{field}"), data)?;
        }
        let raw_len = u32::try_from(self.tar_buf.len())
            .map_err(|_| std::io::Error::other(format!("sample {key} is larger than 4 GiB")))?;
        let bytes = self.compressor.compress(&self.tar_buf)?;
        Ok(Frame {
            key: key.to_string(),
            bytes,
            raw_len,
            digest: sample_digest(key, members),
        })
    }

    /// The frame that ends a shard: the tar end-of-archive marker.
    pub fn end_of_archive(&mut self) -> std::io::Result<Vec<u8>> {
        self.compressor.compress(&end_of_archive())
    }
}
