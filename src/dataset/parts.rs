//! Packs split across machines: `--part I/N` packs the I-th of N contiguous ranges of
//! the input's canonical order into a folder of its own, with shards and indexes like
//! any pack and a record ([`PartRecord`], `part.json`) instead of a manifest. Keys and
//! bytes of a sample depend on its input row alone, so the parts together hold exactly
//! the samples a single run writes, and `editfeed manifest merge`
//! ([`super::merge`]) gives them the manifest, and the dataset version, of that run.
//! Kubernetes runs the parts (an Indexed Job); editfeed needs no coordinator.

use std::ops::Range;
use std::str::FromStr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::writer::WrittenPart;
use crate::store::{Store, StoreError};

/// The record's file name in a part's folder.
pub const PART_FILE: &str = "part.json";

/// What [`PartRecord::format`] holds.
pub const PART_FORMAT: &str = "editfeed-part";

/// One part of N: `index` counts from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// Which part, from 0.
    pub index: u32,
    /// How many parts in all.
    pub count: u32,
}

impl FromStr for Part {
    type Err = String;

    /// Parses `I/N` with `0 <= I < N`.
    fn from_str(s: &str) -> Result<Part, String> {
        let bad = || format!("bad part {s:?}: expected I/N with 0 <= I < N, e.g. 0/8");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Part { index, count })
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Part {
    /// The part's range of `total` items in canonical order: the I-th of N nearly equal
    /// contiguous ranges.
    pub fn range(&self, total: u64) -> Range<u64> {
        let at = |i: u32| (total as u128 * i as u128 / self.count as u128) as u64;
        at(self.index)..at(self.index + 1)
    }
}

/// What a part wrote, and what `merge` checks the parts against each other with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartRecord {
    /// Always [`PART_FORMAT`].
    pub format: String,
    /// The command that wrote it (`pack pico-banana`).
    pub pack: String,
    /// Which part, from 0.
    pub part: u32,
    /// How many parts in all.
    pub parts: u32,
    /// A digest of the input and of every option that changes what is written: parts
    /// of one pack share it.
    pub input: String,
    /// The range of rows, in canonical order, this part packed.
    pub rows: Range<u64>,
    /// Rows in the whole input.
    pub total_rows: u64,
    /// The shards it wrote.
    pub written: WrittenPart,
    /// The importer's report of this part's rows (merged into one report).
    pub report: serde_json::Value,
}

impl PartRecord {
    /// Writes the record into the part's folder (last, after every shard and index).
    pub fn write(&self, store: &Store) -> Result<(), StoreError> {
        let mut json = serde_json::to_vec_pretty(self).expect("a part record serialises");
        json.push(b'\n');
        store.put(PART_FILE, Bytes::from(json))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_parse_and_cut_contiguous_ranges_that_cover_everything() {
        assert_eq!("2/8".parse(), Ok(Part { index: 2, count: 8 }));
        for bad in ["8/8", "1/0", "a/2", "3", "-1/4"] {
            assert!(bad.parse::<Part>().is_err(), "{bad}");
        }
        for total in [0u64, 1, 7, 400_080] {
            for count in [1u32, 2, 3, 8] {
                let mut next = 0;
                for index in 0..count {
                    let r = Part { index, count }.range(total);
                    assert_eq!(r.start, next);
                    assert!(r.end - r.start <= total / count as u64 + 1);
                    next = r.end;
                }
                assert_eq!(next, total);
            }
        }
    }
}
