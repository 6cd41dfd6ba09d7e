//! The plan of one stream ([`Plan`]): built from the dataset as the plan sees it and a
//! stream spec, it answers which samples step `s` gives rank `r` of `W`, in closed
//! form, and issues and checks the cursors that resume it.
//!
//! Part of the plan stage: store -> shard reader -> **plan** -> prefetch ->
//! decode/augment -> collate -> gRPC. See [`crate::plan`] for how a step is planned.

use std::sync::Arc;

use crate::dataset::Subset;

use super::cursor::Cursor;
use super::epoch::EpochSource;
use super::error::PlanError;
use super::eval::{EvalOrder, Mode};
use super::input::{PlanDataset, PlanSubset};
use super::schedule::Schedule;
use super::spec::StreamSpec;
use super::step::{Consumed, SampleRef, StepPlan};

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

    /// True for an evaluation pass ([`eval`](super::eval)).
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
    use crate::plan::SpecError;

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
