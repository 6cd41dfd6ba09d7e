//! Reads samples of an open dataset by subset ordinal: one sample's frame with one
//! range read, several samples of a shard with coalesced range reads, the frame's
//! decoding (checked against the index) and the schema applied on top. Part of the
//! shard reader stage (store -> SHARD READER -> plan).

use std::path::Path;

use super::error::store_err;
use super::{Dataset, DatasetError};
use crate::dataset::sample::Sample;
use crate::dataset::Subset;
use crate::shard::{decode_frame, RawSample, ShardError};

impl Dataset {
    /// The key of the sample at an ordinal.
    pub fn key_of(&self, subset: Subset, ordinal: u64) -> Result<String, DatasetError> {
        let loc = self.locate(subset, ordinal)?;
        Ok(self.index(subset, loc.shard)?.entries[loc.local as usize]
            .key
            .clone())
    }

    /// Where a sample's frame is: its shard's name, the byte range and the shard's
    /// checksum (the cache tag).
    fn frame(
        &self,
        subset: Subset,
        ordinal: u64,
    ) -> Result<(String, std::ops::Range<u64>, String), DatasetError> {
        let loc = self.locate(subset, ordinal)?;
        let index = self.index(subset, loc.shard)?;
        let shard = &self.shards(subset)?[loc.shard];
        Ok((
            shard.path.clone(),
            index.entries[loc.local as usize].range(),
            shard.sha256.clone(),
        ))
    }

    /// Decodes a sample's frame (read by [`read_raw`](Self::read_raw), a coalesced read
    /// or read-ahead) and checks it holds the indexed key.
    pub fn decode_raw(
        &self,
        subset: Subset,
        ordinal: u64,
        frame: &[u8],
    ) -> Result<RawSample, DatasetError> {
        let loc = self.locate(subset, ordinal)?;
        let index = self.index(subset, loc.shard)?;
        let entry = &index.entries[loc.local as usize];
        let shard = &self.shards(subset)?[loc.shard].path;
        let raw = decode_frame(shard, entry.offset, frame, entry.raw_len)?;
        if raw.key != entry.key {
            return Err(ShardError::Corrupt {
                shard: shard.clone(),
                offset: entry.offset,
                why: format!(
                    "frame holds sample {:?}, the index says {:?}",
                    raw.key, entry.key
                ),
            }
            .into());
        }
        Ok(raw)
    }

    /// Reads one sample's members with one range read.
    pub fn read_raw(&self, subset: Subset, ordinal: u64) -> Result<RawSample, DatasetError> {
        let (shard, range, tag) = self.frame(subset, ordinal)?;
        let frame = self
            .store
            .read_range(&shard, range, Some(&tag))
            .map_err(|e| store_err(&shard, e))?;
        self.decode_raw(subset, ordinal, &frame)
    }

    /// Reads several samples of a subset, in the order given. Samples are grouped by
    /// shard and frames that lie next to each other are fetched with one range read,
    /// so a run of consecutive ordinals costs one request per shard.
    pub fn read_raw_many(
        &self,
        subset: Subset,
        ordinals: &[u64],
    ) -> Result<Vec<RawSample>, DatasetError> {
        let mut by_shard: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (i, &o) in ordinals.iter().enumerate() {
            by_shard
                .entry(self.locate(subset, o)?.shard)
                .or_default()
                .push(i);
        }
        let mut out: Vec<Option<RawSample>> = vec![None; ordinals.len()];
        for (shard, members) in by_shard {
            let index = self.index(subset, shard)?;
            let entry = &self.shards(subset)?[shard];
            let ranges: Vec<_> = members
                .iter()
                .map(|&i| {
                    let local = self.locate(subset, ordinals[i]).map(|l| l.local)?;
                    Ok(index.entries[local as usize].range())
                })
                .collect::<Result<_, DatasetError>>()?;
            let frames = self
                .store
                .read_ranges(&entry.path, &ranges, Some(&entry.sha256))
                .map_err(|e| store_err(&entry.path, e))?;
            for (&i, frame) in members.iter().zip(frames) {
                out[i] = Some(self.decode_raw(subset, ordinals[i], &frame)?);
            }
        }
        Ok(out
            .into_iter()
            .map(|s| s.expect("every ordinal read"))
            .collect())
    }

    /// Reads one sample and applies the schema.
    pub fn read_sample(&self, subset: Subset, ordinal: u64) -> Result<Sample, DatasetError> {
        let raw = self.read_raw(subset, ordinal)?;
        self.to_sample(subset, ordinal, raw)
    }

    /// Applies the schema to a sample read from `subset` at `ordinal`.
    pub fn to_sample(
        &self,
        subset: Subset,
        ordinal: u64,
        raw: RawSample,
    ) -> Result<Sample, DatasetError> {
        let shard = self.shards(subset)?[self.locate(subset, ordinal)?.shard]
            .path
            .clone();
        Sample::from_raw(raw).map_err(|source| DatasetError::Sample { shard, source })
    }

    /// [`frame`](Self::frame) when the shard's index is already loaded (no I/O).
    pub(super) fn frame_if_indexed(
        &self,
        subset: Subset,
        ordinal: u64,
    ) -> Option<(String, std::ops::Range<u64>, String)> {
        let loc = self.locate(subset, ordinal).ok()?;
        let index = self.cached_index(subset, loc.shard)?;
        let shard = &self.shards(subset).ok()?[loc.shard];
        Some((
            shard.path.clone(),
            index.entries[loc.local as usize].range(),
            shard.sha256.clone(),
        ))
    }
}

/// Reads `len` bytes at `offset` of a file (one positioned read).
pub fn read_range(path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    crate::store::pread(&std::fs::File::open(path)?, offset, len)
}
