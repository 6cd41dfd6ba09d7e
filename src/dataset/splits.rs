//! Named splits (`train`, `val`, `test`, ...): which split each sample belongs to,
//! decided once when a dataset is packed or resharded and recorded in the manifest
//! (one character per sample, like the categories; see [`super::manifest`]). Part of the
//! writer stage: importer -> **dataset writer** -> shards + manifest.
//!
//! Two sources:
//! - a split file: one `<subset>/<key> <split>` line per sample (`#` starts a comment,
//!   blank lines are skipped). A key listed twice, a key the dataset does not hold, or a
//!   sample the file does not list is refused, with line numbers.
//! - a rule `seed=S,train=0.8,val=0.1,test=0.1`: each sample's *group* is hashed with the
//!   seed (sha256, pinned here) to a number in `[0, 1)` that picks the split by the
//!   cumulative fractions.
//!
//! The group is the source photo: the sample's `source_url` (its Open Images URL,
//! scheme stripped) when its metadata has one, else `<subset>/<key>`. So every edit of
//! one photo, in any subset, lands in one split, and a preference pair or a multi-turn
//! chain (each one sample) never straddles splits.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::Subset;

/// The split names every dataset with splits lists, in this order, before any other.
pub const STANDARD_SPLITS: [&str; 3] = ["train", "val", "test"];
/// The most splits a dataset can have (one decimal digit per sample in the manifest).
pub const MAX_SPLITS: usize = 10;

/// Why a split file or rule is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitError {
    /// A line of the split file does not parse.
    #[error("{path}:{line}: {reason}")]
    Line {
        /// The split file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A key is listed twice.
    #[error("{path}:{line}: {key} is listed twice (first at line {first})")]
    Duplicate {
        /// The split file.
        path: String,
        /// The second line naming the key.
        line: usize,
        /// The first line naming it.
        first: usize,
        /// `<subset>/<key>`.
        key: String,
    },
    /// The split file names keys the dataset does not hold.
    #[error("{path}: {count} keys are not in the dataset, first {key} at line {line}")]
    UnknownKeys {
        /// The split file.
        path: String,
        /// How many.
        count: usize,
        /// The first (by line).
        key: String,
        /// Its line.
        line: usize,
    },
    /// A sample of the dataset is not in the split file.
    #[error("{path}: sample {key} is not listed")]
    Missing {
        /// The split file.
        path: String,
        /// `<subset>/<key>`.
        key: String,
    },
    /// The rule does not parse or its fractions are wrong.
    #[error("split rule {rule:?}: {reason}")]
    Rule {
        /// The rule as given.
        rule: String,
        /// What is wrong.
        reason: String,
    },
    /// A split name is not usable.
    #[error("split name {name:?} is invalid: use 1 to 32 of a-z, 0-9 and _")]
    Name {
        /// The name.
        name: String,
    },
    /// More splits than [`MAX_SPLITS`].
    #[error("{count} splits, at most {MAX_SPLITS} are supported")]
    TooMany {
        /// How many were named.
        count: usize,
    },
}

/// Checks a split name.
pub fn check_name(name: &str) -> Result<(), SplitError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(SplitError::Name {
            name: name.to_string(),
        })
    }
}

/// The names list: the standard ones first, then `extra` in order, each once.
fn names_with<'a>(extra: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, SplitError> {
    let mut names: Vec<String> = STANDARD_SPLITS.iter().map(|s| s.to_string()).collect();
    for n in extra {
        check_name(n)?;
        if !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    }
    if names.len() > MAX_SPLITS {
        return Err(SplitError::TooMany { count: names.len() });
    }
    Ok(names)
}

/// A split rule: a seed and a fraction per split.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitRule {
    /// The hash seed.
    pub seed: u64,
    /// The split names (standard ones first).
    pub names: Vec<String>,
    /// Upper ends of the cumulative fractions, one per name; the last is 1.
    bounds: Vec<f64>,
    text: String,
}

