//! How multi-turn chains are served: whole (`chains`, the default), or as one
//! single-step sample per turn (`steps`).
//!
//! In the steps view a chain of `T` turns is `T` samples, step `t` (1-based) being
//! (image `t - 1`, instruction `t`, image `t`), image 0 the source. The multi-turn
//! subset then has as many samples as its chains have turns; they are numbered in
//! canonical order (chain by chain, turn by turn) and shuffled, scheduled, selected and
//! resumed like any subset, so the view is deterministic and resumable. Its batches
//! look like single-turn ones (`source`, `target`), with each sample's turn in its
//! metadata. How many multi-turn editors are trained.
//!
//! ```toml
//! multi_turn = "steps"
//! ```

use serde::{Deserialize, Serialize};

/// The view of multi-turn chains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MultiTurnView {
    /// Each chain is one sample with all its images (the default).
    #[default]
    Chains,
    /// Each turn of a chain is one single-step sample.
    Steps,
}

impl MultiTurnView {
    /// True for the default view.
    pub fn is_chains(&self) -> bool {
        *self == MultiTurnView::Chains
    }

    /// The view's line of the spec's canonical text (empty for chains, so that the
    /// fingerprints of existing streams are unchanged).
    pub(crate) fn canonical(&self) -> &'static str {
        match self {
            MultiTurnView::Chains => "",
            MultiTurnView::Steps => "multi_turn=steps\n",
        }
    }
}
