//! The `keys` and `exclude_keys` lists of a stream's selection matched against a
//! dataset's shard indexes (read once and cached by the dataset): which canonical
//! ordinals each list names. The only filters that need more than the manifest.
//!
//! Part of the plan stage, on its input side: dataset shard indexes -> **key lists**
//! -> selection filters -> narrowed plan input ([`super::narrow`]) -> plan.

use std::collections::HashMap;

use crate::dataset::{Dataset, Subset};

use super::narrow::SelectError;
use super::select::Selection;

/// The canonical ordinals (by subset id) that the `keys` and `exclude_keys` entries
/// name, read from the shard indexes of the subsets the selection keeps. `None` for a
/// list left empty. Every entry must name a sample.
pub(super) type KeyHits = [Option<Vec<bool>>; 2];

/// Where a key list names a key: (list, index in it, the subset it is limited to).
type Wanted = (usize, usize, Option<Subset>);

pub(super) fn key_hits(
    ds: &Dataset,
    sel: &Selection,
    only: Option<&[Subset]>,
) -> Result<[KeyHits; 3], SelectError> {
    let mut out: [KeyHits; 3] = Default::default();
    let lists = [("keys", &sel.keys), ("exclude_keys", &sel.exclude_keys)];
    if lists.iter().all(|(_, l)| l.is_empty()) {
        return Ok(out);
    }
    let mut wanted: HashMap<&str, Vec<Wanted>> = HashMap::new();
    for (list, (_, keys)) in lists.iter().enumerate() {
        for (index, entry) in keys.iter().enumerate() {
            let entry = entry.trim();
            let (subset, key) = match entry.split_once('/') {
                Some((s, k)) if Subset::from_name(s).is_some() => (Subset::from_name(s), k),
                _ => (None, entry),
            };
            wanted.entry(key).or_default().push((list, index, subset));
        }
    }
    let mut found = [
        vec![false; sel.keys.len()],
        vec![false; sel.exclude_keys.len()],
    ];
    // Every subset is read, so that an entry naming a sample of a subset the selection
    // leaves out is still known (one list may serve several selections).
    for subset in ds.subsets() {
        let id = subset.id() as usize;
        let kept = only.is_none_or(|o| o.contains(&subset));
        for (list, (_, keys)) in lists.iter().enumerate() {
            if kept && !keys.is_empty() {
                out[id][list] = Some(vec![false; ds.len(subset) as usize]);
            }
        }
        let shards = ds
            .shards(subset)
            .map_err(|e| SelectError::Keys(e.to_string()))?;
        let mut ordinal = 0usize;
        for shard in 0..shards.len() {
            let index = ds
                .index(subset, shard)
                .map_err(|e| SelectError::Keys(e.to_string()))?;
            for e in &index.entries {
                for &(list, i, limit) in wanted.get(e.key.as_str()).into_iter().flatten() {
                    if limit.is_none_or(|l| l == subset) {
                        found[list][i] = true;
                        if let Some(hits) = &mut out[id][list] {
                            hits[ordinal] = true;
                        }
                    }
                }
                ordinal += 1;
            }
        }
    }
    for (list, (field, keys)) in lists.iter().enumerate() {
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| !found[list][i]).collect();
        if let Some(&index) = missing.first() {
            let hint = match missing.len() {
                1 => String::new(),
                n => format!(" ({} more entries name no sample)", n - 1),
            };
            return Err(SelectError::UnknownKey {
                field,
                index,
                key: keys[index].clone(),
                hint,
            });
        }
    }
    Ok(out)
}
