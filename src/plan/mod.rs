//! The deterministic stream plan: which samples go to which global step and rank.
//!
//! Where it sits: store -> shard reader -> **plan** -> prefetch -> decode/augment ->
//! collate -> gRPC. The plan does no I/O. It sees each subset only as its sample count
//! and, optionally, each sample's edit category, both in canonical order; it names
//! samples by canonical ordinal ([`SampleRef`]) and the prefetch stage maps ordinals to
//! shard members. So the shard layout, the store, the worker pool and thread timing
//! cannot change what it says: the samples of step `s` at rank `r` of `W` are a pure
//! function of the dataset content, the [`StreamSpec`], `W` and `r`.
//!
//! How a step is planned:
//! 1. The curriculum (`schedule.rs`) gives global step `s` to exactly one subset, and
//!    says in closed form how many steps each subset had before `s`.
//! 2. Each subset is an endless sequence of equally long epochs (`epoch.rs`), each a
//!    fresh seeded permutation of its ordinals, with optional per-category resampling.
//!    Step `s` takes the next `global_batch` entries of its subset's stream, crossing
//!    into the next epoch where needed.
//! 3. Rank `r` of `W` gets the `r`-th contiguous slice of `global_batch / W` of them,
//!    so the world size never changes the global order (elastic training).
//! 4. A [`Cursor`] is a step plus fingerprints; resuming is O(1).
//!
//! # Curriculum file
//!
//! A whole [`StreamSpec`] in TOML ([`StreamSpec::from_toml_str`]), or the same without
//! `seed` and `global_batch` when those come from the command line
//! ([`CurriculumFile`]). Unknown keys are errors. Supervised fine-tuning first, then
//! preference pairs ramped in, then multi-turn chains:
//!
//! ```toml
//! seed = 17
//! global_batch = 256
//!
//! # Steps 0..20000: single-turn edits only.
//! [[curriculum]]
//! until_step = 20000
//! weights = { sft = 1.0 }
//!
//! # Steps 20000..60000: move to 30% sft / 70% preference over the first 5000 steps.
//! [[curriculum]]
//! until_step = 60000
//! ramp_steps = 5000
//! weights = { sft = 0.3, preference = 0.7 }
//!
//! # From step 60000 on, endless: bring in multi-turn chains over 2000 steps.
//! [[curriculum]]
//! ramp_steps = 2000
//! weights = { sft = 0.2, preference = 0.3, multi_turn = 0.5 }
//!
//! # Optional: rebalance edit categories inside sft and preference (default 1 each).
//! [category_weights]
//! text_symbol = 3.0
//! human_centric = 2.0
//! pixel_photometric = 0.5
//!
//! # Optional: block shuffle for high-latency stores (default: full permutation).
//! [shuffle]
//! block = 64
//! window = 16
//! ```
//!
//! Without `[[curriculum]]` the stream is one endless phase over every subset the
//! dataset holds, weighted by the subsets' sample counts.
//!
//! # Cursor token
//!
//! `ef1:<step>:<spec fingerprint>:<dataset fingerprint>`, e.g.
//! `ef1:120000:3f9a0c2b7d1e4a56:9b2e61c04d7f8a13`; see [`cursor`] for the fields.
//!
//! # Example
//!
//! ```
//! use editfeed::dataset::Subset;
//! use editfeed::plan::{Plan, PlanDataset, PlanSubset, StreamSpec};
//!
//! let dataset = PlanDataset {
//!     version: "v1".into(),
//!     subsets: vec![PlanSubset { subset: Subset::MultiTurn, len: 100, categories: None, selected: None }],
//! };
//! let plan = Plan::new(&dataset, &StreamSpec::new(7, 8)).unwrap();
//! let rank1 = plan.rank_batch(3, 1, 4).unwrap();
//! assert_eq!(rank1.samples, plan.global_batch(3).unwrap().samples[2..4]);
//! ```

pub mod cursor;
mod epoch;
pub mod eval;
mod render;
mod schedule;
pub mod select;
pub mod spec;
pub mod view;

use std::sync::Arc;

use crate::dataset::{Category, Subset};

pub use cursor::{Cursor, CursorError};
pub use epoch::{EPOCH_CACHE_SIZE, MAX_EPOCH_SLOTS};
pub use eval::{EvalOrder, Mode};
pub use render::render_plan;
pub use schedule::MAX_RAMP_SEGMENTS;
pub use select::{Selection, SelectionError};
pub use spec::{CurriculumFile, Phase, ShuffleSpec, SpecError, StreamSpec};
pub use view::MultiTurnView;

