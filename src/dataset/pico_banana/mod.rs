//! Imports Pico-Banana-400K exactly as published (see `reference/PICO_BANANA.md`): the
//! three JSONL metadata files under a root folder, the edited PNGs at the relative paths
//! they name, and source photos the user downloaded from Open Images. This is the first
//! step of the flow for that dataset: publication -> IMPORT -> dataset writer -> shards
//! -> the daemon.
//!
//! Rows are written in file order: subset `sft` from `sft.jsonl`, `preference` from
//! `preference.jsonl`, `multi_turn` from `multi-turn.jsonl` (absent files are reported
//! and skipped). A sample's key is its 0-based ordinal among the accepted rows of its
//! subset, zero-padded to 8 digits; `meta.origin` is `<file>:<line>`.
//!
//! Bad rows never abort the import: each is skipped, counted and reported with its file,
//! line and a [`SkipReason`]. Only fatal problems (unreadable root, map or metadata
//! file, unwritable output) are an [`ImportError`]. Every path a row names is resolved
//! and confined as [`super::input_files`] describes. A row whose output image
//! (`output_image`; for multi-turn, the final turn's image; compared by its real path)
//! was already used by an
//! earlier *accepted* row of the same subset is skipped as a duplicate: the first row
//! keeps the path, the second and later ones are reported as `duplicate_output`.
//!
//! Source photos are found as described in [`sources`]; images are checked and,
//! only when asked, transcoded as described in [`images`].

pub mod images;
pub mod metadata;
pub mod options;
pub mod outcome;
pub mod report;
pub mod rows;
mod samples;
pub mod sources;

use std::collections::HashMap;
use std::path::PathBuf;

pub use images::ImageOptions;
pub use metadata::{count_rows, METADATA_FILES};
pub use options::ImportOptions;
pub use outcome::{SkipReason, SourceWay};
pub use report::{ImportReport, MetadataFile, SkippedRow};
pub use sources::{SourceMap, SourceOptions, SourceResolver};

use self::metadata::{for_each_line, open_metadata, wanted_urls};
use self::samples::RowContext;
use super::input_files::Confinement;
use super::manifest::Manifest;
use super::writer::{DatasetWriter, WriteError};

/// The report's file name inside the output folder when no path is given.
pub const DEFAULT_REPORT_FILE: &str = "import-report.json";

