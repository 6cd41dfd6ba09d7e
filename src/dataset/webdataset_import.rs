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

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Serialize;

use super::edit_types::category_of;
use super::input_files::{open_regular, InputFileError};
use super::manifest::Manifest;
use super::sample::{check_key, Role, Sample, SampleImage, SampleMeta};
use super::skip_summary::{write_skips, Skip};
use super::transcode::{probe, transcode, DEFAULT_PIXEL_LIMIT};
use super::writer::{DatasetWriter, WriteError};
use super::{Category, Subset};
use crate::codec::{ImageFormat, TranscodeTarget};
use crate::shard::{stream_samples, RawSample, ShardError};

/// The report's file name inside the output folder when no path is given.
pub const DEFAULT_REPORT_FILE: &str = "import-report.json";

/// Text member names, in order of preference.
const TEXT_FIELDS: [&str; 5] = ["instruction", "prompt", "txt", "text", "caption"];

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

/// One input sample made ready for the writer.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// Already an editfeed sample: its members are written unchanged.
    Kept {
        /// The category for the manifest.
        category: Option<Category>,
        /// The members as read.
        members: Vec<(String, Bytes)>,
    },
    /// Mapped from WebDataset conventions; lists the member fields left out.
    Mapped {
        /// The new sample (image bytes unchanged).
        sample: Sample,
        /// Fields that had no place in the schema.
        dropped: Vec<String>,
    },
}

fn probe_images(
    images: &[SampleImage],
    field: impl Fn(&SampleImage) -> String,
) -> Result<(), WdsSkipReason> {
    for img in images {
        probe(&img.bytes).map_err(|e| WdsSkipReason::UndecodableImage {
            field: field(img),
            why: e.to_string(),
        })?;
    }
    Ok(())
}

/// Decides what to write for one input sample of `subset`.
pub fn prepare(subset: Subset, raw: RawSample) -> Result<Prepared, WdsSkipReason> {
    check_key(&raw.key).map_err(|e| WdsSkipReason::BadKey { why: e.to_string() })?;
    let as_is = Sample::from_members(&raw.key, raw.members.clone());
    let as_is_err = match as_is {
        Ok(sample) => {
            if sample.subset() != subset {
                return Err(WdsSkipReason::SubsetMismatch {
                    found: sample.subset(),
                    wanted: subset,
                });
            }
            probe_images(&sample.images, |i| {
                format!("{}.{}", i.role.field(), i.format.ext())
            })?;
            let category = sample
                .meta
                .category
                .or_else(|| sample.meta.edit_type.as_deref().and_then(category_of));
            return Ok(Prepared::Kept {
                category,
                members: raw.members,
            });
        }
        Err(e) => e,
    };
    map_members(subset, raw).map_err(|e| match e {
        WdsSkipReason::Unmappable { fields, why } => WdsSkipReason::Unmappable {
            fields,
            why: format!("{why} (as an editfeed sample: {as_is_err})"),
        },
        other => other,
    })
}

/// Re-encodes the images of a prepared sample other than its source to `target`; the
/// sample is then written from its schema (`Mapped`), since its members change.
fn transcode_edits(
    key: &str,
    prepared: Prepared,
    target: TranscodeTarget,
) -> Result<Prepared, WdsSkipReason> {
    let (mut sample, dropped) = match prepared {
        Prepared::Kept { category, members } => {
            let mut sample =
                Sample::from_members(key, members).map_err(|e| WdsSkipReason::Unmappable {
                    fields: String::new(),
                    why: e.to_string(),
                })?;
            sample.meta.category = sample.meta.category.or(category);
            (sample, Vec::new())
        }
        Prepared::Mapped { sample, dropped } => (sample, dropped),
    };
    for img in sample.images.iter_mut().filter(|i| i.role != Role::Source) {
        let (format, bytes) = transcode(&img.bytes, Some(target), None, DEFAULT_PIXEL_LIMIT)
            .map_err(|e| WdsSkipReason::UndecodableImage {
                field: format!("{}.{}", img.role.field(), img.format.ext()),
                why: e.to_string(),
            })?;
        img.format = format;
        img.bytes = bytes;
    }
    Ok(Prepared::Mapped { sample, dropped })
}

