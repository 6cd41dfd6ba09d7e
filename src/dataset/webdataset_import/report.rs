//! What the WebDataset importer tells its user: why each skipped sample was skipped (a
//! [`WdsSkipReason`] with a stable short name, with its shard and key), the members
//! dropped per field name, the counts per input shard, a printable summary and the JSON
//! report written beside the dataset.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::dataset::skip_summary::{write_skips, Skip};
use crate::dataset::Subset;

/// Why one input sample was not imported. [`Self::name`] is a stable short name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WdsSkipReason {
    /// The key is not a valid editfeed key.
    #[error("bad key: {why}")]
    BadKey {
        /// What is wrong with it.
        why: String,
    },
    /// An earlier sample already used the key.
    #[error("key already used by an earlier sample")]
    DuplicateKey,
    /// The sample's editfeed metadata names another subset.
    #[error("sample is {found}, the import writes {wanted}")]
    SubsetMismatch {
        /// The subset in the sample's `json`.
        found: Subset,
        /// The subset asked for.
        wanted: Subset,
    },
    /// The members do not map to a sample of the subset.
    #[error("cannot map members [{fields}]: {why}")]
    Unmappable {
        /// The member fields, comma-separated.
        fields: String,
        /// What is missing or ambiguous.
        why: String,
    },
    /// An image member is not a decodable JPEG, PNG, WebP, QOI or PPM.
    #[error("member {field} does not decode: {why}")]
    UndecodableImage {
        /// The member's field.
        field: String,
        /// The decoder's message.
        why: String,
    },
}

impl WdsSkipReason {
    /// The stable short name of the reason.
    pub fn name(&self) -> &'static str {
        match self {
            WdsSkipReason::BadKey { .. } => "bad_key",
            WdsSkipReason::DuplicateKey => "duplicate_key",
            WdsSkipReason::SubsetMismatch { .. } => "subset_mismatch",
            WdsSkipReason::Unmappable { .. } => "unmappable",
            WdsSkipReason::UndecodableImage { .. } => "undecodable_image",
        }
    }
}

/// One skipped input sample.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{shard}: sample {key}: {reason}")]
pub struct SkippedSample {
    /// The input shard, as given.
    pub shard: String,
    /// The sample key.
    pub key: String,
    /// Why it was skipped.
    pub reason: WdsSkipReason,
}

/// One input shard read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputShard {
    /// The path as given.
    pub path: String,
    /// Samples found in it.
    pub samples: u64,
}

/// What an import did: counts and every skipped sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebDatasetReport {
    /// The subset written.
    pub subset: Option<Subset>,
    /// The inputs, in order.
    pub shards: Vec<InputShard>,
    /// Samples kept member for member (already editfeed-shaped).
    pub kept: u64,
    /// Samples mapped from WebDataset conventions.
    pub mapped: u64,
    /// Members dropped from mapped samples, per field name.
    pub dropped_fields: BTreeMap<String, u64>,
    /// Every skipped sample, in input order.
    pub skipped: Vec<SkippedSample>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    subset: Option<&'static str>,
    shards: &'a [InputShard],
    written: u64,
    kept: u64,
    mapped: u64,
    dropped_fields: &'a BTreeMap<String, u64>,
    skipped_by_reason: BTreeMap<&'static str, u64>,
    skipped: Vec<JsonRow<'a>>,
}

#[derive(Serialize)]
struct JsonRow<'a> {
    shard: &'a str,
    key: &'a str,
    reason: &'static str,
    detail: String,
}

impl WebDatasetReport {
    /// Samples written.
    pub fn written(&self) -> u64 {
        self.kept + self.mapped
    }

    /// Samples skipped per reason name.
    pub fn skipped_by_reason(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for s in &self.skipped {
            *out.entry(s.reason.name()).or_insert(0) += 1;
        }
        out
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let report = JsonReport {
            subset: self.subset.map(Subset::name),
            shards: &self.shards,
            written: self.written(),
            kept: self.kept,
            mapped: self.mapped,
            dropped_fields: &self.dropped_fields,
            skipped_by_reason: self.skipped_by_reason(),
            skipped: self
                .skipped
                .iter()
                .map(|s| JsonRow {
                    shard: &s.shard,
                    key: &s.key,
                    reason: s.reason.name(),
                    detail: s.reason.to_string(),
                })
                .collect(),
        };
        let mut out = serde_json::to_vec_pretty(&report).expect("report serialises");
        out.push(b'\n');
        out
    }

    /// A human-readable summary with the first `first` skipped samples.
    pub fn summary(&self, first: usize, report_path: Option<&Path>) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        for shard in &self.shards {
            let _ = writeln!(s, "read {} ({} samples)", shard.path, shard.samples);
        }
        let subset = self.subset.map_or("?", Subset::name);
        let _ = writeln!(
            s,
            "samples written to {subset}: {} ({} kept as editfeed samples, {} mapped)",
            self.written(),
            self.kept,
            self.mapped
        );
        if !self.dropped_fields.is_empty() {
            let _ = writeln!(s, "members dropped from mapped samples:");
            for (field, n) in &self.dropped_fields {
                let _ = writeln!(s, "  {field}: {n}");
            }
        }
        let skips: Vec<Skip> = self
            .skipped
            .iter()
            .map(|row| Skip {
                at: format!("{} {}", row.shard, row.key),
                reason: row.reason.name(),
                detail: row.reason.to_string(),
            })
            .collect();
        write_skips(&mut s, "samples", &skips, first, report_path);
        s
    }
}
