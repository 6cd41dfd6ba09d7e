//! `editfeed manifest merge`: the manifest of a pack written in parts
//! ([`super::parts`]). The parts' folders must lie inside the dataset's folder (or
//! prefix); their shards stay where they are, and the manifest names them by their path
//! from there. Only the indexes are read (their checksums checked), so merging costs a
//! few requests per shard, whatever the dataset's size.
//!
//! The parts are checked first: each must be a part record of the same pack (the same
//! input and options), each index from 0 to N-1 must be given exactly once, and their
//! rows must follow each other. The content hash is then fed the samples of every part
//! in order, so the dataset version is the one a single run gives. The parts' reports
//! of skipped rows become one report beside the manifest.
//!
//! Flow: parts (shards + part.json) -> MERGE -> manifest.json.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::manifest::{Manifest, ShardManifest};
use super::parts::{PartRecord, PART_FILE, PART_FORMAT};
use super::pico_banana::{ImportReport, DEFAULT_REPORT_FILE};
use super::splits::SplitSource;
use super::writer::{DatasetWriter, WriteError, WriteOptions};
use super::Subset;
use crate::store::{AsLocation, Location, Store, StoreConfig, StoreError, UrlError};

/// Why parts could not be merged; every variant names the part.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// No part was given.
    #[error("no parts to merge")]
    NoParts,
    /// A part's folder is not inside the dataset's.
    #[error("part {part} is not inside {out}: the manifest names shards by their path from the dataset's folder")]
    NotInside {
        /// The part's folder.
        part: String,
        /// The dataset's folder.
        out: String,
    },
    /// A part's record is missing or unreadable.
    #[error("part {part}: {why}")]
    Record {
        /// The part's folder.
        part: String,
        /// What is wrong.
        why: String,
    },
    /// Two parts disagree (input, options, count, splits or rows).
    #[error("part {part} does not belong with part {first}: {what}")]
    Mismatch {
        /// The part that differs.
        part: String,
        /// The part it was compared with.
        first: String,
        /// What differs.
        what: String,
    },
    /// One index was given twice.
    #[error("parts {a} and {b} are both part {index} of {count}")]
    Twice {
        /// The index.
        index: u32,
        /// Of how many.
        count: u32,
        /// One folder.
        a: String,
        /// The other.
        b: String,
    },
    /// An index was not given.
    #[error("part {index} of {count} is missing: no folder given holds it")]
    Missing {
        /// The index.
        index: u32,
        /// Of how many.
        count: u32,
    },
    /// A shard of a part is unusable.
    #[error("part {part}: {why}")]
    Shard {
        /// The part's folder.
        part: String,
        /// What is wrong.
        why: String,
    },
    /// The dataset could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The dataset's store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The dataset's location does not parse.
    #[error(transparent)]
    Location(#[from] UrlError),
}

/// What a merge wrote.
#[derive(Debug)]
pub struct Merged {
    /// The dataset's manifest.
    pub manifest: Manifest,
    /// The parts' reports as one, when the parts came from `pack pico-banana`.
    pub report: Option<(ImportReport, PathBuf)>,
}

/// One part, read.
struct ReadPart {
    shown: String,
    /// Its folder relative to the dataset's (`/`-separated, no trailing `/`).
    rel: String,
    record: PartRecord,
}

/// The path of `part` inside `out`, `/`-separated.
fn relative(out: &Location, part: &Location) -> Option<String> {
    let rel = match (out, part) {
        (Location::Local(o), Location::Local(p)) => {
            let (o, p) = (std::path::absolute(o).ok()?, std::path::absolute(p).ok()?);
            p.strip_prefix(&o).ok()?.to_str()?.to_string()
        }
        (Location::Remote(o), Location::Remote(p))
            if o.scheme == p.scheme && o.bucket == p.bucket =>
        {
            let (o, p) = (o.prefix.trim_matches('/'), p.prefix.trim_matches('/'));
            if o.is_empty() {
                p.to_string()
            } else {
                p.strip_prefix(o)?.strip_prefix('/')?.to_string()
            }
        }
        _ => return None,
    };
    let rel = rel.trim_matches('/').to_string();
    (!rel.is_empty() && !rel.split('/').any(|c| c == ".." || c == ".")).then_some(rel)
}