use epoch::EpochSource;
use schedule::Schedule;

/// Why a plan could not be built or a step could not be planned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// The stream spec is invalid, or does not fit the dataset.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A cursor was malformed or belongs to another stream.
    #[error(transparent)]
    Cursor(#[from] CursorError),
    /// The world size is zero or does not divide the global batch.
    #[error("world_size {world_size} must be positive and divide global_batch {global_batch}")]
    WorldSize {
        /// The world size asked for.
        world_size: u32,
        /// The spec's global batch size.
        global_batch: u32,
    },
    /// The rank is not below the world size.
    #[error("rank {rank} is out of range for world_size {world_size}")]
    Rank {
        /// The rank asked for.
        rank: u32,
        /// The world size.
        world_size: u32,
    },
    /// The step is at or past the end of a finite curriculum.
    #[error("step {step} is past the end of the stream (the last phase ends at step {end})")]
    EndOfStream {
        /// The step asked for.
        step: u64,
        /// The first step past the stream.
        end: u64,
    },
    /// The step is so large that its sample positions overflow 64 bits.
    #[error("step {step} is out of range: its sample positions overflow")]
    StepOutOfRange {
        /// The step asked for.
        step: u64,
    },
    /// The dataset lists a subset twice.
    #[error("the dataset lists subset {subset} twice")]
    DuplicateSubset {
        /// The repeated subset.
        subset: Subset,
    },
    /// A subset's category list does not have one entry per sample.
    #[error("subset {subset} has {len} samples but {categories} category entries")]
    CategoryCount {
        /// The subset.
        subset: Subset,
        /// Its sample count.
        len: u64,
        /// The length of its category list.
        categories: u64,
    },
    /// A subset or its resampled epoch is larger than the plan can index.
    #[error("subset {subset} would need {slots} samples per epoch, more than the {max} supported")]
    TooManySamples {
        /// The subset.
        subset: Subset,
        /// Samples (or resampled slots) per epoch.
        slots: u64,
        /// The limit.
        max: u64,
    },
    /// Category weights leave a scheduled subset with nothing to serve.
    #[error("category_weights leave subset {subset} with no samples in an epoch")]
    EmptyEpoch {
        /// The subset.
        subset: Subset,
    },
}

/// One subset as the plan sees it: a count of samples in canonical order, and
/// optionally each sample's edit category.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSubset {
    /// Which subset.
    pub subset: Subset,
    /// Samples in the subset; ordinals run `0..len` in canonical order.
    pub len: u64,
    /// The category of each canonical ordinal (`len` entries), `None` for a subset
    /// without categories (multi-turn). Only needed when `category_weights` are used;
    /// `None` entries are uncategorised samples (weight 1).
    pub categories: Option<Arc<[Option<Category>]>>,
    /// When the stream's selection narrowed the subset: which canonical ordinals it
    /// kept. `len` and `categories` then describe the kept samples only.
    pub selected: Option<Selected>,
}

/// The samples of a subset a selection kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected {
    /// The canonical ordinals kept, ascending (`len` of them).
    pub ordinals: Arc<[u64]>,
    /// In the multi-turn steps view, the turn of each kept entry (`len` of them, each
    /// chain's ordinal repeated once per turn in `ordinals`); `None` otherwise.
    pub turns: Option<Arc<[u8]>>,
    /// When none is kept: which filter removed the last ones, and how many it saw.
    pub emptied_by: Option<String>,
}

/// The dataset as the plan sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanDataset {
    /// The dataset's content hash; cursors are tied to it.
    pub version: String,
    /// The subsets present (any order; each at most once). Empty subsets count as
    /// absent.
    pub subsets: Vec<PlanSubset>,
}

/// One planned sample: a canonical ordinal of a subset, and where in the subset's
/// endless stream it was drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SampleRef {
    /// The subset.
    pub subset: Subset,
    /// The sample's canonical ordinal in its subset.
    pub ordinal: u64,
    /// The subset epoch it was drawn in (0-based).
    pub epoch: u64,
    /// Its position inside that epoch. `(subset, epoch, offset)` is unique even when
    /// category weights repeat a sample inside an epoch, so augmentation keys its random
    /// choices on it to give each copy its own crop and flip.
    pub offset: u64,
    /// In the multi-turn steps view, the turn of the chain this sample is (1-based);
    /// 0 for a whole sample.
    pub turn: u8,
}

