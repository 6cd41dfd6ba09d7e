//! Makes existing WebDataset tar shards servable: streams each input (plain `.tar` or
//! `.tar.zst` with any number of frames) in the order given, and writes its samples in
//! stream order through the dataset writer into editfeed shards with sidecar indexes
//! and a manifest. Flow: foreign shards -> WEBDATASET IMPORT -> dataset writer ->
//! shards -> the daemon.
//!
//! A sample that already fits the editfeed schema (`json` plus `src.*`, `edit.*`, ...)
//! is kept member for member, bytes and order unchanged. Other samples are mapped from
//! common WebDataset conventions, keeping every image's bytes exactly:
//! - source: a bare `jpg`/`jpeg`/`png`/`webp`/`qoi`/`ppm` member, or `input.*`,
//!   `source.*`, `src.*`;
//! - edit: `edit.*`, `output.*`, `target.*` (and the editfeed names `chosen.*`,
//!   `rejectedN.*`, `turnN.*` for the other subsets);
//! - instruction (`meta.text`): a `instruction`, `prompt`, `txt`, `text` or `caption`
//!   member (also with a `.txt` suffix), first in that order, or the same keys of a
//!   foreign `json` member;
//! - any other member is dropped (counted per field name in the report).
//!
//! A sample that cannot be mapped is skipped and reported with its shard and key, like
//! the Pico-Banana importer's rows; a corrupt input shard stops the import.
//!
//! With [`WebDatasetOptions::transcode_edits`], every image but the source is re-encoded
//! (for example to QOI, lossless and much faster to decode than PNG) and the sample is
//! written anew from its schema.

mod mapping;
mod report;

use std::cell::Cell;
use std::collections::HashSet;
use std::io::{BufReader, Read};
use std::path::PathBuf;

use mapping::transcode_edits;
pub use mapping::{prepare, Prepared};
pub use report::{InputShard, SkippedSample, WdsSkipReason, WebDatasetReport};

use super::input_files::{open_regular, InputFileError};
use super::manifest::Manifest;
use super::writer::{DatasetWriter, WriteError};
use super::Subset;
use crate::codec::TranscodeTarget;
use crate::shard::{stream_samples, ShardError};

/// The report's file name inside the output folder when no path is given.
pub const DEFAULT_REPORT_FILE: &str = "import-report.json";

/// What to import.
#[derive(Debug, Clone)]
pub struct WebDatasetOptions {
    /// The input shards, in order.
    pub shards: Vec<PathBuf>,
    /// The subset every sample is written to.
    pub subset: Subset,
    /// Where to write the JSON report; `<output>/import-report.json` when `None`.
    pub report: Option<PathBuf>,
    /// Re-encode every image but the source to this format; `None` keeps the bytes.
    pub transcode_edits: Option<TranscodeTarget>,
}

/// A problem that stops the whole import.
#[derive(Debug, thiserror::Error)]
pub enum WebDatasetError {
    /// No input shards were given.
    #[error("no input shards")]
    NoShards,
    /// An input shard could not be opened.
    #[error("{path}: {source}")]
    Open {
        /// The shard.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// An input shard is not a regular file (a FIFO, a device, a folder): it is not
    /// read, so a FIFO cannot block the import.
    #[error(transparent)]
    NotAFile(InputFileError),
    /// An input shard is corrupt (broken tar or zstd, members of a sample not adjacent).
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// The report could not be written.
    #[error("import report: {0}")]
    Report(#[source] WriteError),
    /// The dataset could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Every sample was skipped.
    #[error("no sample was imported: {skipped} samples skipped, see {}", report_path.display())]
    NothingImported {
        /// Samples skipped.
        skipped: usize,
        /// The report file.
        report_path: PathBuf,
        /// The report, for printing a summary.
        report: Box<WebDatasetReport>,
    },
}

/// What a finished import did.
#[derive(Debug, Clone)]
pub struct WebDatasetOutcome {
    /// Counts and every skipped sample.
    pub report: WebDatasetReport,
    /// Where the JSON report was written.
    pub report_path: PathBuf,
    /// The manifest of the dataset written.
    pub manifest: Manifest,
}

/// Counts bytes as they are read, for a progress bar over input bytes.
struct Counting<'a, R> {
    inner: R,
    progress: &'a dyn Fn(u64),
    counted: &'a Cell<u64>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.counted.set(self.counted.get() + n as u64);
            (self.progress)(n as u64);
        }
        Ok(n)
    }
}

