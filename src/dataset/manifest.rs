//! `manifest.json`: the one file that says what a dataset is. It names every shard (so
//! nothing is ever found by listing), gives each shard's sample count, size and checksum,
//! fixes the canonical order of samples and carries the dataset version, a content hash
//! that does not depend on shard layout or compression.
//!
//! Canonical order: subsets in the order `sft`, `preference`, `multi_turn`; within a
//! subset, shards in listed order and samples in index order. The version is sha256 over
//! the format version and, per subset in that order, its name, its sample count and the
//! running hash of its samples' (key, content digest) pairs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Category, Subset};
use crate::hex::hex;

/// The `format` field of every editfeed manifest.
pub const FORMAT: &str = "editfeed-dataset";
/// The manifest format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// The manifest's file name inside a dataset folder or prefix.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The statement of canonical order written into every manifest.
pub const ORDER: &str =
    "subsets in the order sft, preference, multi_turn; shards in listed order; samples in index order";

/// A dataset's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The manifest format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The content hash of the samples in canonical order, `sha256:<hex>`.
    pub version: String,
    /// The program that wrote the dataset.
    pub created_by: String,
    /// How samples are ordered (informative; always [`ORDER`]).
    pub order: String,
    /// The subsets present, keyed by name.
    pub subsets: BTreeMap<Subset, SubsetManifest>,
    /// The split names in id order (`train`, `val`, `test` first), when the dataset has
    /// splits; every shard then says each sample's split in [`ShardManifest::splits`].
    /// Splits are part of the version: the same samples split otherwise are another
    /// dataset.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub splits: Vec<String>,
    /// How the splits were made (`rule seed=...` or `file <name>`), informative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_source: Option<String>,
}

/// One subset of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsetManifest {
    /// Samples in the subset.
    pub samples: u64,
    /// Bytes of all its shards.
    pub bytes: u64,
    /// Running sha256 over the (key, digest) pairs of its samples in order, hex.
    pub content_sha256: String,
    /// The longest multi-turn chain in the subset (0 for other subsets). Batches pad
    /// their turn axis to it, so every rank and step has the same shape.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_turns: u32,
    /// Its shards, in canonical order.
    pub shards: Vec<ShardManifest>,
}

/// One shard of a subset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardManifest {
    /// Path of the shard relative to the dataset root.
    pub path: String,
    /// Path of its sidecar index relative to the dataset root; absent for shards that
    /// are read as a stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Samples in the shard.
    pub samples: u64,
    /// Length of the shard in bytes.
    pub bytes: u64,
    /// sha256 of the shard file, hex.
    pub sha256: String,
    /// sha256 of the index file, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_sha256: Option<String>,
    /// One character per sample in order: the category id `0`..`7` (see
    /// [`Category::ALL`]) or `-` when the sample has none. Lets the planner weight
    /// categories without reading any shard.
    #[serde(default)]
    pub categories: String,
    /// One character per sample: its split id `0`..`9`, indexing [`Manifest::splits`].
    /// Empty when the dataset has no splits.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub splits: String,
    /// One character per sample: its edit type's index in
    /// [`EDIT_TYPES`](super::edit_types::EDIT_TYPES) in base 36 (`0`-`9`, `a`-`y`), or
    /// `-`. Empty when not recorded (datasets written before it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub edit_types: String,
    /// One character per sample: its number of turns in base 36 (0 for single-step
    /// samples). Empty when not recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub turns: String,
    /// Two characters per sample: the word count of its longest instruction in base 36,
    /// capped at 1295. Empty when not recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instruction_words: String,
}

/// Why a manifest is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// It is not JSON of the manifest schema.
    #[error("manifest does not parse: {0}")]
    Parse(#[from] serde_json::Error),
    /// It parses but says something impossible.
    #[error("manifest is invalid: {0}")]
    Invalid(String),
}

/// Accumulates the running content hash of one subset.
#[derive(Debug, Clone, Default)]
pub struct ContentHasher {
    hasher: Sha256,
    samples: u64,
}

impl ContentHasher {
    /// Adds the next sample in canonical order.
    pub fn add(&mut self, key: &str, digest: &[u8; 32]) {
        self.hasher.update((key.len() as u64).to_le_bytes());
        self.hasher.update(key.as_bytes());
        self.hasher.update(digest);
        self.samples += 1;
    }

