//! Turns one metadata row into a sample, or says why it is skipped: the row is parsed,
//! its output path confined to the root and checked against the row that claims it
//! first ([`super::metadata::Claims`]), its source photo found and every image loaded
//! and checked. Cheap checks come first, so a bad row costs no image reads. A row's key
//! is its ordinal among the rows of its file, so a sample's key and bytes depend on its
//! row alone and rows can be turned into samples on any thread.
//!
//! Flow: metadata rows -> row parsing -> SAMPLE BUILDING (here) -> writer.

use std::collections::HashMap;

use super::images::{load_image, ImageOptions, LoadError};
use super::metadata::RowText;
use super::outcome::{SkipReason, SourceWay};
use super::rows::{parse_row, Row};
use super::sources::SourceResolver;
use super::ImportError;
use crate::dataset::input_files::{Confinement, InputFileError};
use crate::dataset::input_root::{InputDir, InputFile};
use crate::dataset::sample::{Role, Sample, SampleImage, SampleMeta};
use crate::dataset::Subset;

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

/// The edited images a row names: under the root, confined there when it is local.
#[derive(Debug, Clone)]
pub(super) struct EditFiles {
    root: InputDir,
    confinement: Option<Confinement>,
}

impl EditFiles {
    /// The edited images of `root`.
    pub(super) fn new(root: &InputDir) -> std::io::Result<EditFiles> {
        Ok(EditFiles {
            root: root.clone(),
            confinement: root.local().map(|d| Confinement::new([d])).transpose()?,
        })
    }

    /// The file named `rel` by a row: its real path inside a local root (which must
    /// exist), or its normalised name under a remote one.
    fn file(&self, rel: &str) -> Result<InputFile, SkipReason> {
        let found = match (&self.confinement, self.root.local()) {
            (Some(c), Some(base)) => c.resolve(base, rel).map(InputFile::Local),
            _ => self.root.object(rel),
        };
        found.map_err(|e| match e {
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

    /// The file a row's output path claims, as its path or URL: `Ok(None)` when a local
    /// file is missing (the row fails later, claiming nothing), an error when the path
    /// leaves the root. Duplicates are found by the real path, so `a.png`, `./a.png` and
    /// a symlink to it are one file.
    pub(super) fn claimed(&self, output_path: &str) -> Result<Option<String>, SkipReason> {
        match self.file(output_path) {
            Ok(file) => Ok(Some(file.shown())),
            Err(reason @ SkipReason::OutsideRoot { .. }) => Err(reason),
            Err(_) => Ok(None),
        }
    }
}

/// The first row that claims each output image, by subset. A row claims the output it
/// must hold alone (`output_image`, or a chain's final turn) when it parses and every
/// file it names is found: its output images inside the root and its source photo
/// (local files exist; objects are named without a request). A later row naming the
/// same output is a duplicate, even when the first row is skipped in the end for the
/// content of an image (one that does not decode, is too large or is not a regular
/// file). So duplicates follow from the metadata and the folders' listings alone, and
/// a range of rows can be packed knowing only the rows before it.
#[derive(Debug, Default)]
pub struct Claims {
    first: HashMap<(Subset, String), u64>,
}

impl Claims {
    /// The line of the first row of `subset` that claims `file` (its path or URL).
    pub fn first_line(&self, subset: Subset, file: &str) -> Option<u64> {
        self.first.get(&(subset, file.to_string())).copied()
    }
}

/// What every row needs to become a sample.
pub(super) struct RowContext {
    /// Edited images stay under the root.
    pub(super) edits: EditFiles,
    pub(super) resolver: SourceResolver,
    pub(super) images: ImageOptions,
}

impl RowContext {
    /// The claims of `rows` (every row before the last one packed, in order).
    pub(super) fn claims(
        &self,
        rows: impl Iterator<Item = Result<RowText, ImportError>>,
    ) -> Result<Claims, ImportError> {
        let mut claims = Claims::default();
        for row in rows {
            let row = row?;
            let Ok(parsed) = parse_row(row.subset, &row.text) else {
                continue;
            };
            let Ok(Some(output)) = self.edits.claimed(&parsed.output_path) else {
                continue;
            };
            let found = self
                .resolver
                .resolve(&parsed.source_url, parsed.local_input_image.as_deref())
                .is_ok()
                && parsed
                    .outputs
                    .iter()
                    .all(|(_, rel)| self.edits.file(rel).is_ok());
            if found {
                claims.first.entry((row.subset, output)).or_insert(row.line);
            }
        }
        Ok(claims)
    }

    /// Turns one line into a sample, or says why it is skipped. `ordinal` is the row's
    /// place among the rows of its file (the sample's key); `claims` say which row claims
    /// each output image first. Returns the sample and the way its source photo was
    /// found.
    pub(super) fn build_sample(
        &self,
        subset: Subset,
        file: &str,
        line: u64,
        text: &[u8],
        ordinal: u64,
        claims: &Claims,
    ) -> Result<(Sample, SourceWay), SkipReason> {
        let row: Row = parse_row(subset, text)?;
        // A missing output is reported after the source photo.
        let claimed = self.edits.claimed(&row.output_path)?;
        if let Some(first_line) = claimed
            .as_deref()
            .and_then(|f| claims.first_line(subset, f))
            .filter(|&first| first < line)
        {
            return Err(SkipReason::DuplicateOutput {
                path: row.output_path,
                first_line,
            });
        }
        let (source, way) = self
            .resolver
            .resolve(&row.source_url, row.local_input_image.as_deref())?;
        let shown = source.shown();
        let mut loaded: Vec<SampleImage> = Vec::with_capacity(row.outputs.len() + 1);
        loaded.push(
            load_image(&source, Role::Source, &self.images).map_err(|e| {
                load_skip(e, &shown, |path, why| SkipReason::MissingSourceFile {
                    path,
                    why,
                })
            })?,
        );
        for (role, rel) in &row.outputs {
            let edit = self.edits.file(rel)?;
            let image = load_image(&edit, *role, &self.images).map_err(|e| {
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
        Ok((
            Sample {
                key: format!("{ordinal:08}"),
                meta,
                images: loaded,
            },
            way,
        ))
    }
}
