//! Turns one metadata row into a sample, or says why it is skipped: the row is parsed,
//! its output path confined to the root and checked for duplicates, its source photo
//! found and every image loaded and checked. Cheap checks come first, so a bad row
//! costs no image reads.
//!
//! Flow: metadata lines -> row parsing -> SAMPLE BUILDING (here) -> writer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::images::{load_image, ImageOptions, LoadError};
use super::outcome::{SkipReason, SourceWay};
use super::rows::{parse_row, Row};
use super::sources::SourceResolver;
use crate::dataset::input_files::{Confinement, InputFileError};
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

/// What every row needs to become a sample.
pub(super) struct RowContext<'a> {
    pub(super) root: &'a Path,
    /// Edited images stay under the root.
    pub(super) edits: Confinement,
    pub(super) resolver: SourceResolver,
    pub(super) images: ImageOptions,
}

impl RowContext<'_> {
    /// Turns one line into a sample, or says why it is skipped. Returns the sample, the
    /// output path it claims and the way its source photo was found. Cheap checks come
    /// first so a bad row costs no image reads.
    pub(super) fn build_sample(
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
