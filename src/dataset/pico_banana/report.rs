//! What the Pico-Banana importer tells its user: why each skipped row was skipped (a
//! [`SkipReason`] with a stable short name), the counts per subset and per reason, a
//! short printable summary and the full JSON report written beside the dataset.
//!
//! Flow: rows -> checks -> SKIP REPORT (here) and dataset writer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::outcome::{SkipReason, SourceWay};
use crate::dataset::skip_summary::{write_skips, Skip};
use crate::dataset::Subset;

/// One skipped row: where it is and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{file}:{line}: {reason}")]
pub struct SkippedRow {
    /// The metadata file name (`sft.jsonl`).
    pub file: String,
    /// The 1-based line number.
    pub line: u64,
    /// Why it was skipped.
    pub reason: SkipReason,
}

/// One metadata file the importer looked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataFile {
    /// The subset it feeds.
    pub subset: Subset,
    /// Its full path.
    pub path: PathBuf,
    /// Whether it was there.
    pub found: bool,
    /// Non-blank lines read (at most the row limit).
    pub rows: u64,
}

/// What an import did, before the manifest is written: everything the summary and the
/// JSON report say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    /// The metadata files looked for, in import order.
    pub files: Vec<MetadataFile>,
    /// Samples written per subset.
    pub written: BTreeMap<Subset, u64>,
    /// How many source photos each resolution way supplied.
    pub sources: BTreeMap<SourceWay, u64>,
    /// Every skipped row, in file and line order.
    pub skipped: Vec<SkippedRow>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    files: &'a [MetadataFile],
    written: BTreeMap<&'static str, u64>,
    sources: BTreeMap<&'static str, u64>,
    skipped_by_reason: BTreeMap<&'static str, u64>,
    skipped: Vec<JsonRow<'a>>,
}

#[derive(Serialize)]
struct JsonRow<'a> {
    file: &'a str,
    line: u64,
    reason: &'static str,
    detail: String,
}

impl ImportReport {
    /// The reports of a pack's parts, in order, as one: the files as the first part saw
    /// them (every part reads them whole), counts summed, skipped rows in order.
    pub fn merge(parts: Vec<ImportReport>) -> ImportReport {
        let mut out = ImportReport::default();
        for (i, part) in parts.into_iter().enumerate() {
            if i == 0 {
                out.files = part.files;
            }
            for (subset, n) in part.written {
                *out.written.entry(subset).or_insert(0) += n;
            }
            for (way, n) in part.sources {
                *out.sources.entry(way).or_insert(0) += n;
            }
            out.skipped.extend(part.skipped);
        }
        out
    }

    /// Rows skipped per reason name (only reasons that occurred).
    pub fn skipped_by_reason(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for row in &self.skipped {
            *out.entry(row.reason.name()).or_insert(0) += 1;
        }
        out
    }

    /// Samples written in all subsets.
    pub fn total_written(&self) -> u64 {
        self.written.values().sum()
    }

    /// The report as pretty JSON: files, counts, and every skipped row with file, line,
    /// reason name and detail.
    pub fn to_json(&self) -> Vec<u8> {
        let report = JsonReport {
            files: &self.files,
            written: self.written.iter().map(|(k, v)| (k.name(), *v)).collect(),
            sources: self.sources.iter().map(|(k, v)| (k.name(), *v)).collect(),
            skipped_by_reason: self.skipped_by_reason(),
            skipped: self
                .skipped
                .iter()
                .map(|r| JsonRow {
                    file: &r.file,
                    line: r.line,
                    reason: r.reason.name(),
                    detail: r.reason.to_string(),
                })
                .collect(),
        };
        let mut out = serde_json::to_vec_pretty(&report).expect("report serialises");
        out.push(b'\n');
        out
    }

    /// A human-readable summary: files found, samples per subset, skips per reason and
    /// the first `first` skipped rows.
    pub fn summary(&self, first: usize, report_path: Option<&Path>) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        for f in &self.files {
            if f.found {
                let _ = writeln!(s, "found {} ({} rows)", f.path.display(), f.rows);
            } else {
                let _ = writeln!(
                    s,
                    "absent {} (subset {} not imported)",
                    f.path.display(),
                    f.subset
                );
            }
        }
        let _ = writeln!(s, "samples written: {}", self.total_written());
        for (subset, n) in &self.written {
            let _ = writeln!(s, "  {subset}: {n}");
        }
        if !self.sources.is_empty() {
            let _ = writeln!(s, "source photos found by:");
            for (way, n) in &self.sources {
                let _ = writeln!(s, "  {}: {n}", way.name());
            }
        }
        let skips: Vec<Skip> = self
            .skipped
            .iter()
            .map(|row| Skip {
                at: format!("{}:{}", row.file, row.line),
                reason: row.reason.name(),
                detail: row.reason.to_string(),
            })
            .collect();
        write_skips(&mut s, "rows", &skips, first, report_path);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_listed_and_unique() {
        let mut names = SkipReason::NAMES.to_vec();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), SkipReason::NAMES.len());
        assert!(SkipReason::NAMES.contains(&SkipReason::NoRejectedImages.name()));
        assert!(SkipReason::NAMES.contains(&SkipReason::missing("text").name()));
    }

    #[test]
    fn report_lists_every_row_with_file_line_and_reason() {
        let report = ImportReport {
            written: [(Subset::Sft, 2)].into(),
            skipped: vec![
                SkippedRow {
                    file: "sft.jsonl".into(),
                    line: 3,
                    reason: SkipReason::missing("text"),
                },
                SkippedRow {
                    file: "sft.jsonl".into(),
                    line: 9,
                    reason: SkipReason::DuplicateOutput {
                        path: "images/a.png".into(),
                        first_line: 1,
                    },
                },
            ],
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::from_slice(&report.to_json()).unwrap();
        assert_eq!(v["written"]["sft"], 2);
        assert_eq!(v["skipped_by_reason"]["missing_field"], 1);
        assert_eq!(v["skipped"][1]["line"], 9);
        assert_eq!(v["skipped"][1]["reason"], "duplicate_output");
        assert!(v["skipped"][1]["detail"]
            .as_str()
            .unwrap()
            .contains("line 1"));
        let text = report.summary(1, None);
        assert!(text.contains("sft.jsonl:3: missing_field"), "{text}");
        assert!(!text.contains("sft.jsonl:9"), "{text}");
        assert!(text.contains("duplicate_output: 1"), "{text}");
    }
}