    /// Samples added so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The subset's content hash, hex.
    pub fn finish(self) -> String {
        hex(&self.hasher.finalize())
    }
}

/// The dataset version from each subset's (name, sample count, content hash).
pub fn dataset_version<'a>(subsets: impl IntoIterator<Item = (Subset, u64, &'a str)>) -> String {
    let mut h = Sha256::new();
    h.update(FORMAT_VERSION.to_le_bytes());
    for (subset, samples, content) in subsets {
        h.update(subset.name().as_bytes());
        h.update(samples.to_le_bytes());
        h.update(content.as_bytes());
    }
    format!("sha256:{}", hex(&h.finalize()))
}

/// The dataset version of a manifest: [`dataset_version`] over its subsets, and, when
/// it has splits, sha256 of that, the split names and every sample's split character in
/// canonical order.
pub fn manifest_version(m: &Manifest) -> String {
    let base = dataset_version(
        m.subsets
            .iter()
            .map(|(k, s)| (*k, s.samples, s.content_sha256.as_str())),
    );
    with_splits(base, m)
}

/// Folds `m`'s splits into a version computed from the content alone.
pub fn with_splits(base: String, m: &Manifest) -> String {
    if m.splits.is_empty() {
        return base;
    }
    let mut h = Sha256::new();
    h.update(b"splits");
    h.update(base.as_bytes());
    for n in &m.splits {
        h.update((n.len() as u64).to_le_bytes());
        h.update(n.as_bytes());
    }
    for (subset, s) in &m.subsets {
        h.update(subset.name().as_bytes());
        for sh in &s.shards {
            h.update(sh.splits.as_bytes());
        }
    }
    format!("sha256:{}", hex(&h.finalize()))
}

/// Base-36 digit of `v` (capped at 35).
pub fn base36(v: u32) -> char {
    let v = v.min(35) as u8;
    (if v < 10 { b'0' + v } else { b'a' + v - 10 }) as char
}

/// Value of a base-36 digit.
pub fn from_base36(ch: u8) -> Option<u32> {
    match ch {
        b'0'..=b'9' => Some((ch - b'0') as u32),
        b'a'..=b'z' => Some((ch - b'a') as u32 + 10),
        _ => None,
    }
}

/// The category character stored in [`ShardManifest::categories`].
pub fn category_char(c: Option<Category>) -> char {
    c.map_or('-', |c| (b'0' + c.id()) as char)
}

/// Parses one category character.
pub fn category_from_char(ch: u8) -> Option<Category> {
    Category::ALL.get(ch.wrapping_sub(b'0') as usize).copied()
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks that a shard or index path stays inside the dataset.
pub fn check_relative_path(path: &str) -> Result<(), String> {
    if path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path.contains("://")
        || path
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(format!(
            "path {path:?} is not a relative path inside the dataset"
        ));
    }
    Ok(())
}

