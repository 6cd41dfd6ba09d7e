//! Finishing one part of a pack split across machines: every shard closed and indexed,
//! but no manifest written, since a part is not a dataset of its own. What it wrote is
//! returned for the part's record, from which `manifest merge` builds the dataset's
//! manifest (see [`crate::dataset::merge`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{DatasetWriter, WriteError};
use crate::dataset::manifest::ShardManifest;
use crate::dataset::Subset;

/// The shards one subset of a part holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartSubset {
    /// Its shards, in order, named relative to the part's folder.
    pub shards: Vec<ShardManifest>,
    /// The longest chain among its samples (multi-turn).
    pub max_turns: u32,
}

/// What a part wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrittenPart {
    /// The subsets it holds samples of.
    pub subsets: BTreeMap<Subset, PartSubset>,
    /// The split names, when the samples have splits.
    pub splits: Vec<String>,
    /// Where the splits came from, as a manifest says it.
    pub split_source: Option<String>,
}

impl DatasetWriter {
    /// Closes every shard and returns what was written, without a manifest. A split
    /// file's keys are not checked against the samples here: the other parts hold the
    /// rest of them.
    pub fn finish_part(&mut self) -> Result<WrittenPart, WriteError> {
        self.close_shards()?;
        let subsets = std::mem::take(&mut self.subsets)
            .into_iter()
            .filter(|(_, state)| !state.shards.is_empty())
            .map(|(subset, state)| {
                let part = PartSubset {
                    shards: state.shards,
                    max_turns: state.max_turns,
                };
                (subset, part)
            })
            .collect();
        let (splits, split_source) = self.split_description();
        Ok(WrittenPart {
            subsets,
            splits,
            split_source,
        })
    }
}
