//! Runs an import: scans the metadata, then turns the rows of the pack (or of its part)
//! into samples on several threads and hands them to the writer in canonical order,
//! closing each subset's last shard when its file ends, logging every closed shard for
//! `--resume`, and finishing with the report and the manifest (or, for a part, its
//! record).
//!
//! Flow: metadata scan -> rows -> PARALLEL SAMPLE BUILDING -> writer (here) -> shards.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::metadata::{self, RowText, Scan, METADATA_FILES};
use super::outcome::{SkipReason, SourceWay};
use super::report::{ImportReport, MetadataFile, SkippedRow};
use super::resume::{PackLog, LOG_FILE};
use super::samples::{EditFiles, RowContext};
use super::sources::{SourceMap, SourceResolver};
use super::{ImportError, ImportOptions, ImportOutcome, PartOutcome, DEFAULT_REPORT_FILE};
use crate::dataset::input_root::InputDir;
use crate::dataset::parallel::run_ordered;
use crate::dataset::parts::{PartRecord, PART_FILE, PART_FORMAT};
use crate::dataset::writer::{DatasetWriter, EncodedSample, SampleEncoder, WriteError};
use crate::dataset::Subset;
use crate::hex::hex;

/// One row, done by a worker.
struct RowDone {
    row: RowText,
    /// The encoded sample and how its source was found, or why the row is skipped; the
    /// outer error is fatal (a sample the schema refuses, a frame that cannot be made).
    outcome: Result<Result<(EncodedSample, SourceWay), SkipReason>, WriteError>,
}

/// Imports Pico-Banana-400K into `writer`, writes the JSON report, then finishes the
/// dataset (manifest last). `progress` is called with the number of rows done.
pub fn import(
    opts: &ImportOptions,
    writer: DatasetWriter,
    progress: &dyn Fn(u64),
) -> Result<ImportOutcome, ImportError> {
    if let Some(part) = opts.part {
        return Err(ImportError::Options(format!(
            "part {part} of an import is written by import_part, not import"
        )));
    }
    let (mut writer, report, report_path, _) = run(opts, writer, progress)?;
    let manifest = writer.write_manifest()?;
    // The manifest is written: the log has served (a stale one only costs a file).
    let _ = writer.store().delete(LOG_FILE);
    Ok(ImportOutcome {
        report,
        report_path,
        manifest,
    })
}

/// Imports the part `opts.part` of Pico-Banana-400K into `writer` (the part's own
/// folder): its shards, its report and its record (`part.json`), no manifest;
/// `editfeed manifest merge` makes the dataset of all parts.
pub fn import_part(
    opts: &ImportOptions,
    writer: DatasetWriter,
    progress: &dyn Fn(u64),
) -> Result<PartOutcome, ImportError> {
    let part = opts
        .part
        .ok_or_else(|| ImportError::Options("import_part needs a part".into()))?;
    if opts.resume {
        if let Some(done) = finished_part(opts, &writer)? {
            // A retried pod of a part that had finished: nothing to do again.
            tracing::info!(part = %part, "this part was packed already");
            return Ok(done);
        }
    }
    let (mut writer, report, report_path, ran) = run(opts, writer, progress)?;
    let written = writer.finish_part()?;
    let record = PartRecord {
        format: PART_FORMAT.into(),
        pack: "pico-banana".into(),
        part: part.index,
        parts: part.count,
        input: ran.input,
        rows: ran.rows,
        total_rows: ran.total_rows,
        written,
        report: serde_json::to_value(&report).expect("the report serialises"),
    };
    record.write(writer.store()).map_err(WriteError::Store)?;
    let _ = writer.store().delete(LOG_FILE);
    Ok(PartOutcome {
        report,
        report_path,
        record,
    })
}