/// The samples of one step, for the whole step (rank 0 of world size 1) or one rank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepPlan {
    /// The global step.
    pub step: u64,
    /// The subset every sample of the step comes from.
    pub subset: Subset,
    /// The rank this slice is for.
    pub rank: u32,
    /// The world size the slice was cut for.
    pub world_size: u32,
    /// The samples, in order.
    pub samples: Vec<SampleRef>,
    /// Rows of padding after the samples: in an evaluation pass, where the last step of
    /// a subset has fewer samples than the batch (0 in training).
    pub padding: u32,
}

/// Samples each subset has given out before some step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Consumed {
    samples: [u64; 3],
}

impl Consumed {
    /// Samples of `subset` given out.
    pub fn get(&self, subset: Subset) -> u64 {
        self.samples[subset.id() as usize]
    }

    /// Samples given out over all subsets.
    pub fn total(&self) -> u64 {
        self.samples.iter().sum()
    }
}

/// The plan of one stream: a pure function from (step, rank, world size) to samples.
/// Cheap to query from many threads at once (`&self`, `Send + Sync`).
#[derive(Debug)]
pub struct Plan {
    spec: StreamSpec,
    fingerprint: String,
    dataset_version: String,
    schedule: Schedule,
    /// By subset id; `None` for subsets never scheduled.
    sources: [Option<EpochSource>; 3],
    /// By subset id: the canonical ordinals a selection kept, which the epochs' draws
    /// index; `None` when the whole subset is drawn from.
    ordinals: [Option<Arc<[u64]>>; 3],
    /// By subset id: the turn of each drawn entry in the multi-turn steps view.
    turns: [Option<Arc<[u8]>>; 3],
    /// An evaluation pass: samples per subset (by id), past which a step is padding.
    pass: Option<[u64; 3]>,
}

impl Plan {
    /// Validates the spec against the dataset and builds the schedule. Epochs are built
    /// lazily, on first use.
    pub fn new(dataset: &PlanDataset, spec: &StreamSpec) -> Result<Plan, PlanError> {
        let mut present: [Option<&PlanSubset>; 3] = [None; 3];
        for s in &dataset.subsets {
            let slot = &mut present[s.subset.id() as usize];
            if slot.is_some() {
                return Err(PlanError::DuplicateSubset { subset: s.subset });
            }
            *slot = Some(s);
        }
        let emptied = present.map(|s| {
            s.and_then(|s| s.selected.as_ref())
                .and_then(|sel| sel.emptied_by.clone())
        });
        let ordinals = present.map(|s| {
            s.and_then(|s| s.selected.as_ref())
                .map(|sel| sel.ordinals.clone())
        });
        let turns = present.map(|s| {
            s.and_then(|s| s.selected.as_ref())
                .and_then(|sel| sel.turns.clone())
        });
        let present = present.map(|s| s.filter(|s| s.len > 0));
        let sizes = present.map(|s| s.map_or(0, |s| s.len));
        let phases = spec.resolve_selected(sizes, &emptied)?;
        let weights = spec.category_weight_array()?;
        let block = spec.shuffle.block_mode();
        let eval = spec.mode == Mode::Eval;
        let mut sources: [Option<EpochSource>; 3] = [None, None, None];
        for (id, subset) in present.iter().enumerate() {
            let Some(subset) = subset else { continue };
            if phases.iter().all(|p| p.probs[id] == 0.0) {
                continue;
            }
            let source = EpochSource::new(
                subset.subset,
                subset.len,
                subset.categories.as_deref(),
                &weights,
                spec.seed,
                block,
            )?;
            sources[id] = Some(match (eval, spec.order) {
                (true, EvalOrder::Canonical) => source.in_canonical_order(),
                _ => source,
            });
        }
        Ok(Plan {
            spec: spec.clone(),
            fingerprint: spec.fingerprint(),
            dataset_version: dataset.version.clone(),
            schedule: Schedule::new(&phases, spec.seed),
            sources,
            ordinals,
            turns,
            pass: eval.then_some(sizes),
        })
    }

    /// The same plan with more settings (e.g. transforms) mixed into its fingerprint,
    /// as [`StreamSpec::fingerprint_with`]; cursors it issues and accepts use it.
    pub fn with_fingerprint_extra(mut self, extra: &[u8]) -> Plan {
        self.fingerprint = self.spec.fingerprint_with(extra);
        self
    }

    /// The spec the plan was built from.
    pub fn spec(&self) -> &StreamSpec {
        &self.spec
    }

    /// The fingerprint cursors of this stream carry.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The dataset version the plan was built for.
    pub fn dataset_version(&self) -> &str {
        &self.dataset_version
    }

    /// True for an evaluation pass ([`eval`]).
    pub fn is_eval(&self) -> bool {
        self.pass.is_some()
    }

