//! The stream spec's types: [`StreamSpec`] (seed, global batch size, curriculum,
//! per-category weights, shuffle mode, selection, mode and multi-turn view), its
//! curriculum [`Phase`]s and its [`ShuffleSpec`], each field documented for the user.
//!
//! Part of the plan stage: store -> shard reader -> **plan** (spec + dataset -> schedule
//! and epochs) -> prefetch -> decode/augment -> collate -> gRPC.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plan::eval::{EvalOrder, Mode};
use crate::plan::select::Selection;
use crate::plan::view::MultiTurnView;

/// The window, in blocks, of block shuffle mode when `shuffle.window` is not given.
pub const DEFAULT_SHUFFLE_WINDOW_BLOCKS: u64 = 16;

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
}
