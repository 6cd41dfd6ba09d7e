//! The checks of a stream spec that need no dataset ([`StreamSpec::validate`]): phase
//! ends and ramps, subset and category weights, the selection's names and bounds, the
//! shuffle mode and the evaluation mode. Checks against the dataset happen when the
//! spec is resolved ([`super::resolve`]).
//!
//! Part of the plan stage: store -> shard reader -> **plan** (spec + dataset -> schedule
//! and epochs) -> prefetch -> decode/augment -> collate -> gRPC.

use std::collections::BTreeMap;

use crate::dataset::{Category, Subset};
use crate::plan::eval::check_mode;

use super::error::SpecError;
use super::stream_spec::{ShuffleSpec, StreamSpec};

/// The most phases a curriculum may have. Real curricula have a handful; the bound
/// keeps one request's plan (built per stream) small and gives a clear
/// INVALID_ARGUMENT where a 30,000-phase spec used to be taken as it came.
pub const MAX_PHASES: usize = 1024;

impl ShuffleSpec {
    fn validate(&self) -> Result<(), SpecError> {
        if self.block == Some(0) {
            return Err(SpecError::BadShuffle {
                field: "block",
                reason: "must be positive",
            });
        }
        match (self.block, self.window) {
            (_, Some(0)) => Err(SpecError::BadShuffle {
                field: "window",
                reason: "must be positive",
            }),
            (None, Some(_)) => Err(SpecError::BadShuffle {
                field: "window",
                reason: "only applies with shuffle.block",
            }),
            _ => Ok(()),
        }
    }
}

fn check_weight(field: impl FnOnce() -> String, value: f64) -> Result<(), SpecError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(SpecError::BadWeight {
            field: field(),
            value,
        })
    }
}

/// Parses one weights map into weights by subset id, rejecting unknown and repeated
/// names and bad values.
pub(super) fn subset_weights(
    field: &str,
    weights: &BTreeMap<String, f64>,
) -> Result<[Option<f64>; 3], SpecError> {
    let mut out = [None; 3];
    for (name, &value) in weights {
        let subset = Subset::from_name(name).ok_or_else(|| SpecError::UnknownSubset {
            field: field.to_string(),
            name: name.clone(),
        })?;
        check_weight(|| format!("{field}.{name}"), value)?;
        let slot = &mut out[subset.id() as usize];
        if slot.is_some() {
            return Err(SpecError::DuplicateSubset {
                field: field.to_string(),
                name: name.clone(),
                subset,
            });
        }
        *slot = Some(value);
    }
    Ok(out)
}

impl StreamSpec {
    /// Checks everything that does not need the dataset.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.global_batch == 0 {
            return Err(SpecError::ZeroGlobalBatch);
        }
        if self.curriculum.len() > MAX_PHASES {
            return Err(SpecError::TooManyPhases {
                phases: self.curriculum.len(),
            });
        }
        let mut start = 0u64;
        let last = self.curriculum.len().saturating_sub(1);
        for (i, phase) in self.curriculum.iter().enumerate() {
            let field = format!("curriculum[{i}].weights");
            let weights = subset_weights(&field, &phase.weights)?;
            if weights.iter().flatten().sum::<f64>() <= 0.0 {
                return Err(SpecError::ZeroWeightSum { phase: i });
            }
            if i == 0 && phase.ramp_steps > 0 {
                return Err(SpecError::RampInFirstPhase);
            }
            match phase.until_step {
                None if i != last => return Err(SpecError::MissingUntilStep { phase: i }),
                None => {
                    // An endless phase has room for any ramp that does not overflow.
                    if start.checked_add(phase.ramp_steps).is_none() {
                        return Err(SpecError::RampTooLong {
                            phase: i,
                            ramp_steps: phase.ramp_steps,
                            phase_len: u64::MAX - start,
                        });
                    }
                }
                Some(until_step) if until_step <= start => {
                    return Err(SpecError::PhaseEndNotIncreasing {
                        phase: i,
                        until_step,
                        start,
                    })
                }
                Some(until_step) => {
                    if phase.ramp_steps > until_step - start {
                        return Err(SpecError::RampTooLong {
                            phase: i,
                            ramp_steps: phase.ramp_steps,
                            phase_len: until_step - start,
                        });
                    }
                    start = until_step;
                }
            }
        }
        self.category_weight_array()?;
        self.select.validate()?;
        self.shuffle.validate()?;
        check_mode(self)
    }

    /// Category weights by `Category::id()`, defaulting to 1.
    pub(crate) fn category_weight_array(&self) -> Result<[f64; 8], SpecError> {
        let mut out = [1.0; 8];
        for (name, &value) in &self.category_weights {
            let category = Category::from_name(name)
                .ok_or_else(|| SpecError::UnknownCategory { name: name.clone() })?;
            check_weight(|| format!("category_weights.{name}"), value)?;
            out[category.id() as usize] = value;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::spec::fixtures::parse;
    use crate::plan::spec::Phase;

    #[test]
    fn validation_names_the_field() {
        let mut spec = StreamSpec::new(1, 0);
        assert_eq!(spec.validate(), Err(SpecError::ZeroGlobalBatch));
        spec.global_batch = 8;
        spec.curriculum = vec![
            Phase {
                until_step: Some(10),
                weights: [("sft".to_string(), 1.0)].into(),
                ramp_steps: 0,
            },
            Phase {
                until_step: Some(10),
                weights: [("video".to_string(), 1.0)].into(),
                ramp_steps: 0,
            },
        ];
        let err = spec.validate().unwrap_err().to_string();
        assert!(
            err.contains("curriculum[1].weights") && err.contains("video"),
            "{err}"
        );
        spec.curriculum[1].weights = [("sft".to_string(), -1.0)].into();
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.contains("curriculum[1].weights.sft"), "{err}");
        spec.curriculum[1].weights = [("sft".to_string(), 1.0)].into();
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.contains("curriculum[1].until_step"), "{err}");
        spec.curriculum[1].until_step = Some(20);
        spec.curriculum[1].ramp_steps = 11;
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.contains("curriculum[1].ramp_steps"), "{err}");
        spec.curriculum[1].ramp_steps = 10;
        spec.validate().unwrap();
        spec.curriculum[0].until_step = None;
        assert_eq!(
            spec.validate(),
            Err(SpecError::MissingUntilStep { phase: 0 })
        );
        spec.curriculum[0].until_step = Some(10);
        spec.curriculum[0].ramp_steps = 1;
        assert_eq!(spec.validate(), Err(SpecError::RampInFirstPhase));
        spec.curriculum[0].ramp_steps = 0;
        spec.curriculum[0].weights = [("sft".to_string(), 0.0)].into();
        assert_eq!(spec.validate(), Err(SpecError::ZeroWeightSum { phase: 0 }));
        spec.curriculum[0].weights = [("sft".into(), 1.0), ("single_turn".into(), 1.0)].into();
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.contains("single_turn"), "{err}");
    }

    #[test]
    fn category_and_shuffle_errors() {
        let err = parse("seed = 1\nglobal_batch = 8\n[category_weights]\ncolour = 1.0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
        let err = parse("seed = 1\nglobal_batch = 8\n[category_weights]\nstylistic = nan\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("category_weights.stylistic"), "{err}");
        let err = parse("seed = 1\nglobal_batch = 8\nshuffle = { window = 4 }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("shuffle.window"), "{err}");
        let err = parse("seed = 1\nglobal_batch = 8\nshuffle = { block = 0 }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("shuffle.block"), "{err}");
    }
}