/// The outcome of this part, when a run of the same pack already finished it (its
/// record is in the output, with this input digest).
fn finished_part(
    opts: &ImportOptions,
    writer: &DatasetWriter,
) -> Result<Option<PartOutcome>, ImportError> {
    let Ok(bytes) = writer.store().read(PART_FILE) else {
        return Ok(None);
    };
    let Ok(record) = serde_json::from_slice::<PartRecord>(&bytes) else {
        return Ok(None);
    };
    let root =
        InputDir::open(&opts.root).map_err(|e| ImportError::Options(format!("--root: {e}")))?;
    let scan = metadata::scan(&root, opts.limit)?;
    let same = opts
        .part
        .is_some_and(|p| (p.index, p.count) == (record.part, record.parts));
    if !same || record.input != input_digest(&scan, opts, writer) {
        return Ok(None);
    }
    let Ok(report) = serde_json::from_value(record.report.clone()) else {
        return Ok(None);
    };
    Ok(Some(PartOutcome {
        report,
        report_path: opts
            .report
            .clone()
            .unwrap_or_else(|| writer.root().join(DEFAULT_REPORT_FILE)),
        record,
    }))
}

/// What [`run`] learnt that a part's record keeps.
struct Ran {
    input: String,
    rows: std::ops::Range<u64>,
    total_rows: u64,
}

/// The digest of the input and of every option that changes what is written.
fn input_digest(scan: &Scan, opts: &ImportOptions, writer: &DatasetWriter) -> String {
    let mut h = Sha256::new();
    let (splits, split_source) = writer.split_description();
    let w = writer.options();
    let text = format!(
        "editfeed {} pico-banana\ninput {}\nimages {:?}\nsources {:?}\nlimit {:?}\n\
         target {:?} level {} literals {}\nsplits {splits:?} {split_source:?}\n",
        env!("CARGO_PKG_VERSION"),
        scan.fingerprint,
        opts.images,
        opts.sources,
        opts.limit,
        w.target,
        w.level,
        w.compress_literals,
    );
    h.update(text.as_bytes());
    hex(&h.finalize())
}

