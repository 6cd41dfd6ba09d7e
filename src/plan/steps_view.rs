//! The multi-turn steps view ([`super::view`]) applied to the planner's input:
//! each chain the selection kept becomes one entry per turn, from the turn counts the
//! manifest records, so no shard is opened.
//!
//! Part of the plan stage, on its input side: the dataset as the plan sees it ->
//! narrowed to the stream's selection -> **multi-turn steps view** -> plan.

use std::sync::Arc;

use crate::dataset::manifest::{from_base36, Manifest};
use crate::dataset::Subset;

use super::input::{PlanDataset, PlanSubset, Selected};
use super::narrow::SelectError;

/// `input` with its multi-turn subset in the steps view: chain ordinals repeated once
/// per turn (ascending, so canonical order is chain by chain, turn by turn) with their
/// turn numbers.
pub(super) fn steps_view(
    manifest: &Manifest,
    mut input: PlanDataset,
) -> Result<PlanDataset, SelectError> {
    let Some(ps) = input
        .subsets
        .iter_mut()
        .find(|p| p.subset == Subset::MultiTurn)
    else {
        return Ok(input);
    };
    let Some(sm) = manifest.subsets.get(&Subset::MultiTurn) else {
        return Ok(input);
    };
    if sm
        .shards
        .iter()
        .any(|sh| sh.turns.is_empty() && sh.samples > 0)
    {
        return Err(SelectError::StepsNotRecorded);
    }
    let turns: Vec<u32> = sm
        .shards
        .iter()
        .flat_map(|sh| sh.turns.bytes().map(|c| from_base36(c).unwrap_or(0)))
        .collect();
    let chains: Vec<u64> = match &ps.selected {
        Some(sel) => sel.ordinals.to_vec(),
        None => (0..ps.len).collect(),
    };
    let mut ordinals = Vec::new();
    let mut turn_of = Vec::new();
    let mut categories = ps.categories.as_ref().map(|_| Vec::new());
    for (i, &chain) in chains.iter().enumerate() {
        let t = turns
            .get(chain as usize)
            .copied()
            .unwrap_or(0)
            .min(u8::MAX as u32);
        for turn in 1..=t as u8 {
            ordinals.push(chain);
            turn_of.push(turn);
            if let (Some(out), Some(cats)) = (&mut categories, &ps.categories) {
                out.push(cats[i]);
            }
        }
    }
    let emptied_by = ps.selected.as_ref().and_then(|s| s.emptied_by.clone());
    *ps = PlanSubset {
        subset: Subset::MultiTurn,
        len: ordinals.len() as u64,
        categories: categories.map(Into::into),
        selected: Some(Selected {
            ordinals: Arc::from(ordinals),
            turns: Some(Arc::from(turn_of)),
            emptied_by,
        }),
    };
    Ok(input)
}
