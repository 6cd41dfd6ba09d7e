//! Prepares one planned sample on a worker thread: one range read, the zstd frame
//! decoded, the schema applied, the images the subset needs chosen, then decoded and
//! augmented into the sample's own pixel buffer (or passed through encoded).
//!
//! A sample that cannot be read or decoded is replaced by a deterministic rule so batch
//! shapes hold: the next ordinal of the same subset in canonical order (wrapping), tried
//! up to [`MAX_REPLACEMENTS`] times; the batch metadata names the replaced key. A
//! failing object store is not a bad sample: it ends the stream with the store's error
//! (replacing samples would change the stream's bytes and hit the same store).
//!
//! For datasets in object stores, the stream's [`ReadAhead`] has usually fetched the
//! sample's frame already; the worker then only decodes it.

use bytes::Bytes;

use super::augment::{self, AugmentSpec, SampleRng, Texts};
use super::buffers::BufferPool;
use super::timing::{self, Stage};
use crate::dataset::reader::ReadAhead;
use crate::dataset::sample::{Role, Sample, SampleImage};
use crate::dataset::{Dataset, DatasetError, Subset};
use crate::plan::{Plan, SampleRef};
use crate::rng::{Purpose, Rng};

/// How many following samples are tried before a batch fails.
pub const MAX_REPLACEMENTS: u64 = 16;

/// What the trainer gets: decoded pixels or the encoded bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// uint8 HWC pixels at the target size.
    Pixels,
    /// The stored encoded bytes.
    Encoded,
}

/// Everything a worker needs to prepare samples of one stream.
#[derive(Clone)]
pub struct PrepareCtx {
    /// The dataset being served.
    pub dataset: std::sync::Arc<Dataset>,
    /// The stream's seed.
    pub seed: u64,
    /// Augmentation settings.
    pub augment: AugmentSpec,
    /// Pixels or encoded bytes.
    pub kind: OutputKind,
    /// Samples of this stream fetched ahead in plan order (object stores only).
    pub read_ahead: Option<std::sync::Arc<ReadAhead>>,
    /// Multi-turn chains are served one turn per sample ([`crate::plan::view`]).
    pub multi_turn_steps: bool,
    /// Replace a sample that fails by the next one. Off in evaluation passes, where a
    /// replacement could be a sample outside the selection, or one served twice: a
    /// failed sample ends the stream instead.
    pub replace_failed: bool,
}

impl PrepareCtx {
    /// Starts reading the stream's samples ahead of the workers when its dataset is in
    /// an object store: the steps `start_step`, `start_step + stride`, ... before
    /// `end_step` of this rank's plan, keeping what
    /// [`StoreConfig`](crate::store::StoreConfig)'s `read_ahead_*` allow in flight.
    /// Local datasets need none (a positioned read costs microseconds).
    #[allow(clippy::too_many_arguments)]
    pub fn start_read_ahead(
        &mut self,
        plan: &std::sync::Arc<Plan>,
        rank: u32,
        world_size: u32,
        start_step: u64,
        stride: u64,
        end_step: Option<u64>,
        prefetch_batches: usize,
    ) {
        let plan = plan.clone();
        let stride = stride.max(1);
        // The read-ahead walks positions 0, 1, ... of the stream; position i is step
        // start_step + i * stride.
        let positions = end_step.map(|e| e.saturating_sub(start_step).div_ceil(stride));
        self.read_ahead =
            self.dataset
                .read_ahead(0, positions, prefetch_batches as u64 + 1, move |i| {
                    let step = i.checked_mul(stride)?.checked_add(start_step)?;
                    plan.rank_batch(step, rank, world_size)
                        .ok()
                        .map(|b| b.samples.iter().map(|s| (s.subset, s.ordinal)).collect())
                });
    }

    /// Reads one sample: from the read-ahead when it holds it, else from the store.
    fn read_sample(&self, subset: Subset, ordinal: u64) -> Result<Sample, DatasetError> {
        if let Some(frame) = self
            .read_ahead
            .as_ref()
            .and_then(|r| r.take(subset, ordinal))
        {
            let raw = self.dataset.decode_raw(subset, ordinal, &frame?)?;
            return self.dataset.to_sample(subset, ordinal, raw);
        }
        self.dataset.read_sample(subset, ordinal)
    }

    /// Image slots per sample of a subset's batches: 2 for single-turn, 3 for
    /// preference, and for multi-turn the source plus the dataset's longest chain (so
    /// every rank and step has one shape); 0 when the dataset does not say.
    pub fn slots(&self, subset: Subset) -> usize {
        match subset {
            Subset::Sft => 2,
            Subset::Preference => 3,
            Subset::MultiTurn if self.multi_turn_steps => 2,
            Subset::MultiTurn => {
                let turns = self
                    .dataset
                    .manifest()
                    .subsets
                    .get(&subset)
                    .map_or(0, |s| s.max_turns);
                if turns == 0 {
                    0
                } else {
                    turns as usize + 1
                }
            }
        }
    }
}