/// Reads and checks the parts, in index order.
fn read_parts(out: &Path, store: &Store, parts: &[PathBuf]) -> Result<Vec<ReadPart>, MergeError> {
    let out_loc = out.as_location()?;
    let mut read = Vec::new();
    for part in parts {
        let shown = part.display().to_string();
        let rel = part
            .as_location()
            .ok()
            .and_then(|p| relative(&out_loc, &p))
            .ok_or_else(|| MergeError::NotInside {
                part: shown.clone(),
                out: out.display().to_string(),
            })?;
        let failed = |why: String| MergeError::Record {
            part: shown.clone(),
            why,
        };
        let bytes = store
            .read(&format!("{rel}/{PART_FILE}"))
            .map_err(|e| failed(format!("no {PART_FILE}: {e}")))?;
        let record: PartRecord = serde_json::from_slice(&bytes)
            .map_err(|e| failed(format!("{PART_FILE} does not parse: {e}")))?;
        if record.format != PART_FORMAT {
            return Err(failed(format!("{PART_FILE} is not a part record")));
        }
        read.push(ReadPart { shown, rel, record });
    }
    let first = read.first().ok_or(MergeError::NoParts)?;
    let (count, f) = (first.record.parts, &first.record);
    for p in &read[1..] {
        let r = &p.record;
        let differs = if r.pack != f.pack {
            Some(format!("packed by {} and {}", r.pack, f.pack))
        } else if r.parts != f.parts {
            Some(format!("one of {} parts, not {}", r.parts, f.parts))
        } else if r.input != f.input {
            Some("packed from other input or with other options".to_string())
        } else if r.total_rows != f.total_rows {
            Some(format!(
                "{} rows in all, not {}",
                r.total_rows, f.total_rows
            ))
        } else if (&r.written.splits, &r.written.split_source)
            != (&f.written.splits, &f.written.split_source)
        {
            Some("other splits".to_string())
        } else {
            None
        };
        if let Some(what) = differs {
            return Err(MergeError::Mismatch {
                part: p.shown.clone(),
                first: first.shown.clone(),
                what,
            });
        }
    }
    let mut by_index: BTreeMap<u32, ReadPart> = BTreeMap::new();
    for p in read {
        let index = p.record.part;
        if let Some(other) = by_index.get(&index) {
            return Err(MergeError::Twice {
                index,
                count,
                a: other.shown.clone(),
                b: p.shown,
            });
        }
        by_index.insert(index, p);
    }
    let mut next = 0;
    for index in 0..count {
        let p = by_index
            .get(&index)
            .ok_or(MergeError::Missing { index, count })?;
        if p.record.rows.start != next {
            return Err(MergeError::Record {
                part: p.shown.clone(),
                why: format!(
                    "packs rows {:?}, but the parts before it end at row {next}",
                    p.record.rows
                ),
            });
        }
        next = p.record.rows.end;
    }
    if next != first_total(&by_index) {
        return Err(MergeError::Record {
            part: by_index[&(count - 1)].shown.clone(),
            why: format!("the parts end at row {next} of {}", first_total(&by_index)),
        });
    }
    Ok(by_index.into_values().collect())
}

fn first_total(parts: &BTreeMap<u32, ReadPart>) -> u64 {
    parts.values().next().map_or(0, |p| p.record.total_rows)
}

/// Merges the parts in `parts` (folders or URLs inside `out`) into the dataset `out`:
/// writes its manifest (and, for Pico-Banana packs, `import-report.json`).
pub fn merge(parts: &[PathBuf], out: &Path, overwrite: bool) -> Result<Merged, MergeError> {
    let location = out.as_location()?;
    let store = Store::open(&location, &StoreConfig::from_env())?;
    let read = read_parts(out, &store, parts)?;
    let first = &read[0].record;
    let splits = (!first.written.splits.is_empty())
        .then(|| SplitSource::Given(first.written.splits.clone()));
    let split_note = first.written.split_source.clone();
    let opts = WriteOptions {
        overwrite,
        ..WriteOptions::default()
    };
    let mut writer = DatasetWriter::with_store(store, opts)?
        .with_splits(splits)
        .describe_splits(split_note);
    for subset in Subset::ALL {
        for p in &read {
            let Some(written) = p.record.written.subsets.get(&subset) else {
                continue;
            };
            let shard_err = |why: String| MergeError::Shard {
                part: p.shown.clone(),
                why,
            };
            let shards: Vec<ShardManifest> = written
                .shards
                .iter()
                .map(|s| ShardManifest {
                    path: format!("{}/{}", p.rel, s.path),
                    index: s.index.as_ref().map(|i| format!("{}/{i}", p.rel)),
                    ..s.clone()
                })
                .collect();
            let mut samples = Vec::new();
            for shard in &shards {
                samples.extend(writer.indexed_samples(shard).map_err(shard_err)?);
            }
            writer
                .adopt_shards(subset, shards, &samples, written.max_turns)
                .map_err(|e| shard_err(e.to_string()))?;
        }
    }
    let report = if first.pack == "pico-banana" {
        let mut reports = Vec::new();
        for p in &read {
            let r: ImportReport = serde_json::from_value(p.record.report.clone()).map_err(|e| {
                MergeError::Record {
                    part: p.shown.clone(),
                    why: format!("its report does not parse: {e}"),
                }
            })?;
            reports.push(r);
        }
        let merged = ImportReport::merge(reports);
        let path = writer.root().join(DEFAULT_REPORT_FILE);
        writer.write_side_file(&path, &merged.to_json())?;
        Some((merged, path))
    } else {
        None
    };
    let manifest = writer.finish()?;
    Ok(Merged { manifest, report })
}
