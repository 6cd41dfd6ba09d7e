//! Which samples a stream draws from: the `[select]` table of a stream spec.
//!
//! A selection narrows each subset to the samples that pass every filter, in canonical
//! order; the plan then shuffles and schedules only those. It is part of the spec, so
//! of the cursor fingerprint: a cursor of a filtered stream resumes only that stream.
//! The filters read the per-sample attributes the manifest records (see
//! [`narrow`](super::narrow)), so no shard is read to apply them.
//!
//! ```toml
//! [select]
//! split = "train"
//! exclude_categories = ["text_symbol"]
//! min_turns = 2                # multi-turn chains of 2 to 4 turns
//! max_turns = 4
//! max_instruction_words = 40
//! exclude_keys_file = "ambiguous.txt"   # one `<subset>/<key>` or `<key>` per line
//! ```

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::dataset::edit_types::{Category, EDIT_TYPES};
use crate::dataset::Subset;

/// The filters of a stream; the default selects every sample.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// Only these subsets (`sft`, `preference`, `multi_turn`, or their aliases); the
    /// others are left empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<String>,
    /// Only samples of this split (one of the dataset's `splits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// Only samples of these edit types (their exact Pico-Banana strings).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edit_types: Vec<String>,
    /// No samples of these edit types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_edit_types: Vec<String>,
    /// Only samples of these categories (`text_symbol`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// No samples of these categories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_categories: Vec<String>,
    /// Multi-turn chains of at least this many turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_turns: Option<u32>,
    /// Multi-turn chains of at most this many turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u32>,
    /// Samples whose longest instruction has at least this many words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_instruction_words: Option<u32>,
    /// Samples whose longest instruction has at most this many words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instruction_words: Option<u32>,
    /// Only these samples: `<subset>/<key>` (the split file's form) or a bare `<key>`
    /// (that key in any subset). Every entry must name a sample of the dataset.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Never these samples, in the same form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_keys: Vec<String>,
    /// A file of `keys` entries, one per line (`#` comments and blank lines skipped),
    /// read by the program that loads the spec file ([`Selection::with_key_files`]),
    /// relative to that file's folder. Not sent: the daemon gets the entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_file: Option<std::path::PathBuf>,
    /// A file of `exclude_keys` entries, as `keys_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_keys_file: Option<std::path::PathBuf>,
}

/// A selection that cannot apply to any dataset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    /// A subset name that does not exist.
    #[error("select.subsets: unknown subset {name:?} (known: sft, preference, multi_turn)")]
    UnknownSubset { name: String },
    /// An edit type that Pico-Banana does not have.
    #[error("select.{field}: unknown edit type {name:?} (known: {known})")]
    UnknownEditType {
        field: &'static str,
        name: String,
        known: String,
    },
    /// A category name that does not exist.
    #[error("select.{field}: unknown category {name:?} (known: {known})")]
    UnknownCategory {
        field: &'static str,
        name: String,
        known: String,
    },
    /// A keys file that cannot be read, or that repeats an entry.
    #[error("select.{field}: {path}: {why}")]
    KeysFile {
        field: &'static str,
        path: String,
        why: String,
    },
    /// An empty entry in a keys list.
    #[error("select.{field}[{index}]: an empty key")]
    EmptyKey { field: &'static str, index: usize },
    /// A minimum above its maximum.
    #[error("select.min_{what} = {min} is above select.max_{what} = {max}")]
    EmptyRange {
        what: &'static str,
        min: u32,
        max: u32,
    },
}

impl Selection {
    /// True when nothing is filtered.
    pub fn is_all(&self) -> bool {
        self == &Selection::default()
    }

    /// Checks the names and ranges; the split is checked against the dataset.
    pub fn validate(&self) -> Result<(), SelectionError> {
        self.subset_ids()?;
        for (field, file) in [
            ("keys_file", &self.keys_file),
            ("exclude_keys_file", &self.exclude_keys_file),
        ] {
            if let Some(path) = file {
                return Err(SelectionError::KeysFile {
                    field,
                    path: path.display().to_string(),
                    why: "not read: load the spec file with CurriculumFile::read (as fetch and plan do), which reads it into the key list".into(),
                });
            }
        }
        for (field, keys) in [("keys", &self.keys), ("exclude_keys", &self.exclude_keys)] {
            if let Some(index) = keys.iter().position(|k| k.trim().is_empty()) {
                return Err(SelectionError::EmptyKey { field, index });
            }
        }
        edit_type_ids("edit_types", &self.edit_types)?;
        edit_type_ids("exclude_edit_types", &self.exclude_edit_types)?;
        category_ids("categories", &self.categories)?;
        category_ids("exclude_categories", &self.exclude_categories)?;
        for (what, min, max) in [
            ("turns", self.min_turns, self.max_turns),
            (
                "instruction_words",
                self.min_instruction_words,
                self.max_instruction_words,
            ),
        ] {
            if let (Some(min), Some(max)) = (min, max) {
                if min > max {
                    return Err(SelectionError::EmptyRange { what, min, max });
                }
            }
        }
        Ok(())
    }

