//! A stream spec checked against the dataset: each curriculum phase's weights turned
//! into mixing probabilities by subset ([`ResolvedPhase`]), with the default
//! curriculum filled in, and errors naming the weight whose subset the dataset (or
//! the stream's selection) leaves empty.
//!
//! Part of the plan stage: store -> shard reader -> **plan** (spec + dataset -> schedule
//! and epochs) -> prefetch -> decode/augment -> collate -> gRPC.

use crate::dataset::Subset;
use crate::plan::eval::{eval_phases, Mode};

use super::error::SpecError;
use super::stream_spec::StreamSpec;
use super::validate::subset_weights;

/// A phase after checking against the dataset: mixing probabilities by subset id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResolvedPhase {
    pub(crate) until_step: Option<u64>,
    pub(crate) ramp_steps: u64,
    /// Normalised to sum to 1, indexed by `Subset::id()`.
    pub(crate) probs: [f64; 3],
}

impl StreamSpec {
    /// The curriculum checked against the subset sizes the dataset holds (`sizes` by
    /// subset id, 0 when absent), with the default curriculum filled in.
    #[cfg(test)]
    pub(crate) fn resolve(&self, sizes: [u64; 3]) -> Result<Vec<ResolvedPhase>, SpecError> {
        self.resolve_selected(sizes, &[None, None, None])
    }

    /// The curriculum checked against the subset sizes the dataset holds (`sizes` by
    /// subset id, 0 when absent), with the default curriculum filled in; `emptied` says,
    /// by subset id, which filter of the selection left a subset without samples.
    pub(crate) fn resolve_selected(
        &self,
        sizes: [u64; 3],
        emptied: &[Option<String>; 3],
    ) -> Result<Vec<ResolvedPhase>, SpecError> {
        self.validate()?;
        if self.mode == Mode::Eval {
            return eval_phases(sizes, self.global_batch, emptied);
        }
        if self.curriculum.is_empty() {
            let total: u64 = sizes.iter().sum();
            if total == 0 {
                return Err(nothing_left(emptied));
            }
            return Ok(vec![ResolvedPhase {
                until_step: None,
                ramp_steps: 0,
                probs: sizes.map(|n| n as f64 / total as f64),
            }]);
        }
        let mut phases = Vec::with_capacity(self.curriculum.len());
        for (i, phase) in self.curriculum.iter().enumerate() {
            let field = format!("curriculum[{i}].weights");
            let weights = subset_weights(&field, &phase.weights)?;
            for subset in Subset::ALL {
                let w = weights[subset.id() as usize].unwrap_or(0.0);
                if w > 0.0 && sizes[subset.id() as usize] == 0 {
                    let name = phase
                        .weights
                        .iter()
                        .find(|(k, _)| Subset::from_name(k) == Some(subset))
                        .map_or(subset.name(), |(k, _)| k.as_str());
                    let field = format!("{field}.{name}");
                    if let Some(why) = &emptied[subset.id() as usize] {
                        return Err(SpecError::SelectionEmptied {
                            field,
                            subset,
                            why: why.clone(),
                        });
                    }
                    return Err(SpecError::SubsetNotInDataset { field, subset });
                }
            }
            let w = weights.map(|w| w.unwrap_or(0.0));
            let sum: f64 = w.iter().sum();
            phases.push(ResolvedPhase {
                until_step: phase.until_step,
                ramp_steps: phase.ramp_steps,
                probs: w.map(|w| w / sum),
            });
        }
        Ok(phases)
    }
}

/// Why nothing is left to schedule: the filters that emptied each subset (by id), or
/// an empty dataset when no filter did.
pub(crate) fn nothing_left(emptied: &[Option<String>; 3]) -> SpecError {
    if emptied.iter().all(Option::is_none) {
        return SpecError::EmptyDataset;
    }
    let why: Vec<String> = Subset::ALL
        .iter()
        .zip(emptied)
        .filter_map(|(s, w)| w.as_ref().map(|w| format!("{s}: {w}")))
        .collect();
    SpecError::NothingSelected {
        why: why.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::spec::fixtures::{parse, EXAMPLE};

    #[test]
    fn example_parses_and_resolves() {
        let spec = parse(EXAMPLE).unwrap();
        assert_eq!(spec.curriculum.len(), 3);
        assert_eq!(spec.shuffle.block_mode(), Some((256, 16)));
        let phases = spec.resolve([10, 10, 10]).unwrap();
        assert_eq!(phases[1].probs, [0.3, 0.7, 0.0]);
        assert_eq!(phases[2].until_step, None);
    }

    #[test]
    fn dataset_checks_name_the_missing_subset() {
        let spec = parse(
            "seed = 1\nglobal_batch = 8\n[[curriculum]]\nweights = { sft = 1.0, dpo = 1.0, multi_turn = 0.0 }\n",
        )
        .unwrap();
        let err = spec.resolve([5, 0, 0]).unwrap_err().to_string();
        assert!(err.contains("curriculum[0].weights.dpo"), "{err}");
        // A zero weight for an absent subset is fine.
        let phases = spec.resolve([5, 5, 0]).unwrap();
        assert_eq!(phases[0].probs, [0.5, 0.5, 0.0]);
    }

    #[test]
    fn default_curriculum_follows_sample_counts() {
        let phases = StreamSpec::new(0, 4).resolve([30, 0, 10]).unwrap();
        assert_eq!(phases.len(), 1);
        assert_eq!(phases[0].probs, [0.75, 0.0, 0.25]);
        assert_eq!(
            StreamSpec::new(0, 4).resolve([0, 0, 0]),
            Err(SpecError::EmptyDataset)
        );
    }
}
