//! The stream spec: seed, global batch size, curriculum, per-category weights and shuffle
//! mode, with its TOML form, its validation and its fingerprint.
//!
//! The spec is the user's half of the plan's input (the dataset is the other half), so
//! everything here is user documentation. It sits at the start of the plan stage: store
//! -> shard reader -> **plan** (spec + dataset -> schedule and epochs) -> prefetch ->
//! decode/augment -> collate -> gRPC. Validation that needs only the spec happens in
//! [`StreamSpec::validate`]; checks against the dataset (does a named subset exist?)
//! happen when a [`Plan`](super::Plan) is built.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::eval::{check_mode, eval_phases, EvalOrder, Mode};
use super::select::{Selection, SelectionError};
use super::view::MultiTurnView;
use crate::dataset::{Category, Subset};

/// How many hex characters of the sha256 digest a fingerprint keeps (64 bits).
pub const FINGERPRINT_HEX_LEN: usize = 16;

/// The window, in blocks, of block shuffle mode when `shuffle.window` is not given.
pub const DEFAULT_SHUFFLE_WINDOW_BLOCKS: u64 = 16;

/// The most phases a curriculum may have. Real curricula have a handful; the bound
/// keeps one request's plan (built per stream) small and gives a clear
/// INVALID_ARGUMENT where a 30,000-phase spec used to be taken as it came.
pub const MAX_PHASES: usize = 1024;

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

/// Everything that decides the global order of samples, except the dataset itself.
///
/// In TOML (see the module docs of [`crate::plan`] for a full example):
/// `seed`, `global_batch`, then optional `[[curriculum]]` tables, an optional
/// `[category_weights]` table and an optional `shuffle = { block = N }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    /// The seed of every random choice of the plan (shuffles, category resampling, the
    /// phase of the mixing pattern). Same seed, same dataset, same spec: same batches.
    pub seed: u64,
    /// Samples per global step, summed over all ranks. The world size must divide it.
    pub global_batch: u32,
    /// Phases over global steps, in order. Empty (the default) means one endless phase
    /// over every subset the dataset holds, weighted by the subsets' sample counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub curriculum: Vec<Phase>,
    /// Relative sampling rate of each edit category inside the subsets that carry
    /// categories (single-turn and preference), keyed by category name
    /// (`pixel_photometric`, `object_semantic`, `scene_composition`, `stylistic`,
    /// `text_symbol`, `human_centric`, `scale_perspective`, `spatial_layout`). A category
    /// with `n` samples and weight `w` gets `round(n * w)` slots in every epoch: `2.0`
    /// shows each sample twice per epoch, `0.5` shows half of them (a different half
    /// each epoch, cycling so that every sample is shown before any repeats), `0` drops
    /// the category. Categories not named keep weight 1; samples without a category
    /// always have weight 1, and subsets whose dataset entry carries no categories
    /// (multi-turn) are not rebalanced.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub category_weights: BTreeMap<String, f64>,
    /// How each epoch is permuted. Default: a full uniform permutation.
    #[serde(default, skip_serializing_if = "ShuffleSpec::is_full")]
    pub shuffle: ShuffleSpec,
    /// Which samples the stream draws from (`[select]`); default: all of them.
    #[serde(default, skip_serializing_if = "Selection::is_all")]
    pub select: Selection,
    /// `train` (the default) or `eval`: one pass over the selection, each sample once,
    /// the last batch of each subset padded (see [`crate::plan::eval`]).
    #[serde(default, skip_serializing_if = "Mode::is_train")]
    pub mode: Mode,
    /// The order of an evaluation pass: `canonical` (the default) or `seeded`.
    #[serde(default, skip_serializing_if = "EvalOrder::is_canonical")]
    pub order: EvalOrder,
    /// Multi-turn chains whole (`chains`, the default) or one sample per turn
    /// (`steps`; see [`crate::plan::view`]).
    #[serde(default, skip_serializing_if = "MultiTurnView::is_chains")]
    pub multi_turn: MultiTurnView,
}