    /// The subsets `subsets` names; `None` when it names none (every subset).
    pub fn subset_ids(&self) -> Result<Option<Vec<Subset>>, SelectionError> {
        if self.subsets.is_empty() {
            return Ok(None);
        }
        let mut out = self
            .subsets
            .iter()
            .map(|name| {
                Subset::from_name(name)
                    .ok_or_else(|| SelectionError::UnknownSubset { name: name.clone() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.sort();
        out.dedup();
        Ok(Some(out))
    }

    /// The canonical text the spec fingerprint hashes: empty for no selection, else one
    /// line with the names sorted.
    pub fn canonical(&self) -> String {
        if self.is_all() {
            return String::new();
        }
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v.dedup();
            format!("{v:?}")
        };
        let opt = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
        let mut out = String::from("select");
        let _ = write!(
            out,
            " split={:?} edit_types={} exclude_edit_types={} categories={} exclude_categories={} turns={}..{} instruction_words={}..{}",
            self.split,
            sorted(&self.edit_types),
            sorted(&self.exclude_edit_types),
            sorted(&self.categories),
            sorted(&self.exclude_categories),
            opt(self.min_turns),
            opt(self.max_turns),
            opt(self.min_instruction_words),
            opt(self.max_instruction_words),
        );
        for (name, keys) in [("keys", &self.keys), ("exclude_keys", &self.exclude_keys)] {
            if !keys.is_empty() {
                let _ = write!(out, " {name}={}", key_set_digest(keys));
            }
        }
        if let Ok(Some(subsets)) = self.subset_ids() {
            let names: Vec<&str> = subsets.iter().map(|s| s.name()).collect();
            let _ = write!(out, " subsets={names:?}");
        }
        out.push('\n');
        out
    }
}

impl Selection {
    /// The selection with its key files read (relative to `base`, the spec file's
    /// folder) into `keys` and `exclude_keys`. A file that cannot be read, or that
    /// repeats an entry, is refused with its path and line numbers.
    pub fn with_key_files(mut self, base: &std::path::Path) -> Result<Selection, SelectionError> {
        for (field, file, keys) in [
            ("keys_file", self.keys_file.take(), &mut self.keys),
            (
                "exclude_keys_file",
                self.exclude_keys_file.take(),
                &mut self.exclude_keys,
            ),
        ] {
            let Some(file) = file else { continue };
            let path = base.join(&file);
            let err = |why: String| SelectionError::KeysFile {
                field,
                path: path.display().to_string(),
                why,
            };
            let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
            let mut seen = std::collections::HashMap::new();
            for (i, line) in text.lines().enumerate() {
                let entry = line.trim();
                if entry.is_empty() || entry.starts_with('#') {
                    continue;
                }
                if let Some(first) = seen.insert(entry.to_string(), i + 1) {
                    return Err(err(format!(
                        "line {} repeats {entry:?} of line {first}",
                        i + 1
                    )));
                }
                keys.push(entry.to_string());
            }
            if seen.is_empty() {
                // An empty allow list would select everything.
                return Err(err("names no key".into()));
            }
        }
        Ok(self)
    }
}

/// A short digest of a key list (order and repeats ignored), for the fingerprint.
fn key_set_digest(keys: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&str> = keys.iter().map(|k| k.trim()).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut h = Sha256::new();
    for k in &sorted {
        h.update(k.as_bytes());
        h.update([b'\n']);
    }
    let digest = h.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}:{hex}", sorted.len())
}

/// Indexes into [`EDIT_TYPES`] of `names`.
pub fn edit_type_ids(field: &'static str, names: &[String]) -> Result<Vec<usize>, SelectionError> {
    names
        .iter()
        .map(|name| {
            EDIT_TYPES
                .iter()
                .position(|(t, _, _)| t == name)
                .ok_or_else(|| SelectionError::UnknownEditType {
                    field,
                    name: name.clone(),
                    known: EDIT_TYPES
                        .iter()
                        .map(|(t, _, _)| format!("{t:?}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        })
        .collect()
}

/// Categories of `names`.
pub fn category_ids(
    field: &'static str,
    names: &[String],
) -> Result<Vec<Category>, SelectionError> {
    names
        .iter()
        .map(|name| {
            Category::from_name(name).ok_or_else(|| SelectionError::UnknownCategory {
                field,
                name: name.clone(),
                known: Category::ALL
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_and_empty_ranges_are_refused_naming_them() {
        let bad = Selection {
            categories: vec!["textsymbol".into()],
            ..Default::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(
            e.contains("select.categories") && e.contains("\"textsymbol\""),
            "{e}"
        );
        assert!(e.contains("text_symbol"), "lists the known ones: {e}");
        let bad = Selection {
            exclude_edit_types: vec!["Zoom".into()],
            ..Default::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(
            e.contains("select.exclude_edit_types") && e.contains("Zoom in"),
            "{e}"
        );
        let bad = Selection {
            min_turns: Some(4),
            max_turns: Some(2),
            ..Default::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "select.min_turns = 4 is above select.max_turns = 2"
        );
    }

    #[test]
    fn the_canonical_text_ignores_order_and_tells_filters_apart() {
        assert_eq!(Selection::default().canonical(), "");
        let a = Selection {
            categories: vec!["stylistic".into(), "text_symbol".into()],
            ..Default::default()
        };
        let b = Selection {
            categories: vec!["text_symbol".into(), "stylistic".into()],
            ..Default::default()
        };
        assert_eq!(a.canonical(), b.canonical());
        let c = Selection {
            exclude_categories: a.categories.clone(),
            ..Default::default()
        };
        assert_ne!(a.canonical(), c.canonical());
        let d = Selection {
            min_turns: Some(2),
            ..Default::default()
        };
        let e = Selection {
            max_turns: Some(2),
            ..Default::default()
        };
        assert_ne!(d.canonical(), e.canonical());
    }
}