impl SplitRule {
    /// Parses `seed=S,name=fraction,...`; fractions are non-negative and sum to 1.
    pub fn parse(text: &str) -> Result<SplitRule, SplitError> {
        let bad = |reason: String| SplitError::Rule {
            rule: text.to_string(),
            reason,
        };
        let mut seed = None;
        let mut fractions: Vec<(&str, f64)> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("{part:?} is not name=value")))?;
            let (k, v) = (k.trim(), v.trim());
            if k == "seed" {
                seed = Some(
                    v.parse::<u64>()
                        .map_err(|_| bad(format!("seed {v:?} is not an integer")))?,
                );
                continue;
            }
            check_name(k)?;
            let f = v
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .ok_or_else(|| bad(format!("fraction {v:?} of {k} is not a number >= 0")))?;
            if fractions.iter().any(|(n, _)| *n == k) {
                return Err(bad(format!("{k} is given twice")));
            }
            fractions.push((k, f));
        }
        let seed = seed.ok_or_else(|| bad("no seed=".into()))?;
        let sum: f64 = fractions.iter().map(|(_, f)| f).sum();
        if (sum - 1.0).abs() > 1e-6 {
            return Err(bad(format!("the fractions sum to {sum}, not 1")));
        }
        let names = names_with(fractions.iter().map(|(n, _)| *n))?;
        let mut acc = 0.0;
        let mut bounds: Vec<f64> = names
            .iter()
            .map(|n| {
                acc += fractions
                    .iter()
                    .find(|(k, _)| *k == n.as_str())
                    .map_or(0.0, |(_, f)| *f);
                acc
            })
            .collect();
        // The last split with a positive fraction takes everything up to 1, so rounding
        // never leaves a sample without a split.
        if let Some(i) = names
            .iter()
            .rposition(|n| fractions.iter().any(|(k, f)| *k == n.as_str() && *f > 0.0))
        {
            for b in &mut bounds[i..] {
                *b = f64::INFINITY;
            }
        }
        Ok(SplitRule {
            seed,
            names,
            bounds,
            text: text.to_string(),
        })
    }

    /// The split id of a sample whose group is `group`.
    pub fn assign(&self, group: &str) -> u8 {
        let mut h = Sha256::new();
        h.update(self.seed.to_le_bytes());
        h.update(group.as_bytes());
        let d = h.finalize();
        let x = u64::from_le_bytes(d[..8].try_into().expect("8 bytes")) >> 11;
        let u = x as f64 / (1u64 << 53) as f64;
        self.bounds.iter().position(|b| u < *b).unwrap_or(0) as u8
    }

    /// The rule as given.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// A parsed split file.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitFile {
    /// The file's path, for errors.
    pub path: String,
    /// The split names (standard ones first).
    pub names: Vec<String>,
    /// `(subset, key)` -> (split id, line).
    entries: HashMap<(Subset, String), (u8, usize)>,
}

impl SplitFile {
    /// Reads and parses a split file.
    pub fn read(path: &Path) -> Result<SplitFile, SplitError> {
        let text = std::fs::read_to_string(path).map_err(|e| SplitError::Line {
            path: path.display().to_string(),
            line: 0,
            reason: format!("cannot read: {e}"),
        })?;
        SplitFile::parse(&path.display().to_string(), &text)
    }

    /// Parses split file text; `path` names it in errors.
    pub fn parse(path: &str, text: &str) -> Result<SplitFile, SplitError> {
        let mut rows: Vec<(Subset, String, String, usize)> = Vec::new();
        let mut seen: HashMap<(Subset, String), usize> = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let body = raw.split('#').next().unwrap_or("").trim();
            if body.is_empty() {
                continue;
            }
            let bad = |reason: String| SplitError::Line {
                path: path.to_string(),
                line,
                reason,
            };
            let mut parts = body.split_whitespace();
            let (Some(id), Some(split), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad(format!("{body:?} is not `<subset>/<key> <split>`")));
            };
            let (subset, key) = id
                .split_once('/')
                .ok_or_else(|| bad(format!("{id:?} is not <subset>/<key>")))?;
            let subset = Subset::from_name(subset).ok_or_else(|| {
                bad(format!(
                    "unknown subset {subset:?} (known: sft, preference, multi_turn)"
                ))
            })?;
            check_name(split).map_err(|e| bad(e.to_string()))?;
            if let Some(&first) = seen.get(&(subset, key.to_string())) {
                return Err(SplitError::Duplicate {
                    path: path.to_string(),
                    line,
                    first,
                    key: id.to_string(),
                });
            }
            seen.insert((subset, key.to_string()), line);
            rows.push((subset, key.to_string(), split.to_string(), line));
        }
        let names = names_with(rows.iter().map(|r| r.2.as_str()))?;
        let entries = rows
            .into_iter()
            .map(|(s, k, split, line)| {
                let id = names.iter().position(|n| *n == split).expect("named") as u8;
                ((s, k), (id, line))
            })
            .collect();
        Ok(SplitFile {
            path: path.to_string(),
            names,
            entries,
        })
    }

    /// The split id and line of a sample, if listed.
    pub fn get(&self, subset: Subset, key: &str) -> Option<(u8, usize)> {
        self.entries.get(&(subset, key.to_string())).copied()
    }

    /// Samples listed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no sample is listed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries not in `used`, as an error naming the first by line.
    pub fn check_all_used(
        &self,
        used: &std::collections::HashSet<(Subset, String)>,
    ) -> Result<(), SplitError> {
        let mut unknown: Vec<(usize, String)> = self
            .entries
            .iter()
            .filter(|(k, _)| !used.contains(*k))
            .map(|((s, k), (_, line))| (*line, format!("{s}/{k}")))
            .collect();
        unknown.sort();
        match unknown.first() {
            None => Ok(()),
            Some((line, key)) => Err(SplitError::UnknownKeys {
                path: self.path.clone(),
                count: unknown.len(),
                key: key.clone(),
                line: *line,
            }),
        }
    }
}