/// One curriculum phase: a range of global steps with its subset mixing weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// The first global step after this phase (exclusive end). The phase starts where
    /// the previous one ended (or at 0). Only the last phase may omit it, meaning the
    /// stream never ends; if the last phase has it, the stream ends there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_step: Option<u64>,
    /// Relative weight of each subset (`sft`, `preference`, `multi_turn`; the aliases
    /// `single_turn`, `dpo` and `multi-turn` are accepted). Subsets not named get
    /// weight 0. Each global step draws its whole batch from one subset; over any
    /// window of steps the share of steps given to a subset follows its weight to
    /// within two steps.
    pub weights: BTreeMap<String, f64>,
    /// Ramp linearly from the previous phase's mix to this one's over the first
    /// `ramp_steps` steps of this phase (default 0: switch at once). The ramp is
    /// followed in at most 64 constant-mix stages. Must fit inside the phase.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ramp_steps: u64,
}

/// How an epoch is permuted: a full permutation (the default), or block mode for
/// stores where each read has a high latency.
///
/// Block mode cuts the epoch, in canonical order, into blocks of `block` samples,
/// shuffles the order of the blocks, then shuffles samples within consecutive windows
/// of `window` blocks. A reader then needs about `window` range reads per window of
/// `block * window` samples, at the price of a weaker shuffle (samples only mix with
/// the `window - 1` other blocks of their window).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShuffleSpec {
    /// Samples per contiguous block; absent means a full permutation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<u64>,
    /// Blocks per shuffling window (default 16); only with `block`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<u64>,
}

/// The part of a stream spec that lives in a curriculum file, when the seed and the
/// global batch size come from the command line. Same keys and meaning as in
/// [`StreamSpec`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurriculumFile {
    /// See [`StreamSpec::curriculum`].
    #[serde(default)]
    pub curriculum: Vec<Phase>,
    /// See [`StreamSpec::category_weights`].
    #[serde(default)]
    pub category_weights: BTreeMap<String, f64>,
    /// See [`StreamSpec::shuffle`].
    #[serde(default)]
    pub shuffle: ShuffleSpec,
    /// See [`StreamSpec::select`].
    #[serde(default)]
    pub select: Selection,
    /// See [`StreamSpec::mode`].
    #[serde(default)]
    pub mode: Mode,
    /// See [`StreamSpec::order`].
    #[serde(default)]
    pub order: EvalOrder,
    /// See [`StreamSpec::multi_turn`].
    #[serde(default)]
    pub multi_turn: MultiTurnView,
}

