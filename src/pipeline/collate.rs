//! Collation: the prepared samples of one rank and step become one `Batch` message of
//! contiguous uint8 HWC tensors (or encoded bytes with offsets), with per-sample
//! metadata. Runs on the worker that finishes a batch's last sample.
//!
//! Tensors by subset (B samples, H x W output):
//! - `sft`: `source`, `target`, each `[B, H, W, 3]`;
//! - `preference`: `source`, `chosen`, `rejected`, each `[B, H, W, 3]`;
//! - `multi_turn`: `images` `[B, T+1, H, W, 3]` (source then turns, zero-padded to the
//!   longest chain T of the dataset, from its manifest, so that every rank and step has
//!   one shape and rank slices concatenate) and `turn_counts` int32 `[B]`; each
//!   sample's `turn_texts` are padded with empty strings to T.
//!
//! In the multi-turn steps view (`multi_turn_steps`), multi-turn batches have the
//! single-turn layout: `source` (image t-1) and `target` (image t), and each sample's
//! `chain_turn` is t.
//!
//! An evaluation batch has `padding` zero rows after its samples (the end of a pass:
//! zero images, empty encoded slots, turn count 0, metadata with an empty key) and a
//! uint8 `valid` tensor `[B]`, 1 for a sample and 0 for padding.
//!
//! With encoded output: `encoded` uint8 `[N]` (every image's bytes back to back) and
//! `encoded_offsets` int64 `[B, S+1]` (slot j of sample i is
//! `encoded[off[i][j]..off[i][j+1]]`, S slots, empty for padding), plus `turn_counts`
//! for multi-turn.
//!
//! A stream that takes its tensors through shared memory has its uint8 tensors (pixels
//! or encoded bytes) written straight into its files (`crate::transport::shared_memory`); one past
//! the files' bounds goes into a recycled buffer sent in the message.

use super::buffers::BufferPool;
use super::prepare::{OutputKind, Prepared};
use crate::dataset::Subset;
use crate::transport::proto::v1::{Batch, SampleMeta, Tensor};
use crate::transport::shared_memory::{BatchFiles, StreamFiles};
use crate::transport::wire::{tensor_i32, tensor_i64, tensor_u8, tensor_u8_in_file};

/// Where a batch sits in its stream.
#[derive(Debug, Clone)]
pub struct BatchHeader {
    /// Global step.
    pub step: u64,
    /// Rank and world size.
    pub rank: u32,
    /// World size.
    pub world_size: u32,
    /// The step's subset.
    pub subset: Subset,
    /// Resume token after this batch.
    pub cursor: String,
    /// Dataset version served.
    pub dataset_version: String,
    /// Output width and height.
    pub target: (u32, u32),
    /// Pixels or encoded.
    pub kind: OutputKind,
    /// Image slots per sample to pad to (at least the batch's longest sample).
    pub slots: usize,
    /// Rows of zero padding after the samples (the end of an evaluation pass).
    pub padding: usize,
    /// Whether the batch carries a `valid` mask (evaluation streams).
    pub valid_mask: bool,
    /// Multi-turn batches hold one step per sample, laid out as single-turn ones.
    pub multi_turn_steps: bool,
}

