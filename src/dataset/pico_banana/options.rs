//! What to import and how: the root folder, where source photos are, optional
//! transcoding, a row limit and the report's path, checked against the file system
//! before anything is written.

use std::path::PathBuf;

use super::images::ImageOptions;
use super::sources::SourceOptions;
use super::ImportError;

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