/// The import up to the last shard: returns the writer with every shard closed, the
/// report (written) and where it went.
fn run(
    opts: &ImportOptions,
    mut writer: DatasetWriter,
    progress: &dyn Fn(u64),
) -> Result<(DatasetWriter, ImportReport, PathBuf, Ran), ImportError> {
    opts.validate()?;
    let root =
        InputDir::open(&opts.root).map_err(|e| ImportError::Options(format!("--root: {e}")))?;
    let folders = |e: std::io::Error| ImportError::Options(format!("import folders: {e}"));
    let edits = EditFiles::new(&root).map_err(folders)?;
    let scan = metadata::scan(&root, opts.limit)?;
    if scan.rows.iter().all(Option::is_none) {
        return Err(ImportError::NoMetadata {
            root: opts.root.clone(),
        });
    }
    let open_dir = |flag: &str, p: &PathBuf| {
        InputDir::open(p).map_err(|e| ImportError::Options(format!("{flag}: {e}")))
    };
    let map = match (&opts.sources.source_map, &opts.sources.source_images) {
        (Some(csv), Some(images)) => {
            let map = SourceMap::load(csv, Some(&scan.wanted_urls))?;
            tracing::info!(map = %csv.display(), urls = map.len(), wanted = scan.wanted_urls.len(), "loaded source map");
            Some((map, open_dir("--source-images", images)?))
        }
        _ => None,
    };
    let source_dir = match &opts.sources.source_dir {
        Some(d) => Some(open_dir("--source-dir", d)?),
        None => None,
    };
    let ctx = RowContext {
        edits,
        resolver: SourceResolver::new(&root, source_dir, map).map_err(folders)?,
        images: opts.images,
    };
    let input = input_digest(&scan, opts, &writer);
    let total_rows = scan.total_rows();
    let range = opts.part.map_or(0..total_rows, |p| p.range(total_rows));
    let mut report = ImportReport {
        files: METADATA_FILES
            .iter()
            .zip(scan.rows)
            .map(|((subset, name), rows)| MetadataFile {
                subset: *subset,
                path: root.path_of(name),
                found: rows.is_some(),
                rows: rows.unwrap_or(0),
            })
            .collect(),
        ..ImportReport::default()
    };
    let part = opts.part.map(|p| p.to_string());
    let (mut log, start) = match opts
        .resume
        .then(|| PackLog::read(writer.store()))
        .transpose()?
    {
        Some(Some(log)) => {
            let resumed = log.resume(&mut writer, &input, part, range.start, report)?;
            report = resumed.report;
            (resumed.log, resumed.next_row)
        }
        found => {
            if found.is_some() {
                tracing::info!(out = %writer.store().url_of(""), "no pack log to resume from: packing from the start");
            }
            (PackLog::new(&input, part), range.start)
        }
    };
    progress(start - range.start);
    let claims = ctx.claims(metadata::rows(&root, opts.limit, scan.rows, 0..range.end))?;
    let claims = &claims;
    let wopts = writer.options().clone();
    let mut current: Option<Subset> = None;
    let ran = run_ordered(
        opts.parallel,
        metadata::rows(&root, opts.limit, scan.rows, start..range.end),
        || SampleEncoder::new(&wopts).expect("the writer checked its level"),
        |encoder, row: RowText| {
            let built = ctx.build_sample(
                row.subset,
                row.file,
                row.line,
                &row.text,
                row.ordinal,
                claims,
            );
            let outcome = match built {
                Ok((sample, way)) => encode(encoder, &sample).map(|e| Ok((e, way))),
                Err(reason) => Ok(Err(reason)),
            };
            RowDone { row, outcome }
        },
        |done| match &done.outcome {
            Ok(Ok((e, _))) => e.frame.bytes.len() as u64,
            _ => 0,
        },
        |done| {
            let row = done.row;
            progress(1);
            if current.is_some_and(|s| s != row.subset) {
                // The previous file is done: its subset's last shard is complete.
                writer.close_subset(current.expect("checked"))?;
                let closed = writer.take_closed();
                log.record(writer.store(), closed, row.global, &report)?;
            }
            current = Some(row.subset);
            match done.outcome? {
                Ok((sample, way)) => {
                    writer.add_encoded(sample, None)?;
                    *report.written.entry(row.subset).or_insert(0) += 1;
                    *report.sources.entry(way).or_insert(0) += 1;
                }
                Err(reason) => {
                    tracing::debug!(
                        file = row.file,
                        line = row.line,
                        reason = reason.name(),
                        "skipped row: {reason}"
                    );
                    report.skipped.push(SkippedRow {
                        file: row.file.to_string(),
                        line: row.line,
                        reason,
                    });
                }
            }
            let closed = writer.take_closed();
            log.record(writer.store(), closed, row.global + 1, &report)?;
            Ok::<(), ImportError>(())
        },
    );
    let report_path = opts
        .report
        .clone()
        .unwrap_or_else(|| writer.root().join(DEFAULT_REPORT_FILE));
    // The shards first: on a full disk, their failure is the one to name, and the
    // report (of the rows done) is still attempted.
    let closed = match ran {
        Ok(()) => writer.close_shards().and_then(|()| {
            let closed = writer.take_closed();
            log.record(writer.store(), closed, range.end, &report)
        }),
        Err(ImportError::Write(e)) => Err(e),
        Err(other) => return Err(other),
    };
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
    if report.total_written() == 0 && opts.part.is_none() {
        return Err(ImportError::NothingImported {
            skipped: report.skipped.len(),
            report_path,
            report: Box::new(report),
        });
    }
    let ran = Ran {
        input,
        rows: range,
        total_rows,
    };
    Ok((writer, report, report_path, ran))
}

/// A sample checked against the schema and encoded for the writer.
fn encode(
    encoder: &mut SampleEncoder,
    sample: &crate::dataset::sample::Sample,
) -> Result<EncodedSample, WriteError> {
    sample.check()?;
    let members = sample.to_members();
    encoder.encode(
        sample.subset(),
        sample.meta.category,
        &sample.key,
        members.iter().map(|(f, b)| (f.as_str(), &b[..])),
    )
}
