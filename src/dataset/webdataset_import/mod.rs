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
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;

use crossbeam_channel::{bounded, Sender};

use mapping::transcode_edits;
pub use mapping::{prepare, Prepared};
pub use report::{InputShard, SkippedSample, WdsSkipReason, WebDatasetReport};

use super::input_files::{open_regular, InputFileError};
use super::manifest::Manifest;
use super::parallel::{run_ordered, Parallelism};
use super::writer::{DatasetWriter, EncodedSample, SampleEncoder, WriteError};
use super::Subset;
use crate::codec::TranscodeTarget;
use crate::shard::{stream_samples, RawSample, ShardError};

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
    /// Threads that map, transcode and compress samples, and the memory bound of the
    /// work in flight (the output does not depend on them).
    pub parallel: Parallelism,
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
    counted: &'a Cell<u64>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counted.set(self.counted.get() + n as u64);
        Ok(n)
    }
}

/// What the reader of the input shards sends, in order.
enum Input {
    /// A sample of shard `shard`, after `bytes` more bytes of input.
    Sample {
        shard: usize,
        raw: RawSample,
        bytes: u64,
    },
    /// Shard `shard` ended after `samples` samples; `bytes` more bytes of it were read
    /// (the padding after the end-of-archive marker counts too).
    End {
        shard: usize,
        samples: u64,
        bytes: u64,
    },
}

/// A sample encoded (with the fields mapping dropped; `None` when it was kept member
/// for member), or why it is skipped.
type Mapped = Result<(EncodedSample, Option<Vec<String>>), WdsSkipReason>;

/// An input, done by a worker.
enum Done {
    Sample {
        shard: usize,
        key: String,
        bytes: u64,
        /// The encoded sample and what mapping dropped, or why it is skipped; the outer
        /// error is fatal.
        outcome: Result<Mapped, WriteError>,
    },
    End {
        shard: usize,
        samples: u64,
        bytes: u64,
    },
}

/// Total bytes of the input shards, for sizing a progress bar.
pub fn input_bytes(shards: &[PathBuf]) -> u64 {
    shards
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// Streams the samples of every input in order into `tx`, until the end or until the
/// receiver has gone.
fn read_inputs(shards: &[PathBuf], files: Vec<File>, tx: Sender<Result<Input, WebDatasetError>>) {
    for (i, (path, file)) in shards.iter().zip(files).enumerate() {
        let shard = path.display().to_string();
        tracing::info!(shard = %shard, "importing webdataset shard");
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let counted = Cell::new(0);
        let reader = Counting {
            inner: BufReader::with_capacity(1 << 20, file),
            counted: &counted,
        };
        let (mut samples, mut sent) = (0u64, 0u64);
        let mut gone = false;
        let streamed = stream_samples(&shard, reader, |raw| {
            samples += 1;
            let bytes = counted.get() - sent;
            sent += bytes;
            let input = Input::Sample {
                shard: i,
                raw,
                bytes,
            };
            if tx.send(Ok(input)).is_err() {
                gone = true;
                // Stops the stream: nobody is listening any more.
                return Err(ShardError::Corrupt {
                    shard: shard.clone(),
                    offset: 0,
                    why: "import stopped".into(),
                });
            }
            Ok(())
        });
        if gone {
            return;
        }
        let end = streamed.map(|()| Input::End {
            shard: i,
            samples,
            bytes: len.saturating_sub(sent),
        });
        let failed = end.is_err();
        if tx.send(end.map_err(WebDatasetError::from)).is_err() || failed {
            return;
        }
    }
}

/// Maps, transcodes and encodes one input sample.
fn work_on(
    encoder: &mut SampleEncoder,
    opts: &WebDatasetOptions,
    raw: RawSample,
) -> Result<Mapped, WriteError> {
    let key = raw.key.clone();
    let prepared = prepare(opts.subset, raw).and_then(|p| match opts.transcode_edits {
        Some(target) => transcode_edits(&key, p, target),
        None => Ok(p),
    });
    let (category, members, dropped) = match prepared {
        Ok(Prepared::Kept { category, members }) => (category, members, None),
        Ok(Prepared::Mapped { sample, dropped }) => {
            sample.check()?;
            let members = sample.to_members();
            (sample.meta.category, members, Some(dropped))
        }
        Err(reason) => return Ok(Err(reason)),
    };
    let encoded = encoder.encode(
        opts.subset,
        category,
        &key,
        members.iter().map(|(f, b)| (f.as_str(), &b[..])),
    )?;
    Ok(Ok((encoded, dropped)))
}

/// Imports WebDataset shards into `writer`, writes the JSON report, then finishes the
/// dataset. `progress` is called with the input bytes consumed. Samples are mapped,
/// transcoded and compressed on `opts.parallel` threads and written in input order.
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
    let wopts = writer.options().clone();
    std::thread::scope(|scope| {
        let (tx, rx) = bounded(opts.parallel.threads * 4);
        scope.spawn(|| read_inputs(&opts.shards, files, tx));
        run_ordered(
            opts.parallel,
            rx.into_iter(),
            || SampleEncoder::new(&wopts).expect("the writer checked its level"),
            |encoder, input: Input| match input {
                Input::Sample { shard, raw, bytes } => Done::Sample {
                    shard,
                    key: raw.key.clone(),
                    bytes,
                    outcome: work_on(encoder, opts, raw),
                },
                Input::End {
                    shard,
                    samples,
                    bytes,
                } => Done::End {
                    shard,
                    samples,
                    bytes,
                },
            },
            |done| match done {
                Done::Sample {
                    outcome: Ok(Ok((e, _))),
                    ..
                } => e.frame.bytes.len() as u64,
                _ => 0,
            },
            |done| {
                let (shard, key, bytes, outcome) = match done {
                    Done::End {
                        shard,
                        samples,
                        bytes,
                    } => {
                        progress(bytes);
                        report.shards.push(InputShard {
                            path: opts.shards[shard].display().to_string(),
                            samples,
                        });
                        return Ok(());
                    }
                    Done::Sample {
                        shard,
                        key,
                        bytes,
                        outcome,
                    } => (shard, key, bytes, outcome),
                };
                progress(bytes);
                // A key already written wins over whatever the sample holds.
                let outcome = match keys.contains(&key) {
                    true => Err(WdsSkipReason::DuplicateKey),
                    false => outcome?,
                };
                match outcome {
                    Ok((encoded, dropped)) => {
                        writer.add_encoded(encoded, None)?;
                        match dropped {
                            None => report.kept += 1,
                            Some(dropped) => {
                                for field in dropped {
                                    *report.dropped_fields.entry(field).or_insert(0) += 1;
                                }
                                report.mapped += 1;
                            }
                        }
                        keys.insert(key);
                    }
                    Err(reason) => {
                        let shard = opts.shards[shard].display().to_string();
                        tracing::debug!(shard = %shard, key = %key, reason = reason.name(), "skipped sample: {reason}");
                        report.skipped.push(SkippedSample { shard, key, reason });
                    }
                }
                Ok::<(), WebDatasetError>(())
            },
        )
    })?;
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