/// Where a writer takes each sample's split from.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitSource {
    /// A split file.
    File(SplitFile),
    /// A hash rule.
    Rule(SplitRule),
    /// The caller gives every sample's split id (resharding keeps the source's).
    Given(Vec<String>),
}

impl SplitSource {
    /// The split names, in id order.
    pub fn names(&self) -> &[String] {
        match self {
            SplitSource::File(f) => &f.names,
            SplitSource::Rule(r) => &r.names,
            SplitSource::Given(n) => n,
        }
    }
}

/// The group of a sample: its source photo's URL without scheme, else `<subset>/<key>`.
pub fn group_of(subset: Subset, key: &str, source_url: Option<&str>) -> String {
    match source_url.map(super::pico_banana::sources::url_key) {
        Some(u) if !u.is_empty() => format!("url:{u}"),
        _ => format!("key:{subset}/{key}"),
    }
}

/// The split character stored in the manifest for split id `id`.
pub fn split_char(id: u8) -> char {
    (b'0' + id) as char
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_file_parses_and_refuses_with_lines() {
        let f = SplitFile::parse("s.txt", "# c\nsft/0001 test\n\nmulti_turn/0001 train\n").unwrap();
        assert_eq!(f.get(Subset::Sft, "0001"), Some((2, 2)));
        assert_eq!(f.get(Subset::MultiTurn, "0001"), Some((0, 4)));
        let e = SplitFile::parse("s.txt", "sft/1 test\nsft/1 val\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "s.txt:2: sft/1 is listed twice (first at line 1)"
        );
        let e = SplitFile::parse("s.txt", "sft/1 test\nbogus/2 val\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("s.txt:2: unknown subset \"bogus\""),
            "{e}"
        );
        let e = SplitFile::parse("s.txt", "sft/1\n").unwrap_err();
        assert!(e.to_string().starts_with("s.txt:1:"), "{e}");
        let e = SplitFile::parse("s.txt", "sft/1 Test\n").unwrap_err();
        assert!(e.to_string().contains("\"Test\""), "{e}");
        let used = [(Subset::Sft, "0001".to_string())].into_iter().collect();
        let e = f.check_all_used(&used).unwrap_err();
        assert_eq!(
            e.to_string(),
            "s.txt: 1 keys are not in the dataset, first multi_turn/0001 at line 4"
        );
    }

    #[test]
    fn rules_parse_and_follow_fractions() {
        let r = SplitRule::parse("seed=3,train=0.8,val=0.1,test=0.1").unwrap();
        assert_eq!(r.names, STANDARD_SPLITS);
        let mut counts = [0u32; 3];
        for i in 0..10_000 {
            counts[r.assign(&format!("g{i}")) as usize] += 1;
        }
        assert!((7700..8300).contains(&counts[0]), "{counts:?}");
        assert!((800..1200).contains(&counts[2]), "{counts:?}");
        let only = SplitRule::parse("seed=1,test=1").unwrap();
        assert!((0..100).all(|i| only.assign(&i.to_string()) == 2));
        for bad in [
            "train=1",
            "seed=x,train=1",
            "seed=1,train=0.5",
            "seed=1,train=-1,val=2",
            "seed=1,Train=1",
        ] {
            assert!(SplitRule::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            SplitRule::parse("seed=1,train=0.5")
                .unwrap_err()
                .to_string(),
            "split rule \"seed=1,train=0.5\": the fractions sum to 0.5, not 1"
        );
    }

    #[test]
    fn groups_follow_the_source_photo() {
        let a = group_of(Subset::Sft, "1", Some("https://x/p.jpg"));
        assert_eq!(a, group_of(Subset::MultiTurn, "9", Some("http://x/p.jpg")));
        assert_ne!(
            group_of(Subset::Sft, "1", None),
            group_of(Subset::Preference, "1", None)
        );
    }
}