    /// The first step past the stream, if the curriculum's last phase has an end.
    pub fn end_step(&self) -> Option<u64> {
        self.schedule.end()
    }

    /// Samples per epoch of `subset` (after category resampling), or `None` if the
    /// curriculum never schedules it.
    pub fn epoch_len(&self, subset: Subset) -> Option<u64> {
        self.sources[subset.id() as usize]
            .as_ref()
            .map(EpochSource::epoch_len)
    }

    /// The subset global step `step` draws from.
    pub fn subset_at(&self, step: u64) -> Result<Subset, PlanError> {
        self.schedule
            .subset_at(step)
            .map(|id| Subset::ALL[id])
            .ok_or(PlanError::EndOfStream {
                step,
                end: self.schedule.end().unwrap_or(u64::MAX),
            })
    }

    /// The first step in `from..to` (`to` exclusive; `None`: to the stream's end) that
    /// draws from `subset`, or `None` if the curriculum does not reach it there.
    pub fn first_step_of(&self, subset: Subset, from: u64, to: Option<u64>) -> Option<u64> {
        self.schedule.first_step_of(subset.id() as usize, from, to)
    }

    /// Samples each subset gave out in steps `0..step` (in closed form; the cost does
    /// not depend on `step`). Past the end of a finite stream, the totals at its end.
    pub fn consumed_before(&self, step: u64) -> Consumed {
        let b = self.spec.global_batch as u64;
        Consumed {
            samples: self
                .schedule
                .steps_before(step)
                .map(|n| n.saturating_mul(b)),
        }
    }

    /// The sample at `position` of `subset`'s endless stream (position = samples of the
    /// subset given out before it), or `None` if the subset is never scheduled.
    pub fn sample_at(&self, subset: Subset, position: u64) -> Option<SampleRef> {
        let source = self.sources[subset.id() as usize].as_ref()?;
        let mut out = Vec::with_capacity(1);
        source.fill(position, 1, &mut out);
        self.to_canonical(subset, &mut out);
        out.pop()
    }

    /// Maps the draws of a selected subset, which index its kept samples, to
    /// canonical ordinals.
    fn to_canonical(&self, subset: Subset, samples: &mut [SampleRef]) {
        let id = subset.id() as usize;
        if let Some(turns) = &self.turns[id] {
            for s in samples.iter_mut() {
                s.turn = turns[s.ordinal as usize];
            }
        }
        if let Some(ordinals) = &self.ordinals[id] {
            for s in samples {
                s.ordinal = ordinals[s.ordinal as usize];
            }
        }
    }

    /// The whole global batch of `step`.
    pub fn global_batch(&self, step: u64) -> Result<StepPlan, PlanError> {
        self.rank_batch(step, 0, 1)
    }

    /// Rank `rank`'s slice of `step` when the global batch is split over `world_size`
    /// ranks: samples `rank * n .. (rank + 1) * n` of the global batch, with
    /// `n = global_batch / world_size`.
    pub fn rank_batch(&self, step: u64, rank: u32, world_size: u32) -> Result<StepPlan, PlanError> {
        let global_batch = self.spec.global_batch;
        if world_size == 0 || !global_batch.is_multiple_of(world_size) {
            return Err(PlanError::WorldSize {
                world_size,
                global_batch,
            });
        }
        if rank >= world_size {
            return Err(PlanError::Rank { rank, world_size });
        }
        let subset = self.subset_at(step)?;
        let id = subset.id() as usize;
        let per_rank = (global_batch / world_size) as u64;
        let step_start = self.schedule.steps_before(step)[id]
            .checked_mul(global_batch as u64)
            .filter(|p| p.checked_add(global_batch as u64).is_some())
            .ok_or(PlanError::StepOutOfRange { step })?;
        let start = step_start + rank as u64 * per_rank;
        let source = self.sources[id]
            .as_ref()
            .expect("scheduled subsets have epoch sources");
        // An evaluation pass ends at the subset's last sample; the rest is padding.
        let count = match self.pass {
            Some(lens) => lens[id].saturating_sub(start).min(per_rank),
            None => per_rank,
        };
        let mut samples = Vec::with_capacity(count as usize);
        source.fill(start, count, &mut samples);
        self.to_canonical(subset, &mut samples);
        Ok(StepPlan {
            step,
            subset,
            rank,
            world_size,
            samples,
            padding: (per_rank - count) as u32,
        })
    }

    /// A cursor at `step` of this stream.
    pub fn cursor(&self, step: u64) -> Cursor {
        Cursor::new(step, &self.fingerprint, &self.dataset_version)
    }