/// Total bytes of the input shards, for sizing a progress bar.
pub fn input_bytes(shards: &[PathBuf]) -> u64 {
    shards
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// Imports WebDataset shards into `writer`, writes the JSON report, then finishes the
/// dataset. `progress` is called with the input bytes consumed.
pub fn import_webdataset(
    opts: &WebDatasetOptions,
    mut writer: DatasetWriter,
    progress: &dyn Fn(u64),
) -> Result<WebDatasetOutcome, WebDatasetError> {
    if opts.shards.is_empty() {
        return Err(WebDatasetError::NoShards);
    }
    // Open every input first, so a typo fails before anything is written.
    let mut files = Vec::with_capacity(opts.shards.len());
    for path in &opts.shards {
        files.push(open_regular(path).map_err(|e| match e {
            InputFileError::Missing { source, .. } | InputFileError::Read { source, .. } => {
                WebDatasetError::Open {
                    path: path.clone(),
                    source,
                }
            }
            other => WebDatasetError::NotAFile(other),
        })?);
    }
    let mut report = WebDatasetReport {
        subset: Some(opts.subset),
        ..Default::default()
    };
    let mut keys: HashSet<String> = HashSet::new();
    for (path, file) in opts.shards.iter().zip(files) {
        let shard = path.display().to_string();
        tracing::info!(shard = %shard, "importing webdataset shard");
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let counted = Cell::new(0);
        let reader = Counting {
            inner: BufReader::with_capacity(1 << 20, file),
            progress,
            counted: &counted,
        };
        let mut samples = 0u64;
        let mut fatal: Option<WriteError> = None;
        let streamed = stream_samples(&shard, reader, |raw| {
            samples += 1;
            let key = raw.key.clone();
            let prepared = if keys.contains(&key) {
                Err(WdsSkipReason::DuplicateKey)
            } else {
                prepare(opts.subset, raw).and_then(|p| match opts.transcode_edits {
                    Some(target) => transcode_edits(&key, p, target),
                    None => Ok(p),
                })
            };
            let written = match prepared {
                Ok(Prepared::Kept { category, members }) => {
                    let r = writer.add_members(
                        opts.subset,
                        category,
                        &key,
                        members.iter().map(|(f, b)| (f.as_str(), &b[..])),
                    );
                    r.map(|_| report.kept += 1)
                }
                Ok(Prepared::Mapped { sample, dropped }) => {
                    for field in dropped {
                        *report.dropped_fields.entry(field).or_insert(0) += 1;
                    }
                    writer.add(&sample).map(|_| report.mapped += 1)
                }
                Err(reason) => {
                    tracing::debug!(shard = %shard, key = %key, reason = reason.name(), "skipped sample: {reason}");
                    report.skipped.push(SkippedSample {
                        shard: shard.clone(),
                        key,
                        reason,
                    });
                    return Ok(());
                }
            };
            match written {
                Ok(()) => {
                    keys.insert(key);
                    Ok(())
                }
                Err(e) => {
                    fatal = Some(e);
                    // Any error stops the stream; the real one is in `fatal`.
                    Err(ShardError::Corrupt {
                        shard: shard.clone(),
                        offset: 0,
                        why: "writer failed".into(),
                    })
                }
            }
        });
        if let Some(e) = fatal {
            return Err(e.into());
        }
        streamed?;
        // Readers stop at the end-of-archive marker; count the padding after it too, so
        // the bar ends at the total it was sized with.
        progress(len.saturating_sub(counted.get()));
        report.shards.push(InputShard {
            path: shard,
            samples,
        });
    }
    let report_path = opts
        .report
        .clone()
        .unwrap_or_else(|| writer.root().join(DEFAULT_REPORT_FILE));
    writer
        .write_side_file(&report_path, &report.to_json())
        .map_err(WebDatasetError::Report)?;
    if report.written() == 0 {
        return Err(WebDatasetError::NothingImported {
            skipped: report.skipped.len(),
            report_path,
            report: Box::new(report),
        });
    }
    let manifest = writer.finish()?;
    Ok(WebDatasetOutcome {
        report,
        report_path,
        manifest,
    })
}