/// Builds the batch message; its uint8 tensors go into `files` where they can.
pub fn collate(header: &BatchHeader, samples: Vec<Prepared>, files: Option<&StreamFiles>) -> Batch {
    let valid = samples.len();
    let rows = valid + header.padding;
    let b = rows as u64;
    let (w, h) = (header.target.0 as u64, header.target.1 as u64);
    let img = (w * h * 3) as usize;
    let max_slots = samples
        .iter()
        .map(|s| s.slots)
        .max()
        .unwrap_or(1)
        .max(header.slots);
    let turns = max_slots.saturating_sub(1);
    let mut files = files.map(StreamFiles::batch);
    let mut bytes = |name: &str, shape: &[u64], len: usize, fill: &dyn Fn(&mut Sink)| {
        u8_tensor(name, shape, len, files.as_mut(), fill)
    };
    let mut tensors = Vec::new();
    // Multi-turn chains, each with its turn count and padded turns (not in the steps
    // view, whose samples are single steps).
    let chains = header.subset == Subset::MultiTurn && !header.multi_turn_steps;
    match header.kind {
        OutputKind::Pixels if !chains => {
            let names: &[&str] = if header.subset == Subset::Preference {
                &["source", "chosen", "rejected"]
            } else {
                &["source", "target"]
            };
            for (slot, name) in names.iter().enumerate() {
                tensors.push(bytes(name, &[b, h, w, 3], img * rows, &|out| {
                    for s in &samples {
                        out.put(&s.pixels[slot * img..(slot + 1) * img]);
                    }
                    out.zeros_to(img * rows);
                }));
            }
        }
        OutputKind::Pixels => {
            let shape = [b, max_slots as u64, h, w, 3];
            let len = img * max_slots * rows;
            tensors.push(bytes("images", &shape, len, &|out| {
                for (i, s) in samples.iter().enumerate() {
                    out.put(&s.pixels);
                    // Zero padding after a chain shorter than the longest.
                    out.zeros_to((i + 1) * max_slots * img);
                }
                out.zeros_to(len);
            }));
        }
        OutputKind::Encoded => {
            let mut offsets = Vec::with_capacity(rows * (max_slots + 1));
            let mut end = 0;
            for s in &samples {
                offsets.push(end as i64);
                for slot in 0..max_slots {
                    end += s.encoded.get(slot).map_or(0, |e| e.len());
                    offsets.push(end as i64);
                }
            }
            // Padding rows: every slot empty.
            offsets.resize(rows * (max_slots + 1), end as i64);
            tensors.push(bytes("encoded", &[end as u64], end, &|out| {
                for e in samples.iter().flat_map(|s| &s.encoded) {
                    out.put(e);
                }
            }));
            tensors.push(tensor_i64(
                "encoded_offsets",
                &[b, max_slots as u64 + 1],
                &offsets,
            ));
        }
    }
    if chains {
        let mut counts: Vec<i32> = samples.iter().map(|s| s.slots as i32 - 1).collect();
        counts.resize(rows, 0);
        tensors.push(tensor_i32("turn_counts", &[b], &counts));
    }
    if header.valid_mask {
        let mut mask = vec![1u8; valid];
        mask.resize(rows, 0);
        tensors.push(tensor_u8("valid", &[b], mask.into()));
    }
    let padding = (0..header.padding).map(|_| SampleMeta {
        subset: header.subset.name().to_string(),
        turn_texts: vec![String::new(); turns * chains as usize],
        ..SampleMeta::default()
    });
    let metas = samples
        .into_iter()
        .map(|s| {
            BufferPool::samples().give(s.pixels);
            let mut turn_texts = s.texts.turns;
            if chains {
                turn_texts.resize(turns, String::new());
            }
            SampleMeta {
                key: s.key,
                subset: header.subset.name().to_string(),
                edit_type: s.edit_type,
                category: s.category,
                text: s.texts.text,
                summarized_text: s.texts.summarized_text.unwrap_or_default(),
                turns: s.chain_turns,
                chain_turn: s.turn,
                turn_texts,
                flipped: s.flipped,
                ordinal: s.ordinal,
                epoch: s.epoch,
                replaced_key: s.replaced_key.unwrap_or_default(),
            }
        })
        .chain(padding)
        .collect();
    Batch {
        step: header.step,
        rank: header.rank,
        world_size: header.world_size,
        subset: header.subset.name().to_string(),
        tensors,
        samples: metas,
        cursor: header.cursor.clone(),
        dataset_version: header.dataset_version.clone(),
    }
}

/// Sequential writes into a tensor's bytes: a recycled buffer, or a shared file.
enum Sink<'a> {
    /// Appends to a buffer.
    Buffer(&'a mut Vec<u8>),
    /// Writes a file's mapped bytes from the start.
    File {
        /// The file's bytes.
        bytes: &'a mut [u8],
        /// Bytes written so far.
        at: usize,
    },
}

impl Sink<'_> {
    /// Writes `bytes` next.
    fn put(&mut self, bytes: &[u8]) {
        match self {
            Sink::Buffer(buf) => buf.extend_from_slice(bytes),
            Sink::File { bytes: dst, at } => {
                dst[*at..*at + bytes.len()].copy_from_slice(bytes);
                *at += bytes.len();
            }
        }
    }

    /// Writes zeros up to `end` bytes in all.
    fn zeros_to(&mut self, end: usize) {
        match self {
            Sink::Buffer(buf) => buf.resize(end, 0),
            Sink::File { bytes, at } => {
                bytes[*at..end].fill(0);
                *at = end;
            }
        }
    }
}

/// A uint8 tensor of `len` bytes that `fill` writes: into a file of the stream when one
/// takes it (the message then names the file), else into a recycled buffer.
fn u8_tensor(
    name: &str,
    shape: &[u64],
    len: usize,
    files: Option<&mut BatchFiles<'_>>,
    fill: &dyn Fn(&mut Sink),
) -> Tensor {
    let write = |bytes: &mut [u8]| {
        let mut sink = Sink::File { bytes, at: 0 };
        fill(&mut sink);
        debug_assert!(matches!(sink, Sink::File { at, .. } if at == len));
    };
    if let Some(file) = files.and_then(|f| f.write(len, write)) {
        return tensor_u8_in_file(name, shape, file);
    }
    let pool = BufferPool::batches();
    let mut data = pool.take(len);
    fill(&mut Sink::Buffer(&mut data));
    debug_assert_eq!(data.len(), len);
    tensor_u8(name, shape, pool.freeze(data))
}

/// Image slots of a multi-turn sample when the manifest does not give the longest
/// chain: the source and Pico-Banana's longest chain, 5 turns.
pub const UNKNOWN_CHAIN_SLOTS: usize = 6;

/// The bytes a batch of this shape will take, to refuse oversized requests up front and
/// to charge the memory budget. `subset_slots` is [`PrepareCtx::slots`] (0 for
/// multi-turn of unknown chain length, counted as [`UNKNOWN_CHAIN_SLOTS`]).
///
/// [`PrepareCtx::slots`]: super::prepare::PrepareCtx::slots
pub fn estimate_bytes(subset_slots: usize, batch: u64, target: (u32, u32)) -> u64 {
    let slots = match subset_slots {
        0 => UNKNOWN_CHAIN_SLOTS,
        n => n,
    };
    batch * slots as u64 * target.0 as u64 * target.1 as u64 * 3
}