    /// The step to resume at, if `cursor` belongs to this stream; otherwise an error
    /// saying whether the spec or the dataset version differs.
    pub fn resume(&self, cursor: &Cursor) -> Result<u64, PlanError> {
        Ok(cursor.check(&self.fingerprint, &self.dataset_version)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(sizes: [u64; 3]) -> PlanDataset {
        PlanDataset {
            version: "test-v1".into(),
            subsets: Subset::ALL
                .iter()
                .zip(sizes)
                .filter(|(_, n)| *n > 0)
                .map(|(&subset, len)| PlanSubset {
                    subset,
                    len,
                    categories: None,
                    selected: None,
                })
                .collect(),
        }
    }

    #[test]
    fn plan_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Plan>();
    }

    #[test]
    fn steps_take_consecutive_stream_entries() {
        let plan = Plan::new(&dataset([50, 30, 20]), &StreamSpec::new(1, 4)).unwrap();
        for step in 0..200 {
            let batch = plan.global_batch(step).unwrap();
            let before = plan.consumed_before(step).get(batch.subset);
            for (i, s) in batch.samples.iter().enumerate() {
                assert_eq!(Some(*s), plan.sample_at(batch.subset, before + i as u64));
            }
        }
        let c = plan.consumed_before(200);
        assert_eq!(c.total(), 800);
        // Default curriculum: proportional to sample counts.
        assert!(
            (c.get(Subset::Sft) as f64 / 800.0 - 0.5).abs() < 0.02,
            "{c:?}"
        );
    }

    #[test]
    fn rank_errors_name_the_problem() {
        let plan = Plan::new(&dataset([10, 0, 0]), &StreamSpec::new(1, 6)).unwrap();
        let err = plan.rank_batch(0, 0, 4).unwrap_err().to_string();
        assert!(err.contains("world_size 4"), "{err}");
        let err = plan.rank_batch(0, 3, 3).unwrap_err().to_string();
        assert!(err.contains("rank 3"), "{err}");
        assert!(plan.rank_batch(0, 2, 3).is_ok());
    }

    #[test]
    fn dataset_problems_are_refused() {
        let mut ds = dataset([10, 10, 0]);
        ds.subsets.push(ds.subsets[0].clone());
        let err = Plan::new(&ds, &StreamSpec::new(0, 2)).unwrap_err();
        assert_eq!(
            err,
            PlanError::DuplicateSubset {
                subset: Subset::Sft
            }
        );
        let mut ds = dataset([10, 0, 0]);
        ds.subsets[0].categories = Some(vec![None; 9].into());
        let err = Plan::new(&ds, &StreamSpec::new(0, 2))
            .unwrap_err()
            .to_string();
        assert!(err.contains("9 category entries"), "{err}");
        let err = Plan::new(&dataset([0, 0, 0]), &StreamSpec::new(0, 2)).unwrap_err();
        assert_eq!(err, PlanError::Spec(SpecError::EmptyDataset));
    }

    #[test]
    fn finite_streams_end() {
        let spec = StreamSpec::from_toml_str(
            "seed = 0\nglobal_batch = 2\n[[curriculum]]\nuntil_step = 5\nweights = { sft = 1 }\n",
        )
        .unwrap();
        let plan = Plan::new(&dataset([10, 10, 0]), &spec).unwrap();
        assert_eq!(plan.end_step(), Some(5));
        assert!(plan.global_batch(4).is_ok());
        let err = plan.global_batch(5).unwrap_err().to_string();
        assert!(err.contains("past the end"), "{err}");
        assert_eq!(plan.epoch_len(Subset::Preference), None);
        assert_eq!(plan.consumed_before(100).get(Subset::Sft), 10);
    }

    #[test]
    fn cursors_tie_to_spec_and_dataset() {
        let ds = dataset([10, 0, 0]);
        let plan = Plan::new(&ds, &StreamSpec::new(1, 2)).unwrap();
        let token = plan.cursor(42).encode();
        assert_eq!(plan.resume(&Cursor::decode(&token).unwrap()), Ok(42));
        let other = Plan::new(&ds, &StreamSpec::new(2, 2)).unwrap();
        let err = other.resume(&plan.cursor(42)).unwrap_err().to_string();
        assert!(err.contains("stream spec"), "{err}");
        let with_aug = Plan::new(&ds, &StreamSpec::new(1, 2))
            .unwrap()
            .with_fingerprint_extra(b"size=512");
        assert!(with_aug.resume(&plan.cursor(1)).is_err());
    }
}