/// One prepared sample.
#[derive(Debug)]
pub struct Prepared {
    /// The sample actually used (the planned one or its replacement).
    pub key: String,
    /// Canonical ordinal of the sample used.
    pub ordinal: u64,
    /// The planned sample's epoch.
    pub epoch: u64,
    /// The planned key when this sample replaced it.
    pub replaced_key: Option<String>,
    /// Metadata of the sample used.
    pub edit_type: String,
    /// The category name, or empty.
    pub category: String,
    /// Instructions after any direction swap.
    pub texts: Texts,
    /// Whether the images were flipped.
    pub flipped: bool,
    /// Multi-turn steps view: the chain's turn this sample is (1-based), else 0.
    pub turn: u32,
    /// Multi-turn: the chain's number of turns (also in the steps view), else 0.
    pub chain_turns: u32,
    /// Images in slot order (source first).
    pub slots: usize,
    /// Pixels: `slots * h * w * 3` bytes. Encoded: empty.
    pub pixels: Vec<u8>,
    /// Encoded: the images' bytes in slot order. Pixels: empty.
    pub encoded: Vec<Bytes>,
    /// Seconds spent reading the sample (range read, frame decode, schema).
    pub read_seconds: f64,
    /// Seconds spent decoding and augmenting its images.
    pub augment_seconds: f64,
}

/// Why a sample could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// Reading the sample failed.
    #[error(transparent)]
    Read(#[from] DatasetError),
    /// Decoding or augmenting an image failed.
    #[error("shard {shard}, sample {key}: {source}")]
    Image {
        shard: String,
        key: String,
        #[source]
        source: augment::AugmentError,
    },
    /// A sample of an evaluation pass failed; passes do not replace samples.
    #[error("subset {subset}, sample {key} (ordinal {ordinal}) failed, and an evaluation pass does not replace samples: {last}")]
    NotReplaced {
        subset: Subset,
        ordinal: u64,
        key: String,
        last: String,
    },
    /// The planned sample and every replacement failed.
    #[error(
        "subset {subset}: sample {ordinal} and the {after} after it all failed; last error: {last}"
    )]
    Exhausted {
        subset: Subset,
        ordinal: u64,
        /// The replacements tried: [`MAX_REPLACEMENTS`], or fewer in a smaller subset.
        after: u64,
        last: String,
    },
}

/// The images a subset's batch holds per sample, in slot order (for preference, the
/// chosen image and one rejected image drawn with [`Purpose::Rejected`]).
pub fn select_images<'a>(sample: &'a Sample, seed: u64, sref: &SampleRef) -> Vec<&'a SampleImage> {
    let src = sample.image(Role::Source);
    let mut out: Vec<&SampleImage> = src.into_iter().collect();
    match sample.subset() {
        Subset::Sft => out.extend(sample.image(Role::Edit)),
        Subset::Preference => {
            out.extend(sample.image(Role::Chosen));
            let rejected = sample.rejected();
            if !rejected.is_empty() {
                let mut rng = Rng::keyed(
                    seed,
                    sref.subset.id() as u64,
                    sref.epoch,
                    sref.ordinal,
                    Purpose::Rejected,
                );
                out.push(rejected[rng.below(rejected.len() as u64) as usize]);
            }
        }
        Subset::MultiTurn => out.extend(sample.turns()),
    }
    out
}

/// Prepares the planned sample, replacing it by the rule above if it fails.
pub fn prepare(
    ctx: &PrepareCtx,
    sref: &SampleRef,
    target: (u32, u32),
) -> Result<Prepared, PrepareError> {
    let len = ctx.dataset.len(sref.subset);
    let mut last = String::new();
    let after = if ctx.replace_failed {
        MAX_REPLACEMENTS.min(len.saturating_sub(1))
    } else {
        0
    };
    for k in 0..=after {
        let ordinal = (sref.ordinal + k) % len;
        let attempt = SampleRef { ordinal, ..*sref };
        match prepare_one(ctx, &attempt, target) {
            Ok(mut p) => {
                if k > 0 {
                    p.replaced_key = Some(
                        ctx.dataset
                            .key_of(sref.subset, sref.ordinal)
                            .unwrap_or_default(),
                    );
                }
                return Ok(p);
            }
            Err(PrepareError::Read(e)) if e.ends_the_stream() => {
                tracing::warn!(subset = %sref.subset, ordinal, error = %e, "store failed, ending the stream");
                return Err(PrepareError::Read(e));
            }
            Err(e) => {
                // A dataset rewritten in place looks like corrupt samples: tell them
                // apart before replacing anything.
                if matches!(e, PrepareError::Read(_)) {
                    if let Err(changed) = ctx.dataset.check_unchanged() {
                        tracing::warn!(subset = %sref.subset, ordinal, error = %changed, "ending the stream");
                        return Err(PrepareError::Read(changed));
                    }
                }
                last = e.to_string();
                if !ctx.replace_failed {
                    break;
                }
                let key = ctx.dataset.key_of(sref.subset, ordinal).unwrap_or_default();
                tracing::warn!(subset = %sref.subset, ordinal, key, error = %e, "sample skipped, using the next one");
                crate::metrics::sample_replaced();
            }
        }
    }
    if !ctx.replace_failed {
        return Err(PrepareError::NotReplaced {
            subset: sref.subset,
            ordinal: sref.ordinal,
            key: ctx
                .dataset
                .key_of(sref.subset, sref.ordinal)
                .unwrap_or_default(),
            last,
        });
    }
    Err(PrepareError::Exhausted {
        subset: sref.subset,
        ordinal: sref.ordinal,
        after,
        last,
    })
}