/// A phase after checking against the dataset: mixing probabilities by subset id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResolvedPhase {
    pub(crate) until_step: Option<u64>,
    pub(crate) ramp_steps: u64,
    /// Normalised to sum to 1, indexed by `Subset::id()`.
    pub(crate) probs: [f64; 3],
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl ShuffleSpec {
    /// True for the default full permutation.
    pub fn is_full(&self) -> bool {
        self.block.is_none()
    }

    /// `(block, window)` in samples and blocks when block mode is on.
    pub(crate) fn block_mode(&self) -> Option<(u64, u64)> {
        self.block
            .map(|b| (b, self.window.unwrap_or(DEFAULT_SHUFFLE_WINDOW_BLOCKS)))
    }

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

impl CurriculumFile {
    /// Parses a curriculum file; unknown or misspelt keys are rejected by name.
    pub fn from_toml_str(text: &str) -> Result<CurriculumFile, SpecError> {
        toml::from_str(text).map_err(|e| toml_error(text, e))
    }

    /// Reads and parses the curriculum file at `path`, with the key files its
    /// `[select]` names read (relative to the file's folder). Errors name the file.
    pub fn read(path: &std::path::Path) -> Result<CurriculumFile, SpecError> {
        let named = |message: String| SpecError::Toml {
            message: format!("{}: {message}", path.display()),
        };
        let text = std::fs::read_to_string(path).map_err(|e| named(e.to_string()))?;
        let mut file = CurriculumFile::from_toml_str(&text).map_err(|e| match e {
            SpecError::Toml { message } => named(message),
            other => other,
        })?;
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        file.select = file.select.with_key_files(base)?;
        Ok(file)
    }

    /// The full spec, with the seed and global batch size given elsewhere, validated.
    pub fn into_spec(self, seed: u64, global_batch: u32) -> Result<StreamSpec, SpecError> {
        let spec = StreamSpec {
            seed,
            global_batch,
            curriculum: self.curriculum,
            category_weights: self.category_weights,
            shuffle: self.shuffle,
            select: self.select,
            mode: self.mode,
            order: self.order,
            multi_turn: self.multi_turn,
        };
        spec.validate()?;
        Ok(spec)
    }
}

fn toml_error(text: &str, e: toml::de::Error) -> SpecError {
    // The parser's own Display draws a multi-line source excerpt; one line with the
    // position reads better in logs and CLI errors.
    let message = e.message().trim_end();
    let message = match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_string(),
    };
    SpecError::Toml { message }
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
fn subset_weights(
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
    /// A spec with the default curriculum, no category weights and full shuffling.
    pub fn new(seed: u64, global_batch: u32) -> StreamSpec {
        StreamSpec {
            seed,
            global_batch,
            curriculum: Vec::new(),
            category_weights: BTreeMap::new(),
            shuffle: ShuffleSpec::default(),
            select: Selection::default(),
            mode: Mode::Train,
            order: EvalOrder::Canonical,
            multi_turn: MultiTurnView::Chains,
        }
    }

    /// Parses and validates a whole spec from TOML; unknown or misspelt keys are
    /// rejected by name.
    pub fn from_toml_str(text: &str) -> Result<StreamSpec, SpecError> {
        let spec: StreamSpec = toml::from_str(text).map_err(|e| toml_error(text, e))?;
        spec.validate()?;
        Ok(spec)
    }

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

    /// The curriculum checked against the subset sizes the dataset holds (`sizes` by
    /// subset id, 0 when absent), with the default curriculum filled in.
    #[cfg(test)]
    pub(crate) fn resolve(&self, sizes: [u64; 3]) -> Result<Vec<ResolvedPhase>, SpecError> {
        self.resolve_selected(sizes, &[None, None, None])
    }

    /// [`resolve`](Self::resolve) where `emptied` says, by subset id, which filter of
    /// the selection left a subset of the dataset without samples.
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

    /// A short hex fingerprint of everything in the spec that affects the order of
    /// samples. Cursors carry it so that a stream is never resumed under another spec.
    pub fn fingerprint(&self) -> String {
        self.fingerprint_with(&[])
    }

    /// The fingerprint with more settings mixed in: the serving layer passes a
    /// canonical encoding of whatever else shapes the stream (transforms, output size
    /// and format), so that changing those also invalidates old cursors.
    pub fn fingerprint_with(&self, extra: &[u8]) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.canonical().as_bytes());
        // Length-prefixed so that no spec text can collide with a different split
        // between spec and extra bytes.
        hasher.update((extra.len() as u64).to_le_bytes());
        hasher.update(extra);
        let digest = hasher.finalize();
        let mut hex = String::with_capacity(FINGERPRINT_HEX_LEN);
        for byte in &digest[..FINGERPRINT_HEX_LEN / 2] {
            let _ = write!(hex, "{byte:02x}");
        }
        hex
    }

    /// A canonical text of the spec: aliases resolved, maps sorted, zero subset
    /// weights and unit category weights (which change nothing) left out, floats as
    /// their exact bits. Two specs that plan identically almost always share it, and
    /// two that plan differently never do.
    fn canonical(&self) -> String {
        let mut out = String::from("editfeed.plan.spec.v1\n");
        let _ = writeln!(out, "seed={}", self.seed);
        let _ = writeln!(out, "global_batch={}", self.global_batch);
        if self.curriculum.is_empty() {
            out.push_str("curriculum=by_sample_count\n");
        }
        for phase in &self.curriculum {
            out.push_str("phase");
            match phase.until_step {
                Some(end) => {
                    let _ = write!(out, " until={end}");
                }
                None => out.push_str(" until=never"),
            }
            let _ = write!(out, " ramp={}", phase.ramp_steps);
            let mut weights: Vec<(u8, &'static str, f64)> = phase
                .weights
                .iter()
                .filter(|(_, &w)| w != 0.0)
                .map(|(k, &w)| match Subset::from_name(k) {
                    Some(s) => (s.id(), s.name(), w),
                    None => (u8::MAX, "?", w),
                })
                .collect();
            weights.sort_by_key(|(id, _, _)| *id);
            for (_, name, w) in weights {
                let _ = write!(out, " {name}={:016x}", w.to_bits());
            }
            out.push('\n');
        }
        for category in Category::ALL {
            let w = self.category_weights.get(category.name()).copied();
            if let Some(w) = w.filter(|&w| w != 1.0) {
                let _ = writeln!(out, "category {}={:016x}", category.name(), w.to_bits());
            }
        }
        match self.shuffle.block_mode() {
            None => out.push_str("shuffle=full\n"),
            Some((block, window)) => {
                let _ = writeln!(out, "shuffle=block:{block}:{window}");
            }
        }
        out.push_str(&self.select.canonical());
        out.push_str(&super::eval::canonical(self));
        out.push_str(self.multi_turn.canonical());
        out
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

    const EXAMPLE: &str = r#"
        seed = 17
        global_batch = 256

        [[curriculum]]
        until_step = 20000
        weights = { sft = 1.0 }

        [[curriculum]]
        until_step = 40000
        ramp_steps = 2000
        weights = { sft = 0.3, dpo = 0.7 }

        [[curriculum]]
        ramp_steps = 1000
        weights = { sft = 0.2, preference = 0.3, multi_turn = 0.5 }

        [category_weights]
        text_symbol = 2.0
        pixel_photometric = 0.5

        [shuffle]
        block = 256
    "#;

    fn parse(text: &str) -> Result<StreamSpec, SpecError> {
        StreamSpec::from_toml_str(text)
    }

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
    fn misspelt_keys_are_rejected_by_name() {
        let err = parse("seed = 1\nglobal_batch = 8\nsede = 2\n").unwrap_err();
        assert!(err.to_string().contains("sede"), "{err}");
        let err = parse("seed = 1\nglobal_batch = 8\n[[curriculum]]\nwieghts = { sft = 1.0 }\n")
            .unwrap_err();
        assert!(err.to_string().contains("wieghts"), "{err}");
        let err = CurriculumFile::from_toml_str("[shuffle]\nblok = 3\n").unwrap_err();
        assert!(err.to_string().contains("blok"), "{err}");
    }

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

    #[test]
    fn fingerprint_tracks_every_ordering_field() {
        let base = parse(EXAMPLE).unwrap();
        let fp = base.fingerprint();
        assert_eq!(fp.len(), FINGERPRINT_HEX_LEN);
        assert_eq!(fp, parse(EXAMPLE).unwrap().fingerprint());
        let mut variants = Vec::new();
        let mut s = base.clone();
        s.seed += 1;
        variants.push(s);
        let mut s = base.clone();
        s.global_batch *= 2;
        variants.push(s);
        let mut s = base.clone();
        s.curriculum[0].until_step = Some(20001);
        variants.push(s);
        let mut s = base.clone();
        s.curriculum[1].ramp_steps += 1;
        variants.push(s);
        let mut s = base.clone();
        s.curriculum[2].weights.insert("sft".into(), 0.25);
        variants.push(s);
        let mut s = base.clone();
        s.category_weights.insert("stylistic".into(), 3.0);
        variants.push(s);
        let mut s = base.clone();
        s.shuffle.window = Some(4);
        variants.push(s);
        let mut s = base.clone();
        s.shuffle = ShuffleSpec::default();
        variants.push(s);
        let mut s = base.clone();
        s.curriculum.clear();
        variants.push(s);
        for v in &variants {
            assert_ne!(v.fingerprint(), fp, "{v:?}");
        }
        assert_ne!(base.fingerprint_with(b"crop=0.8"), fp);
        assert_ne!(
            base.fingerprint_with(b"crop=0.8"),
            base.fingerprint_with(b"crop=0.9")
        );

        // Spellings that plan identically share the fingerprint.
        let mut s = base.clone();
        let w = s.curriculum[1].weights.remove("dpo").unwrap();
        s.curriculum[1].weights.insert("preference".into(), w);
        s.curriculum[1].weights.insert("multi_turn".into(), 0.0);
        s.category_weights.insert("stylistic".into(), 1.0);
        assert_eq!(s.fingerprint(), fp);
    }

    #[test]
    fn curriculum_file_takes_seed_and_batch_from_elsewhere() {
        let file = CurriculumFile::from_toml_str(
            "[[curriculum]]\nuntil_step = 5\nweights = { sft = 1 }\n[[curriculum]]\nweights = { dpo = 1 }\n",
        )
        .unwrap();
        let spec = file.clone().into_spec(3, 16).unwrap();
        assert_eq!((spec.seed, spec.global_batch), (3, 16));
        assert_eq!(spec.curriculum.len(), 2);
        assert_eq!(file.into_spec(3, 0), Err(SpecError::ZeroGlobalBatch));
    }
}