impl Manifest {
    /// Parses and validates a manifest.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let m: Manifest = serde_json::from_slice(bytes)?;
        m.validate()?;
        Ok(m)
    }

    /// Serialises the manifest as pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serialises");
        v.push(b'\n');
        v
    }

    /// Checks every invariant that can be checked without reading the shards.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let bad = |s: String| Err(ManifestError::Invalid(s));
        if self.format != FORMAT {
            return bad(format!("format is {:?}, expected {FORMAT:?}", self.format));
        }
        if self.format_version != FORMAT_VERSION {
            return bad(format!(
                "format_version {} is not supported (this build reads {FORMAT_VERSION})",
                self.format_version
            ));
        }
        if self.subsets.is_empty() {
            return bad("no subsets".into());
        }
        let mut paths = std::collections::HashSet::new();
        for (subset, s) in &self.subsets {
            if !is_hex(&s.content_sha256, 64) {
                return bad(format!(
                    "subset {subset}: content_sha256 is not 64 hex digits"
                ));
            }
            let (mut samples, mut bytes) = (0u64, 0u64);
            for (i, sh) in s.shards.iter().enumerate() {
                let at = format!("subset {subset}, shard {i} ({})", sh.path);
                check_relative_path(&sh.path)
                    .map_err(|e| ManifestError::Invalid(format!("{at}: {e}")))?;
                if !paths.insert(sh.path.as_str()) {
                    return bad(format!("{at}: listed twice"));
                }
                if let Some(idx) = &sh.index {
                    check_relative_path(idx)
                        .map_err(|e| ManifestError::Invalid(format!("{at}: {e}")))?;
                    if !sh.index_sha256.as_deref().is_some_and(|h| is_hex(h, 64)) {
                        return bad(format!("{at}: index without a 64-hex-digit index_sha256"));
                    }
                }
                if !is_hex(&sh.sha256, 64) {
                    return bad(format!("{at}: sha256 is not 64 hex digits"));
                }
                if sh.samples == 0 {
                    return bad(format!("{at}: no samples"));
                }
                if !sh.categories.is_empty() {
                    if sh.categories.len() as u64 != sh.samples {
                        return bad(format!(
                            "{at}: categories has {} entries for {} samples",
                            sh.categories.len(),
                            sh.samples
                        ));
                    }
                    if let Some(b) = sh
                        .categories
                        .bytes()
                        .find(|&b| b != b'-' && category_from_char(b).is_none())
                    {
                        return bad(format!("{at}: bad category character {:?}", b as char));
                    }
                }
                samples += sh.samples;
                bytes += sh.bytes;
            }
            if samples != s.samples {
                return bad(format!(
                    "subset {subset}: says {} samples, its shards hold {samples}",
                    s.samples
                ));
            }
            if bytes != s.bytes {
                return bad(format!(
                    "subset {subset}: says {} bytes, its shards hold {bytes}",
                    s.bytes
                ));
            }
        }
        if self.splits.len() > super::splits::MAX_SPLITS {
            return bad(format!(
                "{} splits, at most {}",
                self.splits.len(),
                super::splits::MAX_SPLITS
            ));
        }
        for (i, n) in self.splits.iter().enumerate() {
            super::splits::check_name(n).map_err(|e| ManifestError::Invalid(e.to_string()))?;
            if self.splits[..i].contains(n) {
                return bad(format!("split {n:?} is listed twice"));
            }
        }
        for (subset, s) in &self.subsets {
            for (i, sh) in s.shards.iter().enumerate() {
                let at = format!("subset {subset}, shard {i} ({})", sh.path);
                let n = sh.samples as usize;
                if self.splits.is_empty() != sh.splits.is_empty() {
                    return bad(format!(
                        "{at}: splits are {} but the dataset {} split names",
                        if sh.splits.is_empty() {
                            "absent"
                        } else {
                            "present"
                        },
                        if self.splits.is_empty() {
                            "has no"
                        } else {
                            "has"
                        }
                    ));
                }
                if !sh.splits.is_empty() {
                    if sh.splits.len() != n {
                        return bad(format!(
                            "{at}: splits has {} entries for {n} samples",
                            sh.splits.len()
                        ));
                    }
                    let k = self.splits.len() as u8;
                    if let Some(b) = sh.splits.bytes().find(|b| b.wrapping_sub(b'0') >= k) {
                        return bad(format!("{at}: bad split character {:?}", b as char));
                    }
                }
                for (field, v, per) in [
                    ("edit_types", &sh.edit_types, 1),
                    ("turns", &sh.turns, 1),
                    ("instruction_words", &sh.instruction_words, 2),
                ] {
                    if !v.is_empty() && v.len() != n * per {
                        return bad(format!(
                            "{at}: {field} has {} characters for {n} samples",
                            v.len()
                        ));
                    }
                    if let Some(b) = v.bytes().find(|&b| b != b'-' && from_base36(b).is_none()) {
                        return bad(format!("{at}: bad {field} character {:?}", b as char));
                    }
                }
            }
        }
        let expected = manifest_version(self);
        if expected != self.version {
            return bad(format!(
                "version {} does not match its subsets ({expected})",
                self.version
            ));
        }
        Ok(())
    }

    /// Samples in all subsets.
    pub fn total_samples(&self) -> u64 {
        self.subsets.values().map(|s| s.samples).sum()
    }
}
