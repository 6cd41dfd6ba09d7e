//! The dataset as the plan sees it ([`PlanDataset`]): per subset, its sample count and
//! optionally each sample's edit category, in canonical order, plus what a selection
//! kept. Built from an open dataset's manifest, without reading a shard.
//!
//! Part of the plan stage: store -> shard reader -> **plan** -> prefetch ->
//! decode/augment -> collate -> gRPC. This is the plan's input from the dataset stage.

use std::sync::Arc;

use crate::dataset::manifest::category_from_char;
use crate::dataset::{Category, Dataset, Subset};

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

impl From<&Dataset> for PlanDataset {
    /// What the planner needs to know: the version, and per subset its length and each
    /// sample's category (from the manifest, without reading a shard).
    fn from(dataset: &Dataset) -> PlanDataset {
        let manifest = dataset.manifest();
        let subsets = manifest
            .subsets
            .iter()
            .map(|(subset, s)| {
                let has_categories = s.shards.iter().all(|sh| !sh.categories.is_empty())
                    && s.shards
                        .iter()
                        .any(|sh| sh.categories.bytes().any(|b| b != b'-'));
                let categories = has_categories.then(|| {
                    s.shards
                        .iter()
                        .flat_map(|sh| sh.categories.bytes().map(category_from_char))
                        .collect::<Vec<_>>()
                        .into()
                });
                PlanSubset {
                    subset: *subset,
                    len: s.samples,
                    categories,
                    selected: None,
                }
            })
            .collect();
        PlanDataset {
            version: manifest.version.clone(),
            subsets,
        }
    }
}
