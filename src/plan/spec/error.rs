//! Why a stream spec or curriculum file was rejected ([`SpecError`]); each message
//! names the field.
//!
//! Part of the plan stage: store -> shard reader -> **plan** (spec + dataset -> schedule
//! and epochs) -> prefetch -> decode/augment -> collate -> gRPC.

use crate::dataset::Subset;

use super::validate::MAX_PHASES;
use crate::plan::select::SelectionError;

/// Why a stream spec or curriculum file was rejected. Each message names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// The TOML text did not parse or has an unknown or misspelt key (or the file
    /// could not be read).
    #[error("invalid stream spec: {message}")]
    Toml {
        /// The parser's message, which names the bad key and its position.
        message: String,
    },
    /// `global_batch` is zero.
    #[error("global_batch must be positive")]
    ZeroGlobalBatch,
    /// The curriculum has more phases than [`MAX_PHASES`].
    #[error("curriculum: {phases} phases, at most {MAX_PHASES} allowed")]
    TooManyPhases {
        /// Phases given.
        phases: usize,
    },
    /// A weights map names something that is not a subset.
    #[error("{field}: unknown subset `{name}` (expected sft, preference or multi_turn)")]
    UnknownSubset {
        /// The map holding the name, e.g. `curriculum[1].weights`.
        field: String,
        /// The name as written.
        name: String,
    },
    /// Two names of one weights map denote the same subset (e.g. `dpo` and `preference`).
    #[error("{field}: `{name}` names subset {subset} a second time")]
    DuplicateSubset {
        /// The map holding the names.
        field: String,
        /// The second name as written.
        name: String,
        /// The subset both names denote.
        subset: Subset,
    },
    /// `category_weights` names something that is not a category.
    #[error("category_weights: unknown category `{name}`")]
    UnknownCategory {
        /// The name as written.
        name: String,
    },
    /// A weight is negative, infinite or NaN.
    #[error("{field} must be a finite non-negative number, got {value}")]
    BadWeight {
        /// The weight's full key, e.g. `curriculum[0].weights.sft`.
        field: String,
        /// The value as parsed.
        value: f64,
    },
    /// A phase's weights are all zero (or only name subsets the dataset lacks).
    #[error("curriculum[{phase}].weights must have a positive sum")]
    ZeroWeightSum {
        /// The phase index.
        phase: usize,
    },
    /// A phase other than the last has no `until_step`.
    #[error("curriculum[{phase}].until_step is required in every phase but the last")]
    MissingUntilStep {
        /// The phase index.
        phase: usize,
    },
    /// Phase ends are not strictly increasing (the first must be positive).
    #[error(
        "curriculum[{phase}].until_step = {until_step} must be greater than the phase start {start}"
    )]
    PhaseEndNotIncreasing {
        /// The phase index.
        phase: usize,
        /// The phase's `until_step`.
        until_step: u64,
        /// Where the phase starts (the previous phase's `until_step`, or 0).
        start: u64,
    },
    /// The first phase asks for a ramp, but there is no previous phase to ramp from.
    #[error("curriculum[0].ramp_steps must be 0: the first phase has no previous weights")]
    RampInFirstPhase,
    /// A ramp is longer than its phase.
    #[error("curriculum[{phase}].ramp_steps = {ramp_steps} exceeds the phase length {phase_len}")]
    RampTooLong {
        /// The phase index.
        phase: usize,
        /// The ramp length asked for.
        ramp_steps: u64,
        /// The phase length in steps.
        phase_len: u64,
    },
    /// A subset has a positive weight but the dataset holds none of its samples.
    #[error("{field} is positive but the dataset has no {subset} samples")]
    SubsetNotInDataset {
        /// The weight's full key, e.g. `curriculum[2].weights.multi_turn`.
        field: String,
        /// The missing subset.
        subset: Subset,
    },
    /// The dataset holds no samples at all, so there is nothing to schedule.
    #[error("the dataset has no samples to schedule")]
    EmptyDataset,
    /// The `[select]` table names something that does not exist.
    #[error(transparent)]
    Selection(#[from] SelectionError),
    /// The selection leaves a subset the stream draws from without samples.
    #[error("{field} is positive but the selection leaves no {subset} sample: {why}")]
    SelectionEmptied {
        /// The weight's full key, or `select` for the default curriculum.
        field: String,
        /// The emptied subset.
        subset: Subset,
        /// Which filter removed the last ones.
        why: String,
    },
    /// The selection leaves no sample in any subset.
    #[error("the selection leaves no sample: {why}")]
    NothingSelected {
        /// Which filter emptied each subset.
        why: String,
    },
    /// An evaluation spec sets something only training streams have.
    #[error("{field} applies to training streams only: mode = \"eval\" visits each selected sample once, in order")]
    TrainingOnly {
        /// The field set.
        field: &'static str,
    },
    /// `order` is set on a training stream.
    #[error(
        "order = \"seeded\" applies to mode = \"eval\" only: training streams are always shuffled"
    )]
    OrderOutsideEval,
    /// A wire enum field holds a value this daemon does not know.
    #[error("{field}: {value} is not a known value")]
    UnknownEnum {
        /// The field, e.g. `spec.mode`.
        field: &'static str,
        /// The number sent.
        value: i32,
    },
    /// `shuffle.block` or `shuffle.window` is zero, or `window` is given without `block`.
    #[error("shuffle.{field}: {reason}")]
    BadShuffle {
        /// `block` or `window`.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}