/// A problem that stops the whole import.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The root folder is missing or unreadable.
    #[error("pico-banana root {path}: {source}")]
    Root {
        /// The root folder.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// None of the three metadata files is in the root.
    #[error("no sft.jsonl, preference.jsonl or multi-turn.jsonl in {root}")]
    NoMetadata {
        /// The root folder.
        root: PathBuf,
    },
    /// A metadata file could not be read.
    #[error("{path}:{line}: {source}")]
    Read {
        /// The metadata file.
        path: PathBuf,
        /// The line being read.
        line: u64,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// The source map is unreadable or lacks its columns.
    #[error("source map {path}: {why}")]
    SourceMap {
        /// The CSV file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The options contradict themselves or name missing folders.
    #[error("{0}")]
    Options(String),
    /// The report could not be written.
    #[error("import report: {0}")]
    Report(#[source] WriteError),
    /// The dataset could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The dataset could not be written, and then neither could the report.
    #[error("{write}; the import report could not be written either: {report}")]
    WriteAndReport {
        /// The shard or index write that failed.
        #[source]
        write: WriteError,
        /// The report's write.
        report: Box<WriteError>,
    },
    /// Every row was skipped (the report says why).
    #[error("no row was imported: {skipped} rows skipped, see {}", report_path.display())]
    NothingImported {
        /// Rows skipped.
        skipped: usize,
        /// The report file.
        report_path: PathBuf,
        /// The report, for printing a summary.
        report: Box<ImportReport>,
    },
}

/// What a finished import did.
#[derive(Debug, Clone)]
pub struct ImportOutcome {
    /// Counts and every skipped row.
    pub report: ImportReport,
    /// Where the JSON report was written.
    pub report_path: PathBuf,
    /// The manifest of the dataset written.
    pub manifest: Manifest,
}

/// Imports Pico-Banana-400K into `writer`, writes the JSON report, then finishes the
/// dataset (manifest last). `progress` is called with 1 for every row looked at.
pub fn import(
    opts: &ImportOptions,
    mut writer: DatasetWriter,
    progress: &dyn Fn(u64),
) -> Result<ImportOutcome, ImportError> {
    opts.validate()?;
    let map = match (&opts.sources.source_map, &opts.sources.source_images) {
        (Some(csv), Some(images)) => {
            let wanted = wanted_urls(&opts.root, opts.limit)?;
            let map = SourceMap::load(csv, Some(&wanted))?;
            tracing::info!(map = %csv.display(), urls = map.len(), wanted = wanted.len(), "loaded source map");
            Some((map, images.clone()))
        }
        _ => None,
    };
    let folders = |e: std::io::Error| ImportError::Options(format!("import folders: {e}"));
    let rows_ctx = RowContext {
        root: &opts.root,
        edits: Confinement::new([opts.root.as_path()]).map_err(folders)?,
        resolver: SourceResolver::new(&opts.root, opts.sources.source_dir.clone(), map)
            .map_err(folders)?,
        images: opts.images,
    };
    let mut report = ImportReport::default();
    for (subset, name) in METADATA_FILES {
        let path = opts.root.join(name);
        let Some(file) = open_metadata(&path)? else {
            tracing::info!(file = %path.display(), "metadata file absent, subset {subset} not imported");
            report.files.push(MetadataFile {
                subset,
                path,
                found: false,
                rows: 0,
            });
            continue;
        };
        tracing::info!(file = %path.display(), "importing {subset}");
        // Real output path -> the line of the accepted row that used it first.
        let mut used: HashMap<PathBuf, u64> = HashMap::new();
        let rows = for_each_line(&path, file, opts.limit, |line, text| {
            progress(1);
            let accepted = report.written.get(&subset).copied().unwrap_or(0);
            let built = rows_ctx.build_sample(subset, name, line, text, accepted, &used);
            match built {
                Ok((sample, output_path, way)) => {
                    writer.add(&sample)?;
                    used.insert(output_path, line);
                    *report.written.entry(subset).or_insert(0) += 1;
                    *report.sources.entry(way).or_insert(0) += 1;
                }
                Err(reason) => {
                    tracing::debug!(
                        file = name,
                        line,
                        reason = reason.name(),
                        "skipped row: {reason}"
                    );
                    report.skipped.push(SkippedRow {
                        file: name.to_string(),
                        line,
                        reason,
                    });
                }
            }
            Ok(())
        })?;
        report.files.push(MetadataFile {
            subset,
            path,
            found: true,
            rows,
        });
    }
    if report.files.iter().all(|f| !f.found) {
        return Err(ImportError::NoMetadata {
            root: opts.root.clone(),
        });
    }
    let report_path = opts
        .report
        .clone()
        .unwrap_or_else(|| writer.root().join(DEFAULT_REPORT_FILE));
    // The shards first: on a full disk, their failure is the one to name, and the
    // report is still attempted.
    let closed = writer.close_shards();
    let reported = writer.write_side_file(&report_path, &report.to_json());
    match (closed, reported) {
        (Err(write), Err(report)) => {
            return Err(ImportError::WriteAndReport {
                write,
                report: Box::new(report),
            })
        }
        (Err(write), Ok(())) => return Err(ImportError::Write(write)),
        (Ok(()), Err(report)) => return Err(ImportError::Report(report)),
        (Ok(()), Ok(())) => {}
    }
    if report.total_written() == 0 {
        return Err(ImportError::NothingImported {
            skipped: report.skipped.len(),
            report_path,
            report: Box::new(report),
        });
    }
    let manifest = writer.finish()?;
    Ok(ImportOutcome {
        report,
        report_path,
        manifest,
    })
}
