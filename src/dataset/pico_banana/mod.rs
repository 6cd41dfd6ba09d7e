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
pub mod report;
pub mod rows;
pub mod sources;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

pub use images::ImageOptions;
pub use report::{ImportReport, MetadataFile, SkipReason, SkippedRow};
pub use sources::{SourceMap, SourceOptions, SourceResolver, SourceWay};

use self::images::{load_image, LoadError};
use self::rows::{parse_row, Row};
use super::input_files::{Confinement, InputFileError};
use super::manifest::Manifest;
use super::sample::{Role, Sample, SampleImage, SampleMeta};
use super::writer::{DatasetWriter, WriteError};
use super::Subset;

/// The metadata files, in import order, with the subset each feeds.
pub const METADATA_FILES: [(Subset, &str); 3] = [
    (Subset::Sft, "sft.jsonl"),
    (Subset::Preference, "preference.jsonl"),
    (Subset::MultiTurn, "multi-turn.jsonl"),
];

/// The report's file name inside the output folder when no path is given.
pub const DEFAULT_REPORT_FILE: &str = "import-report.json";

/// What to import and how.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The folder holding the metadata files and the `images/` tree.
    pub root: PathBuf,
    /// Where the source photos are.
    pub sources: SourceOptions,
    /// Optional transcoding and shrinking.
    pub images: ImageOptions,
    /// Import only the first N rows (non-blank lines) of each metadata file.
    pub limit: Option<u64>,
    /// Where to write the JSON report; `<output>/import-report.json` when `None`.
    pub report: Option<PathBuf>,
}

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

impl ImportOptions {
    /// Checks the options against the file system before anything is written.
    pub fn validate(&self) -> Result<(), ImportError> {
        let meta = std::fs::metadata(&self.root).map_err(|source| ImportError::Root {
            path: self.root.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(ImportError::Root {
                path: self.root.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        let s = &self.sources;
        match (&s.source_map, &s.source_images) {
            (Some(_), None) => {
                return Err(ImportError::Options(
                    "--source-map needs --source-images".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(ImportError::Options(
                    "--source-images needs --source-map".into(),
                ))
            }
            _ => {}
        }
        for (flag, dir) in [
            ("--source-dir", &s.source_dir),
            ("--source-images", &s.source_images),
        ] {
            if let Some(dir) = dir {
                if !dir.is_dir() {
                    return Err(ImportError::Options(format!(
                        "{flag} {} is not a directory",
                        dir.display()
                    )));
                }
            }
        }
        if let Some(map) = &s.source_map {
            if !map.is_file() {
                return Err(ImportError::SourceMap {
                    path: map.clone(),
                    why: "no such file".into(),
                });
            }
        }
        if self.images.max_side == Some(0) {
            return Err(ImportError::Options("--max-side must be positive".into()));
        }
        if self.images.max_image_bytes == 0 {
            return Err(ImportError::Options(
                "--max-image-bytes must be positive".into(),
            ));
        }
        if self.limit == Some(0) {
            return Err(ImportError::Options("--limit must be positive".into()));
        }
        Ok(())
    }
}

/// Reads the non-blank lines of a metadata file, up to `limit`, with 1-based line
/// numbers; a UTF-8 byte order mark on the first line is dropped.
fn for_each_line(
    path: &Path,
    file: File,
    limit: Option<u64>,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), ImportError>,
) -> Result<u64, ImportError> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    let (mut line, mut rows) = (0u64, 0u64);
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|source| ImportError::Read {
                path: path.to_path_buf(),
                line: line + 1,
                source,
            })?;
        if n == 0 {
            break;
        }
        line += 1;
        let mut text = buf.trim_ascii();
        if line == 1 {
            text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
        }
        if text.is_empty() {
            continue;
        }
        if limit.is_some_and(|l| rows >= l) {
            break;
        }
        rows += 1;
        f(line, text)?;
    }
    Ok(rows)
}

fn open_metadata(path: &Path) -> Result<Option<File>, ImportError> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ImportError::Read {
            path: path.to_path_buf(),
            line: 0,
            source,
        }),
    }
}

/// Rows an import of `root` will look at (non-blank lines, at most `limit` per file), for
/// sizing a progress bar.
pub fn count_rows(root: &Path, limit: Option<u64>) -> Result<u64, ImportError> {
    let mut total = 0;
    for (_, name) in METADATA_FILES {
        let path = root.join(name);
        if let Some(file) = open_metadata(&path)? {
            total += for_each_line(&path, file, limit, |_, _| Ok(()))?;
        }
    }
    Ok(total)
}

