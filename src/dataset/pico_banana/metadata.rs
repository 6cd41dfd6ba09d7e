//! The three metadata files and their rows: which file feeds which subset, reading the
//! non-blank lines (up to a limit, with 1-based line numbers), and the scan that comes
//! before any image is read: every row counted and hashed (the input's fingerprint),
//! and the source URLs the rows need.
//!
//! A row's place is its ordinal among the non-blank rows of its file, which is also its
//! sample key, and its global index in the canonical order (the rows of `sft.jsonl`,
//! then `preference.jsonl`, then `multi-turn.jsonl`), which ranges of a pack cut.
//!
//! Flow: METADATA ROWS (here) -> row parsing -> sample building -> writer.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::rows::parse_row;
use super::sources;
use super::ImportError;
use crate::dataset::input_root::InputDir;
use crate::dataset::Subset;
use crate::hex::hex;

/// The metadata files, in import order, with the subset each feeds.
pub const METADATA_FILES: [(Subset, &str); 3] = [
    (Subset::Sft, "sft.jsonl"),
    (Subset::Preference, "preference.jsonl"),
    (Subset::MultiTurn, "multi-turn.jsonl"),
];

/// The non-blank lines of a metadata file, up to a limit, with 1-based line numbers; a
/// UTF-8 byte order mark on the first line is dropped.
pub(super) struct Lines {
    reader: BufReader<Box<dyn Read + Send>>,
    path: PathBuf,
    line: u64,
    rows: u64,
    limit: Option<u64>,
}

impl Lines {
    /// The lines of `name` in `root`; `None` when the file is not there.
    pub(super) fn open(
        root: &InputDir,
        name: &str,
        limit: Option<u64>,
    ) -> Result<Option<Lines>, ImportError> {
        let path = root.path_of(name);
        let file = root.open_text(name).map_err(|e| ImportError::Read {
            path: path.clone(),
            line: 0,
            source: std::io::Error::other(e.full()),
        })?;
        Ok(file.map(|f| Lines {
            reader: BufReader::with_capacity(1 << 20, f),
            path,
            line: 0,
            rows: 0,
            limit,
        }))
    }
}

impl Iterator for Lines {
    type Item = Result<(u64, Vec<u8>), ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = match self.reader.read_until(b'\n', &mut buf) {
                Ok(n) => n,
                Err(source) => {
                    return Some(Err(ImportError::Read {
                        path: self.path.clone(),
                        line: self.line + 1,
                        source,
                    }))
                }
            };
            if n == 0 {
                return None;
            }
            self.line += 1;
            let mut text = buf.trim_ascii();
            if self.line == 1 {
                text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
            }
            if text.is_empty() {
                continue;
            }
            if self.limit.is_some_and(|l| self.rows >= l) {
                return None;
            }
            self.rows += 1;
            return Some(Ok((self.line, text.to_vec())));
        }
    }
}

/// Rows an import of `root` (a folder or URL) will look at (non-blank lines, at most
/// `limit` per file), for sizing a progress bar.
pub fn count_rows(root: &std::path::Path, limit: Option<u64>) -> Result<u64, ImportError> {
    let dir = InputDir::open(root).map_err(|e| ImportError::Options(e.to_string()))?;
    let mut total = 0;
    for (_, name) in METADATA_FILES {
        if let Some(lines) = Lines::open(&dir, name, limit)? {
            for row in lines {
                row?;
                total += 1;
            }
        }
    }
    Ok(total)
}

/// What the scan of the metadata found.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// sha256 over every row's file, line number and text: the input's identity, which
    /// parts and resumed runs of one pack must share.
    pub fingerprint: String,
    /// Rows per file, in [`METADATA_FILES`] order (`None`: the file is absent).
    pub rows: [Option<u64>; 3],
    /// The scheme-less source URLs of the rows that parse, so only those are kept from a
    /// multi-million-row source map.
    pub wanted_urls: HashSet<String>,
}

impl Scan {
    /// Rows in all files.
    pub fn total_rows(&self) -> u64 {
        self.rows.iter().flatten().sum()
    }
}

/// Reads every row once, without reading an image.
pub(super) fn scan(root: &InputDir, limit: Option<u64>) -> Result<Scan, ImportError> {
    let mut out = Scan::default();
    let mut hasher = Sha256::new();
    for (i, (subset, name)) in METADATA_FILES.into_iter().enumerate() {
        let Some(lines) = Lines::open(root, name, limit)? else {
            continue;
        };
        let mut rows = 0;
        for row in lines {
            let (line, text) = row?;
            rows += 1;
            hasher.update(name.as_bytes());
            hasher.update(line.to_le_bytes());
            hasher.update((text.len() as u64).to_le_bytes());
            hasher.update(&text);
            let Ok(row) = parse_row(subset, &text) else {
                continue;
            };
            out.wanted_urls
                .insert(sources::url_key(&row.source_url).to_string());
        }
        out.rows[i] = Some(rows);
    }
    out.fingerprint = hex(&hasher.finalize());
    Ok(out)
}

/// One row to pack, and where it is.
#[derive(Debug, Clone)]
pub(super) struct RowText {
    /// The subset its file feeds.
    pub subset: Subset,
    /// Its file's name.
    pub file: &'static str,
    /// Its 1-based line number.
    pub line: u64,
    /// Its place among the rows of its file: the sample's key.
    pub ordinal: u64,
    /// Its place in the canonical order of all rows.
    pub global: u64,
    /// The line.
    pub text: Vec<u8>,
}

type RowIter = Box<dyn Iterator<Item = Result<RowText, ImportError>> + Send>;

/// The rows whose global index is in `range`, in canonical order, given the rows per
/// file the scan counted. Files wholly outside the range are not opened; rows before it
/// in a file that is are read and passed over.
pub(super) fn rows(
    root: &InputDir,
    limit: Option<u64>,
    counts: [Option<u64>; 3],
    range: std::ops::Range<u64>,
) -> impl Iterator<Item = Result<RowText, ImportError>> + Send {
    let mut files: Vec<RowIter> = Vec::new();
    let mut base = 0u64;
    for (i, (subset, name)) in METADATA_FILES.into_iter().enumerate() {
        let n = counts[i].unwrap_or(0);
        let span = base..base + n;
        base += n;
        if n == 0 || span.end <= range.start || span.start >= range.end {
            continue;
        }
        let root = root.clone();
        let (first, start, end) = (span.start, range.start, range.end);
        let lazy = std::iter::once(()).flat_map(move |()| -> RowIter {
            match Lines::open(&root, name, limit) {
                Ok(Some(lines)) => Box::new(
                    lines
                        .enumerate()
                        .map(move |(ordinal, row)| {
                            row.map(|(line, text)| RowText {
                                subset,
                                file: name,
                                line,
                                ordinal: ordinal as u64,
                                global: first + ordinal as u64,
                                text,
                            })
                        })
                        .filter(move |r| r.as_ref().map_or(true, |r| r.global >= start))
                        .take_while(move |r| r.as_ref().map_or(true, |r| r.global < end)),
                ),
                Ok(None) => Box::new(std::iter::empty()),
                Err(e) => Box::new(std::iter::once(Err(e))),
            }
        });
        files.push(Box::new(lazy));
    }
    files.into_iter().flatten()
}