/// The role a foreign image field name stands for.
fn image_role(name: &str) -> Option<Role> {
    match name.to_ascii_lowercase().as_str() {
        "" | "input" | "source" | "src" => Some(Role::Source),
        "edit" | "output" | "target" => Some(Role::Edit),
        other => Role::from_field(other),
    }
}

/// The text-field rank of a member (lower is preferred), if it is text.
fn text_rank(field: &str) -> Option<usize> {
    let lower = field.to_ascii_lowercase();
    let name = lower.strip_suffix(".txt").unwrap_or(&lower);
    TEXT_FIELDS.iter().position(|t| *t == name)
}

/// The instruction from a foreign JSON object, and the edit type if it has one.
fn foreign_json_text(bytes: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice::<serde_json::Value>(bytes)
    else {
        return (None, None);
    };
    let text = [
        "instruction",
        "edit_instruction",
        "prompt",
        "text",
        "caption",
    ]
    .iter()
    .find_map(|k| {
        obj.get(*k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.trim().is_empty())
    })
    .map(str::to_string);
    let edit_type = obj
        .get("edit_type")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    (text, edit_type)
}

fn map_members(subset: Subset, raw: RawSample) -> Result<Prepared, WdsSkipReason> {
    let fields = raw
        .members
        .iter()
        .map(|(f, _)| f.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let unmappable = |why: String| WdsSkipReason::Unmappable {
        fields: fields.clone(),
        why,
    };
    let mut images: Vec<(SampleImage, String)> = Vec::new();
    let mut text: Option<(usize, String)> = None;
    let mut editfeed_meta: Option<SampleMeta> = None;
    let mut json_text = (None, None);
    let mut dropped = Vec::new();
    for (field, bytes) in raw.members {
        if field == "json" {
            match serde_json::from_slice::<SampleMeta>(&bytes) {
                Ok(meta) => editfeed_meta = Some(meta),
                Err(_) => {
                    json_text = foreign_json_text(&bytes);
                    dropped.push(field);
                }
            }
            continue;
        }
        // A bare extension (`jpg`) has an empty name; `input.jpg` names the role.
        let (name, ext) = field.rsplit_once('.').unwrap_or(("", field.as_str()));
        if let (Some(declared), Some(role)) = (ImageFormat::from_ext(ext), image_role(name)) {
            if let Some((_, other)) = images.iter().find(|(i, _)| i.role == role) {
                return Err(unmappable(format!(
                    "{other} and {field} both map to {}",
                    role.field()
                )));
            }
            // The member name follows the content: a PNG named `.jpg` becomes `.png`.
            let format = ImageFormat::sniff(&bytes).unwrap_or(declared);
            images.push((
                SampleImage {
                    role,
                    format,
                    bytes,
                },
                field,
            ));
            continue;
        }
        if let Some(rank) = text_rank(&field) {
            if let Ok(s) = std::str::from_utf8(&bytes) {
                let s = s.trim();
                if !s.is_empty() && text.as_ref().is_none_or(|(r, _)| rank < *r) {
                    text = Some((rank, s.to_string()));
                }
                continue;
            }
        }
        dropped.push(field);
    }
    for (img, field) in &images {
        probe(&img.bytes).map_err(|e| WdsSkipReason::UndecodableImage {
            field: field.clone(),
            why: e.to_string(),
        })?;
    }
    let mut meta = match editfeed_meta {
        Some(meta) => {
            if meta.subset.is_some_and(|s| s != subset) {
                return Err(WdsSkipReason::SubsetMismatch {
                    found: meta.subset.expect("checked"),
                    wanted: subset,
                });
            }
            meta
        }
        None => {
            let (text, edit_type) = json_text;
            let category = edit_type.as_deref().and_then(category_of);
            SampleMeta {
                text: text.unwrap_or_default(),
                edit_type: category.and(edit_type),
                category,
                ..Default::default()
            }
        }
    };
    meta.subset = Some(subset);
    if let Some((_, t)) = text {
        meta.text = t;
    }
    let mut images: Vec<SampleImage> = images.into_iter().map(|(i, _)| i).collect();
    images.sort_by_key(|i| i.role);
    let sample = Sample {
        key: raw.key,
        meta,
        images,
    };
    sample.check().map_err(|e| unmappable(e.to_string()))?;
    Ok(Prepared::Mapped { sample, dropped })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode, TranscodeTarget};
    use image::{DynamicImage, RgbImage};

    fn img(target: TranscodeTarget) -> Bytes {
        let i = DynamicImage::ImageRgb8(RgbImage::from_fn(8, 6, |x, y| {
            image::Rgb([x as u8, y as u8, 1])
        }));
        Bytes::from(encode(&i, target).unwrap())
    }

    fn raw(key: &str, members: &[(&str, Bytes)]) -> RawSample {
        RawSample {
            key: key.into(),
            members: members
                .iter()
                .map(|(f, b)| (f.to_string(), b.clone()))
                .collect(),
        }
    }

    fn jpg() -> Bytes {
        img(TranscodeTarget::Jpeg { quality: 80 })
    }

    fn png() -> Bytes {
        img(TranscodeTarget::Png)
    }

    #[test]
    fn editfeed_samples_are_kept_member_for_member() {
        let json = Bytes::from_static(br#"{"subset":"sft","edit_type":"Zoom in","text":"zoom"}"#);
        let r = raw(
            "k1",
            &[
                ("json", json.clone()),
                ("src.jpg", jpg()),
                ("edit.png", png()),
            ],
        );
        match prepare(Subset::Sft, r.clone()).unwrap() {
            Prepared::Kept { category, members } => {
                assert_eq!(members, r.members);
                assert_eq!(category, Some(Category::ScalePerspective));
            }
            other => panic!("{other:?}"),
        }
        let e = prepare(Subset::Preference, r).unwrap_err();
        assert_eq!(e.name(), "subset_mismatch");
    }

    #[test]
    fn foreign_names_are_mapped_with_bytes_unchanged() {
        let (src, edit) = (jpg(), png());
        let r = raw(
            "dir/k2",
            &[
                ("input.jpg", src.clone()),
                ("output.jpg", edit.clone()),
                ("caption", Bytes::from_static(b"a caption")),
                ("instruction.txt", Bytes::from_static(b"make it blue\n")),
                ("cls", Bytes::from_static(b"3")),
            ],
        );
        let Prepared::Mapped { sample, dropped } = prepare(Subset::Sft, r).unwrap() else {
            panic!("not mapped")
        };
        assert_eq!(sample.key, "dir/k2");
        assert_eq!(sample.meta.text, "make it blue");
        assert_eq!(sample.image(Role::Source).unwrap().bytes, src);
        let e = sample.image(Role::Edit).unwrap();
        assert_eq!(
            (e.format, &e.bytes),
            (ImageFormat::Png, &edit),
            "format follows the content"
        );
        assert_eq!(dropped, vec!["cls".to_string()]);
        let bare = raw(
            "k3",
            &[
                ("jpg", src.clone()),
                ("target.png", edit.clone()),
                ("json", Bytes::from_static(br#"{"prompt":"p"}"#)),
            ],
        );
        let Prepared::Mapped { sample, .. } = prepare(Subset::Sft, bare).unwrap() else {
            panic!("not mapped")
        };
        assert_eq!(sample.meta.text, "p");
    }

    #[test]
    fn unmappable_samples_say_why() {
        let e = prepare(Subset::Sft, raw("k", &[("txt", Bytes::from_static(b"x"))])).unwrap_err();
        assert_eq!(e.name(), "unmappable");
        assert!(e.to_string().contains("source"), "{e}");
        let two = raw(
            "k",
            &[("jpg", jpg()), ("input.png", png()), ("edit.png", png())],
        );
        assert!(prepare(Subset::Sft, two)
            .unwrap_err()
            .to_string()
            .contains("both map to src"));
        let bad = raw(
            "k",
            &[("jpg", jpg()), ("edit.png", Bytes::from_static(b"nope"))],
        );
        assert_eq!(
            prepare(Subset::Sft, bad).unwrap_err().name(),
            "undecodable_image"
        );
    }
}
