//! Evaluation passes (`mode = "eval"`): one finite pass over the selected samples.
//!
//! An evaluation stream visits every sample of its selection exactly once, subset by
//! subset (single-turn, then preference, then multi-turn; `select.subsets` narrows
//! them), in canonical order or, with `order = "seeded"`, in one permutation drawn from
//! the seed. Each subset takes `ceil(n / global_batch)` global steps; the last step of a
//! subset is cut short and the serving layer pads it to the batch shape with a `valid`
//! mask, so that every rank of a data-parallel job sees the same number of steps. Rank
//! `r` of `W` gets the `r`-th slice of each global batch, as in training, so across the
//! ranks every sample comes exactly once and the world size does not change the order.
//!
//! ```toml
//! seed = 0
//! global_batch = 64
//! mode = "eval"
//! order = "canonical"          # or "seeded"
//!
//! [select]
//! split = "test"
//! subsets = ["sft"]
//! ```
//!
//! Curricula, category weights and block shuffling are training settings: an
//! evaluation spec that sets one is refused by name.

use serde::{Deserialize, Serialize};

use super::spec::{nothing_left, ResolvedPhase, SpecError, StreamSpec};
use crate::dataset::Subset;

/// What a stream is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Endless, shuffled, augmented epochs along the curriculum (the default).
    #[default]
    Train,
    /// One pass over the selection, each sample once, then the stream ends.
    Eval,
}

/// The order of an evaluation pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalOrder {
    /// Each subset's selected samples in canonical order (the default).
    #[default]
    Canonical,
    /// One permutation of each subset drawn from the seed.
    Seeded,
}

impl Mode {
    /// True for training streams.
    pub fn is_train(&self) -> bool {
        *self == Mode::Train
    }
}

impl EvalOrder {
    /// True for canonical order.
    pub fn is_canonical(&self) -> bool {
        *self == EvalOrder::Canonical
    }
}

/// Refuses the spec's settings that do not apply to its mode.
pub(crate) fn check_mode(spec: &StreamSpec) -> Result<(), SpecError> {
    match spec.mode {
        Mode::Train if !spec.order.is_canonical() => Err(SpecError::OrderOutsideEval),
        Mode::Train => Ok(()),
        Mode::Eval => {
            let training = [
                ("curriculum", !spec.curriculum.is_empty()),
                ("category_weights", !spec.category_weights.is_empty()),
                ("shuffle", !spec.shuffle.is_full()),
            ];
            match training.iter().find(|(_, set)| *set) {
                Some((field, _)) => Err(SpecError::TrainingOnly { field }),
                None => Ok(()),
            }
        }
    }
}

/// The schedule of an evaluation pass, as one-subset phases: each subset with samples
/// (`sizes` by subset id) gets `ceil(n / global_batch)` steps, in subset order. When
/// nothing is left, the error says which filter emptied each subset.
pub(crate) fn eval_phases(
    sizes: [u64; 3],
    global_batch: u32,
    emptied: &[Option<String>; 3],
) -> Result<Vec<ResolvedPhase>, SpecError> {
    let mut phases = Vec::new();
    let mut end = 0u64;
    for subset in Subset::ALL {
        let id = subset.id() as usize;
        if sizes[id] == 0 {
            continue;
        }
        end += sizes[id].div_ceil(global_batch as u64);
        let mut probs = [0.0; 3];
        probs[id] = 1.0;
        phases.push(ResolvedPhase {
            until_step: Some(end),
            ramp_steps: 0,
            probs,
        });
    }
    if phases.is_empty() {
        return Err(nothing_left(emptied));
    }
    Ok(phases)
}

/// The mode's line of the spec's canonical text (empty for training, so that training
/// fingerprints are unchanged).
pub(crate) fn canonical(spec: &StreamSpec) -> String {
    match spec.mode {
        Mode::Train => String::new(),
        Mode::Eval => format!("mode=eval order={:?}\n", spec.order),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_subset_gets_its_ceiling_of_steps_in_order() {
        let phases = eval_phases([10, 0, 7], 4, &[None, None, None]).unwrap();
        let ends: Vec<_> = phases.iter().map(|p| p.until_step).collect();
        assert_eq!(ends, [Some(3), Some(5)]);
        assert_eq!(phases[0].probs, [1.0, 0.0, 0.0]);
        assert_eq!(phases[1].probs, [0.0, 0.0, 1.0]);
    }

    #[test]
    fn training_settings_are_refused_by_name() {
        let mut spec = StreamSpec::new(0, 4);
        spec.mode = Mode::Eval;
        assert!(check_mode(&spec).is_ok());
        spec.category_weights.insert("stylistic".into(), 2.0);
        let err = check_mode(&spec).unwrap_err().to_string();
        assert!(err.contains("category_weights"), "{err}");
        let mut spec = StreamSpec::new(0, 4);
        spec.order = EvalOrder::Seeded;
        let err = check_mode(&spec).unwrap_err().to_string();
        assert!(err.contains("order"), "{err}");
    }

    #[test]
    fn an_empty_pass_names_what_emptied_it() {
        let why = Some("select.split = \"test\" left none of the 5 it was given".into());
        let err = eval_phases([0, 0, 0], 4, &[why, None, None])
            .unwrap_err()
            .to_string();
        assert!(err.contains("sft: select.split"), "{err}");
    }
}
