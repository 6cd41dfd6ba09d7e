//! Imports Pico-Banana-400K exactly as published (see `reference/PICO_BANANA.md`): the
//! three JSONL metadata files under a root folder (or object-store prefix), the edited
//! PNGs at the relative paths they name, and source photos the user downloaded from
//! Open Images (or reads from an object-store prefix of `<ImageID>.jpg`). This is the
//! first step of the flow for that dataset: publication -> IMPORT -> dataset writer ->
//! shards -> the daemon.
//!
//! Rows are written in file order: subset `sft` from `sft.jsonl`, `preference` from
//! `preference.jsonl`, `multi_turn` from `multi-turn.jsonl` (absent files are reported
//! and skipped). A sample's key is its row's 0-based ordinal among the non-blank rows
//! of its file, zero-padded to 8 digits (a skipped row leaves its number unused), so a
//! sample's key and bytes depend on its row alone; `meta.origin` is `<file>:<line>`.
//!
//! Bad rows never abort the import: each is skipped, counted and reported with its file,
//! line and a [`SkipReason`]. Only fatal problems (unreadable root, map or metadata
//! file, unwritable output) are an [`ImportError`]. Every path a row names is resolved
//! and confined as [`super::input_files`] and [`super::input_root`] describe. Output
//! images are claimed as [`Claims`] says: a row whose output image (`output_image`; for
//! multi-turn, the final turn's image; compared by its real path) an earlier row of the
//! same file already names is skipped as `duplicate_output`.
//!
//! Rows are read, checked, transcoded and compressed on several threads and written in
//! order ([`crate::dataset::parallel`]), so the dataset is the same for any thread
//! count; a pack can be split in parts ([`import_part`], [`crate::dataset::parts`]) and
//! resumed after an interruption ([`resume`]).
//!
//! Source photos are found as described in [`sources`]; images are checked and,
//! only when asked, transcoded as described in [`images`].

pub mod images;
pub mod metadata;
pub mod options;
pub mod outcome;
pub mod report;
pub mod resume;
pub mod rows;
mod run;
mod samples;
pub mod sources;

use std::path::PathBuf;

pub use images::ImageOptions;
pub use metadata::{count_rows, METADATA_FILES};
pub use options::ImportOptions;
pub use outcome::{SkipReason, SourceWay};
pub use report::{ImportReport, MetadataFile, SkippedRow};
pub use run::{import, import_part};
pub use samples::Claims;
pub use sources::{SourceMap, SourceOptions, SourceResolver};

use super::manifest::Manifest;
use super::parts::PartRecord;
use super::writer::WriteError;

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

/// What a finished part of an import did ([`import_part`]).
#[derive(Debug, Clone)]
pub struct PartOutcome {
    /// Counts and every skipped row of the part.
    pub report: ImportReport,
    /// Where the part's JSON report was written.
    pub report_path: PathBuf,
    /// The part's record (`part.json`).
    pub record: PartRecord,
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