fn prepare_one(
    ctx: &PrepareCtx,
    sref: &SampleRef,
    target: (u32, u32),
) -> Result<Prepared, PrepareError> {
    let started = std::time::Instant::now();
    let sample = ctx.read_sample(sref.subset, sref.ordinal)?;
    timing::record(Stage::Read, started);
    let read_seconds = started.elapsed().as_secs_f64();
    let mut images = select_images(&sample, ctx.seed, sref);
    let chain_turns = match sample.subset() {
        Subset::MultiTurn => images.len().saturating_sub(1) as u32,
        _ => 0,
    };
    let mut texts = Texts {
        text: sample.meta.text.clone(),
        summarized_text: sample.meta.summarized_text.clone(),
        turns: sample.meta.turns.clone(),
    };
    // The steps view: images t-1 and t, instruction t (a replacement chain shorter
    // than the planned turn gives its last turn).
    let turn = (sref.turn as usize).min(images.len().saturating_sub(1)) as u32;
    if sref.turn > 0 && turn == 0 {
        // A replacement chain without turns has no step to give.
        return Err(PrepareError::Image {
            shard: String::new(),
            key: sample.key.clone(),
            source: augment::AugmentError::NoImages,
        });
    }
    if sref.turn > 0 {
        let t = turn as usize;
        images = images[t - 1..=t].to_vec();
        texts = Texts {
            text: sample.meta.turns.get(t - 1).cloned().unwrap_or_default(),
            summarized_text: None,
            turns: Vec::new(),
        };
    }
    let mut prepared = Prepared {
        key: sample.key.clone(),
        ordinal: sref.ordinal,
        epoch: sref.epoch,
        replaced_key: None,
        edit_type: sample.meta.edit_type.clone().unwrap_or_default(),
        category: sample
            .meta
            .category
            .map(|c| c.name().to_string())
            .unwrap_or_default(),
        texts: texts.clone(),
        flipped: false,
        turn,
        chain_turns,
        slots: images.len(),
        pixels: Vec::new(),
        encoded: Vec::new(),
        read_seconds,
        augment_seconds: 0.0,
    };
    match ctx.kind {
        OutputKind::Encoded => prepared.encoded = images.iter().map(|i| i.bytes.clone()).collect(),
        OutputKind::Pixels => {
            let (w, h) = target;
            // augment::process writes every byte, so a reused buffer needs no zeroing.
            prepared.pixels =
                BufferPool::samples().take_to_overwrite(images.len() * (w * h * 3) as usize);
            let started = std::time::Instant::now();
            let rng = SampleRng {
                seed: ctx.seed,
                subset: sref.subset,
                epoch: sref.epoch,
                // Each step of a chain draws its own crop and flip.
                ordinal: if sref.turn > 0 {
                    sref.ordinal << 8 | sref.turn as u64
                } else {
                    sref.ordinal
                },
            };
            let out = augment::process(
                &images,
                &texts,
                &ctx.augment,
                rng,
                target,
                &mut prepared.pixels,
            )
            .map_err(|source| PrepareError::Image {
                shard: ctx
                    .dataset
                    .locate(sref.subset, sref.ordinal)
                    .ok()
                    .and_then(|l| {
                        ctx.dataset
                            .shards(sref.subset)
                            .ok()
                            .map(|s| s[l.shard].path.clone())
                    })
                    .unwrap_or_default(),
                key: sample.key.clone(),
                source,
            })?;
            timing::record(Stage::Augment, started);
            prepared.augment_seconds = started.elapsed().as_secs_f64();
            prepared.texts = out.texts;
            prepared.flipped = out.flipped;
        }
    }
    Ok(prepared)
}
