//! The three metadata files and their lines: which file feeds which subset, reading the
//! non-blank lines (up to a limit, with 1-based line numbers), counting rows for a
//! progress bar, and collecting the source URLs the rows need.
//!
//! Flow: METADATA LINES (here) -> row parsing -> sample building -> writer.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::rows::parse_row;
use super::sources;
use super::ImportError;
use crate::dataset::Subset;

/// The metadata files, in import order, with the subset each feeds.
pub const METADATA_FILES: [(Subset, &str); 3] = [
    (Subset::Sft, "sft.jsonl"),
    (Subset::Preference, "preference.jsonl"),
    (Subset::MultiTurn, "multi-turn.jsonl"),
];

/// Reads the non-blank lines of a metadata file, up to `limit`, with 1-based line
/// numbers; a UTF-8 byte order mark on the first line is dropped.
pub(super) fn for_each_line(
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

pub(super) fn open_metadata(path: &Path) -> Result<Option<File>, ImportError> {
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
pub(super) fn wanted_urls(root: &Path, limit: Option<u64>) -> Result<HashSet<String>, ImportError> {
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
