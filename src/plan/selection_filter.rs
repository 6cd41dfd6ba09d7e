//! The per-sample filters of a stream's selection ([`Selection`]), compiled against a
//! dataset's manifest: each reads one attribute the manifest records for every shard
//! (split, edit type, category, turns, instruction words), or, for `keys` and
//! `exclude_keys`, the hits [`super::key_lists`] found in the shard indexes.
//!
//! Part of the plan stage, on its input side: dataset manifest -> **selection filters**
//! -> narrowed plan input ([`super::narrow`]) -> plan.

use crate::dataset::edit_types::Category;
use crate::dataset::manifest::{category_from_char, from_base36, Manifest, ShardManifest};
use crate::dataset::Subset;

use super::narrow::SelectError;
use super::select::{category_ids, edit_type_ids, Selection};

/// One filter, compiled against the dataset.
pub(super) enum Filter {
    Split(u8),
    EditTypes {
        ids: Vec<usize>,
        keep: bool,
    },
    Categories {
        ids: Vec<Category>,
        keep: bool,
    },
    Turns {
        min: u32,
        max: u32,
    },
    Words {
        min: u32,
        max: u32,
    },
    /// By canonical ordinal: whether the sample is one the key list names.
    Keys {
        hits: Vec<bool>,
        keep: bool,
    },
}

impl Filter {
    /// The name the selection gives it, for messages.
    pub(super) fn describe(&self, sel: &Selection) -> String {
        match self {
            Filter::Split(_) => format!("select.split = {:?}", sel.split.as_deref().unwrap_or("")),
            Filter::EditTypes { keep: true, .. } => {
                format!("select.edit_types = {:?}", sel.edit_types)
            }
            Filter::EditTypes { keep: false, .. } => {
                format!("select.exclude_edit_types = {:?}", sel.exclude_edit_types)
            }
            Filter::Categories { keep: true, .. } => {
                format!("select.categories = {:?}", sel.categories)
            }
            Filter::Categories { keep: false, .. } => {
                format!("select.exclude_categories = {:?}", sel.exclude_categories)
            }
            Filter::Turns { min, max } => format!("select turns {min}..={max}"),
            Filter::Words { min, max } => format!("select instruction words {min}..={max}"),
            Filter::Keys { keep: true, .. } => format!("select.keys ({} entries)", sel.keys.len()),
            Filter::Keys { keep: false, .. } => {
                format!("select.exclude_keys ({} entries)", sel.exclude_keys.len())
            }
        }
    }

    /// The selection field and the attribute it reads, for [`SelectError::NotRecorded`].
    pub(super) fn attribute(&self) -> (&'static str, &'static str) {
        match self {
            Filter::Split(_) => ("split", "splits"),
            Filter::EditTypes { keep: true, .. } => ("edit_types", "edit types"),
            Filter::EditTypes { keep: false, .. } => ("exclude_edit_types", "edit types"),
            Filter::Categories { keep: true, .. } => ("categories", "categories"),
            Filter::Categories { keep: false, .. } => ("exclude_categories", "categories"),
            Filter::Turns { .. } => ("min_turns", "turn counts"),
            Filter::Words { .. } => ("min_instruction_words", "instruction lengths"),
            Filter::Keys { .. } => ("keys", "keys"),
        }
    }

    /// The shard's record this filter reads, and the bytes per sample.
    pub(super) fn record<'a>(&self, shard: &'a ShardManifest) -> (&'a [u8], usize) {
        match self {
            Filter::Split(_) => (shard.splits.as_bytes(), 1),
            Filter::EditTypes { .. } => (shard.edit_types.as_bytes(), 1),
            Filter::Categories { .. } => (shard.categories.as_bytes(), 1),
            Filter::Turns { .. } => (shard.turns.as_bytes(), 1),
            Filter::Words { .. } => (shard.instruction_words.as_bytes(), 2),
            // Keys come from the indexes; `passes_at` reads them by ordinal.
            Filter::Keys { .. } => (&[], 0),
        }
    }

    /// Whether the sample whose record is `r` passes.
    fn passes(&self, r: &[u8]) -> bool {
        match self {
            Filter::Split(id) => r[0] == b'0' + id,
            Filter::EditTypes { ids, keep } => {
                let hit = from_base36(r[0]).is_some_and(|t| ids.contains(&(t as usize)));
                hit == *keep
            }
            Filter::Categories { ids, keep } => {
                let hit = category_from_char(r[0]).is_some_and(|c| ids.contains(&c));
                hit == *keep
            }
            Filter::Turns { min, max } => {
                from_base36(r[0]).is_some_and(|t| (*min..=*max).contains(&t))
            }
            Filter::Words { min, max } => match (from_base36(r[0]), from_base36(r[1])) {
                (Some(hi), Some(lo)) => (*min..=*max).contains(&(hi * 36 + lo)),
                _ => false,
            },
            Filter::Keys { .. } => unreachable!("key filters are decided by ordinal"),
        }
    }

    /// Whether the sample at canonical `ordinal`, whose record is `r`, passes.
    pub(super) fn passes_at(&self, ordinal: u64, r: &[u8]) -> bool {
        match self {
            Filter::Keys { hits, keep } => hits[ordinal as usize] == *keep,
            other => other.passes(r),
        }
    }
}

/// The filters of `sel` that apply to `subset`, in order.
pub(super) fn filters(
    sel: &Selection,
    manifest: &Manifest,
    subset: Subset,
) -> Result<Vec<Filter>, SelectError> {
    let mut out = Vec::new();
    if let Some(name) = &sel.split {
        let id = manifest
            .splits
            .iter()
            .position(|s| s == name)
            .ok_or_else(|| SelectError::UnknownSplit {
                name: name.clone(),
                known: if manifest.splits.is_empty() {
                    "none: pack or reshard it with --split-file or --split-rule".into()
                } else {
                    manifest.splits.join(", ")
                },
            })?;
        out.push(Filter::Split(id as u8));
    }
    if !sel.edit_types.is_empty() {
        out.push(Filter::EditTypes {
            ids: edit_type_ids("edit_types", &sel.edit_types)?,
            keep: true,
        });
    }
    if !sel.exclude_edit_types.is_empty() {
        out.push(Filter::EditTypes {
            ids: edit_type_ids("exclude_edit_types", &sel.exclude_edit_types)?,
            keep: false,
        });
    }
    if !sel.categories.is_empty() {
        out.push(Filter::Categories {
            ids: category_ids("categories", &sel.categories)?,
            keep: true,
        });
    }
    if !sel.exclude_categories.is_empty() {
        out.push(Filter::Categories {
            ids: category_ids("exclude_categories", &sel.exclude_categories)?,
            keep: false,
        });
    }
    // Turn bounds are about chains: single-step subsets are not filtered by them.
    if subset == Subset::MultiTurn && (sel.min_turns.is_some() || sel.max_turns.is_some()) {
        out.push(Filter::Turns {
            min: sel.min_turns.unwrap_or(0),
            max: sel.max_turns.unwrap_or(u32::MAX),
        });
    }
    if sel.min_instruction_words.is_some() || sel.max_instruction_words.is_some() {
        out.push(Filter::Words {
            min: sel.min_instruction_words.unwrap_or(0),
            max: sel.max_instruction_words.unwrap_or(u32::MAX),
        });
    }
    Ok(out)
}
