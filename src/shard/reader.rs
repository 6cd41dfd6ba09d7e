//! Reads shards: one sample from its zstd frame (after a range read through the index),
//! or a whole shard as a stream, which also covers shards written by other tools (plain
//! `.tar`, single-frame `.tar.zst`).

use std::collections::HashSet;
use std::io::Read;

use bytes::Bytes;

use super::members::{read_members, slice_members, split_name, MemberError, MAX_MEMBER_BYTES};
use super::ShardError;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// A sample as members, before the schema is applied. Shards of other tools yield these.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSample {
    /// The WebDataset key.
    pub key: String,
    /// `(field, bytes)` in member order.
    pub members: Vec<(String, Bytes)>,
}

impl RawSample {
    /// The sample's content digest (as stored in the index).
    pub fn digest(&self) -> [u8; 32] {
        super::index::sample_digest(
            &self.key,
            self.members.iter().map(|(f, b)| (f.as_str(), &b[..])),
        )
    }
}

/// Decodes one sample frame read from `shard` at `offset`. `raw_len` (from the index)
/// bounds the decompressed size.
pub fn decode_frame(
    shard: &str,
    offset: u64,
    frame: &[u8],
    raw_len: u32,
) -> Result<RawSample, ShardError> {
    let corrupt = |why: String| ShardError::Corrupt {
        shard: shard.to_string(),
        offset,
        why,
    };
    let tar = decompress(frame, raw_len as usize)
        .map_err(|e| corrupt(format!("zstd frame does not decode: {e}")))?;
    if tar.len() != raw_len as usize {
        return Err(corrupt(format!(
            "frame decodes to {} bytes, the index says {raw_len}",
            tar.len()
        )));
    }
    let mut out: Option<RawSample> = None;
    // Members are slices of the decoded frame, which lives as long as any of them.
    slice_members(&tar, |path, data| {
        let (key, field) = split_name(&path);
        let sample = out.get_or_insert_with(|| RawSample {
            key: key.to_string(),
            members: vec![],
        });
        if sample.key != key {
            return Err(MemberError::Tar {
                offset: 0,
                why: format!("frame holds two samples ({} and {key})", sample.key),
            });
        }
        sample.members.push((field.to_string(), data));
        Ok(())
    })
    .map_err(|e| corrupt(e.to_string()))?;
    out.ok_or_else(|| corrupt("frame holds no members".into()))
}

/// Decodes one frame of at most `capacity` bytes, with one reused zstd context per
/// thread (a context costs an allocation and its initialisation) and no zeroing of the
/// output.
fn decompress(frame: &[u8], capacity: usize) -> std::io::Result<Bytes> {
    thread_local! {
        static CONTEXT: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    CONTEXT.with_borrow_mut(|slot| {
        let context = match slot {
            Some(c) => c,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        let mut out = Vec::with_capacity(capacity);
        context.decompress_to_buffer(frame, &mut out)?;
        Ok(Bytes::from(out))
    })
}

/// Reads a whole shard as a stream and calls `on_sample` for each sample in order.
/// Accepts editfeed shards, single-frame `.tar.zst` and plain `.tar`; the format is
/// recognised from the first bytes. Members of one sample must be adjacent.
pub fn stream_samples<R: Read>(
    shard: &str,
    mut reader: R,
    mut on_sample: impl FnMut(RawSample) -> Result<(), ShardError>,
) -> Result<(), ShardError> {
    let io = |e: std::io::Error| ShardError::Corrupt {
        shard: shard.to_string(),
        offset: 0,
        why: e.to_string(),
    };
    let mut head = [0u8; 4];
    let n = read_up_to(&mut reader, &mut head).map_err(io)?;
    let chained = std::io::Cursor::new(head[..n].to_vec()).chain(reader);
    let source: Box<dyn Read> = if n == 4 && head == ZSTD_MAGIC {
        Box::new(zstd::stream::read::Decoder::new(chained).map_err(io)?)
    } else {
        Box::new(chained)
    };
    let mut current: Option<RawSample> = None;
    let mut seen = HashSet::new();
    let mut user_err = None;
    let result = read_members(source, |path, data| {
        if data.len() as u64 > MAX_MEMBER_BYTES {
            unreachable!("read_members enforces the limit");
        }
        let (key, field) = split_name(&path);
        if current.as_ref().is_some_and(|c| c.key != key) {
            let done = current.take().expect("checked");
            if let Err(e) = on_sample(done) {
                user_err = Some(e);
                return Err(MemberError::Tar {
                    offset: 0,
                    why: "stopped".into(),
                });
            }
        }
        if current.is_none() {
            if !seen.insert(key.to_string()) {
                return Err(MemberError::Tar {
                    offset: 0,
                    why: format!("members of sample {key:?} are not adjacent"),
                });
            }
            current = Some(RawSample {
                key: key.to_string(),
                members: vec![],
            });
        }
        current
            .as_mut()
            .expect("set above")
            .members
            .push((field.to_string(), data));
        Ok(())
    });
    if let Some(e) = user_err {
        return Err(e);
    }
    result.map_err(|e| match e {
        MemberError::Tar { offset, why } => ShardError::Corrupt {
            shard: shard.to_string(),
            offset,
            why: format!("{why} (offset in the uncompressed tar stream)"),
        },
        other => ShardError::Corrupt {
            shard: shard.to_string(),
            offset: 0,
            why: other.to_string(),
        },
    })?;
    if let Some(last) = current {
        on_sample(last)?;
    }
    Ok(())
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
