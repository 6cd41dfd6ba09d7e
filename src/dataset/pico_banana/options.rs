//! What to import and how: the root folder (or object-store prefix), where source
//! photos are, optional transcoding, a row limit, the report's path, and how to run:
//! threads and memory, one part of several, resuming. Checked before anything is
//! written: local folders against the file system, URLs as URLs.

use std::path::{Path, PathBuf};

use super::images::ImageOptions;
use super::sources::SourceOptions;
use super::ImportError;
use crate::dataset::parallel::Parallelism;
use crate::dataset::parts::Part;
use crate::store::{AsLocation, Location};

/// Whether a folder option names an object-store URL rather than a local path.
fn is_remote(path: &Path) -> bool {
    matches!(path.as_location(), Ok(Location::Remote(_)))
}

/// What to import and how.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The folder (or object-store URL) holding the metadata files and the `images/`
    /// tree.
    pub root: PathBuf,
    /// Where the source photos are.
    pub sources: SourceOptions,
    /// Optional transcoding and shrinking.
    pub images: ImageOptions,
    /// Import only the first N rows (non-blank lines) of each metadata file.
    pub limit: Option<u64>,
    /// Where to write the JSON report; `<output>/import-report.json` when `None`.
    pub report: Option<PathBuf>,
    /// Threads and the memory bound of the work in flight (the output does not depend
    /// on them).
    pub parallel: Parallelism,
    /// Pack only this part of the rows ([`super::import_part`]).
    pub part: Option<Part>,
    /// Go on from the shards an interrupted run of the same pack left
    /// ([`super::resume`]).
    pub resume: bool,
}

impl ImportOptions {
    /// Checks the options against the file system before anything is written.
    pub fn validate(&self) -> Result<(), ImportError> {
        if let Err(e) = self.root.as_location() {
            return Err(ImportError::Options(format!("--root: {e}")));
        }
        let local_root = !is_remote(&self.root);
        let meta = match local_root {
            true => Some(
                std::fs::metadata(&self.root).map_err(|source| ImportError::Root {
                    path: self.root.clone(),
                    source,
                })?,
            ),
            false => None,
        };
        if meta.is_some_and(|m| !m.is_dir()) {
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
            if let Some(dir) = dir.as_deref().filter(|d| !is_remote(d)) {
                if !dir.is_dir() {
                    return Err(ImportError::Options(format!(
                        "{flag} {} is not a directory",
                        dir.display()
                    )));
                }
            }
        }
        if let Some(map) = s.source_map.as_ref().filter(|m| !is_remote(m)) {
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