/// The scheme-less source URLs of the rows that parse, so only those are kept from a
/// multi-million-row source map.
fn wanted_urls(root: &Path, limit: Option<u64>) -> Result<HashSet<String>, ImportError> {
    let mut urls = HashSet::new();
    for (subset, name) in METADATA_FILES {
        let path = root.join(name);
        if let Some(file) = open_metadata(&path)? {
            for_each_line(&path, file, limit, |_, line| {
                if let Ok(row) = parse_row(subset, line) {
                    urls.insert(sources::url_key(&row.source_url).to_string());
                }
                Ok(())
            })?;
        }
    }
    Ok(urls)
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

/// The reason for an image that did not load; `missing` builds the one for an
/// unreadable file.
fn load_skip(
    e: LoadError,
    path: &str,
    missing: impl FnOnce(String, String) -> SkipReason,
) -> SkipReason {
    let path = path.to_string();
    match e {
        LoadError::Read(e) => missing(path, e.to_string()),
        LoadError::Decode(why) => SkipReason::UndecodableImage { path, why },
        LoadError::NotRegular(why) => SkipReason::NotAFile { path, why },
        LoadError::TooLarge(why) => SkipReason::ImageTooLarge { path, why },
    }
}

/// What every row needs to become a sample.
struct RowContext<'a> {
    root: &'a Path,
    /// Edited images stay under the root.
    edits: Confinement,
    resolver: SourceResolver,
    images: ImageOptions,
}

impl RowContext<'_> {
    /// Turns one line into a sample, or says why it is skipped. Returns the sample, the
    /// output path it claims and the way its source photo was found. Cheap checks come
    /// first so a bad row costs no image reads.
    fn build_sample(
        &self,
        subset: Subset,
        file: &str,
        line: u64,
        text: &[u8],
        ordinal: u64,
        used: &HashMap<PathBuf, u64>,
    ) -> Result<(Sample, PathBuf, SourceWay), SkipReason> {
        let row: Row = parse_row(subset, text)?;
        // Duplicates are found by the real path, so `a.png`, `./a.png` and a symlink to
        // it are one file.
        // A missing output is reported after the source photo, as before.
        let output_real = match self.edit_path(&row.output_path) {
            Err(reason @ SkipReason::OutsideRoot { .. }) => return Err(reason),
            found => found.ok(),
        };
        if let Some(first_line) = output_real.as_ref().and_then(|p| used.get(p)) {
            return Err(SkipReason::DuplicateOutput {
                path: row.output_path,
                first_line: *first_line,
            });
        }
        let (source_path, way) = self
            .resolver
            .resolve(&row.source_url, row.local_input_image.as_deref())?;
        let shown = source_path.display().to_string();
        let mut loaded: Vec<SampleImage> = Vec::with_capacity(row.outputs.len() + 1);
        loaded.push(
            load_image(&source_path, Role::Source, &self.images).map_err(|e| {
                load_skip(e, &shown, |path, why| SkipReason::MissingSourceFile {
                    path,
                    why,
                })
            })?,
        );
        for (role, rel) in &row.outputs {
            let real = self.edit_path(rel)?;
            let image = load_image(&real, *role, &self.images).map_err(|e| {
                load_skip(e, rel, |path, why| SkipReason::MissingEditFile {
                    path,
                    why,
                })
            })?;
            loaded.push(image);
        }
        let meta = SampleMeta {
            subset: Some(subset),
            edit_type: row.edit_type,
            category: row.category,
            text: row.text,
            summarized_text: row.summarized_text,
            turns: row.turns,
            source_url: Some(row.source_url),
            origin: Some(format!("{file}:{line}")),
        };
        let sample = Sample {
            key: format!("{ordinal:08}"),
            meta,
            images: loaded,
        };
        let output_real = match output_real {
            Some(p) => p,
            None => self.edit_path(&row.output_path)?,
        };
        Ok((sample, output_real, way))
    }

    /// The real path of an edited image named `rel` by a row, inside the root.
    fn edit_path(&self, rel: &str) -> Result<PathBuf, SkipReason> {
        self.edits.resolve(self.root, rel).map_err(|e| match e {
            InputFileError::Outside { path, allowed } => SkipReason::OutsideRoot { path, allowed },
            InputFileError::Missing { source, .. } => SkipReason::MissingEditFile {
                path: rel.to_string(),
                why: source.to_string(),
            },
            other => SkipReason::MissingEditFile {
                path: rel.to_string(),
                why: other.full(),
            },
        })
    }
}
