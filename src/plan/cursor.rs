//! Cursors: the resumable position of a stream as a short printable token.
//!
//! Part of the plan stage (store -> shard reader -> **plan** -> prefetch -> ...): the
//! plan is a pure function of the step, so a position is just a step, plus the
//! fingerprints that say which stream the step belongs to. Resuming costs nothing (no
//! replay) and works on any daemon that holds the same dataset version.
//!
//! Token format, version 1:
//!
//! ```text
//! ef1:<step>:<spec>:<dataset>
//! ef1:120000:3f9a0c2b7d1e4a56:9b2e61c04d7f8a13
//! ```
//!
//! - `ef1`: the format tag; other tags are refused.
//! - `<step>`: the next global step the stream will yield, in decimal.
//! - `<spec>`: the 16 lowercase hex characters of
//!   [`StreamSpec::fingerprint`](super::StreamSpec::fingerprint) (or `fingerprint_with`
//!   when serving mixes transform settings in).
//! - `<dataset>`: the first 16 lowercase hex characters of the sha256 of the dataset
//!   version string (hashed, so that any version text fits the token).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use super::spec::FINGERPRINT_HEX_LEN;

/// The format tag of cursor tokens this code writes and reads.
pub const CURSOR_TAG: &str = "ef1";

/// Why a cursor token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// The token is not a well-formed cursor.
    #[error("malformed cursor `{token}`: {reason}")]
    Malformed {
        /// The token (cut to 80 characters).
        token: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The cursor belongs to a stream with another spec (seed, batch size, curriculum,
    /// weights, shuffle or transforms differ).
    #[error(
        "cursor belongs to a different stream spec (cursor spec {cursor}, this stream {expected})"
    )]
    ForeignSpec {
        /// The cursor's spec fingerprint.
        cursor: String,
        /// This stream's spec fingerprint.
        expected: String,
    },
    /// The cursor belongs to another dataset version.
    #[error(
        "cursor belongs to a different dataset version (cursor dataset {cursor}, this dataset {expected})"
    )]
    ForeignDataset {
        /// The cursor's dataset fingerprint.
        cursor: String,
        /// This dataset's fingerprint.
        expected: String,
    },
    /// Both the spec and the dataset version differ.
    #[error(
        "cursor belongs to a different stream spec and a different dataset version (cursor {cursor_spec}/{cursor_dataset}, this stream {expected_spec}/{expected_dataset})"
    )]
    ForeignSpecAndDataset {
        /// The cursor's spec fingerprint.
        cursor_spec: String,
        /// The cursor's dataset fingerprint.
        cursor_dataset: String,
        /// This stream's spec fingerprint.
        expected_spec: String,
        /// This dataset's fingerprint.
        expected_dataset: String,
    },
}

/// A position in one stream: the next step, with the fingerprints of the spec and
/// the dataset version it belongs to. Encodes to and parses from a token (module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor {
    step: u64,
    spec: String,
    dataset: String,
}

/// The dataset part of a cursor: the first 16 hex characters of sha256(version).
pub fn dataset_fingerprint(version: &str) -> String {
    let digest = Sha256::digest(version.as_bytes());
    digest[..FINGERPRINT_HEX_LEN / 2]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn is_fingerprint(s: &str) -> bool {
    s.len() == FINGERPRINT_HEX_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Cursor {
    /// A cursor at `step` of the stream with spec fingerprint `spec_fingerprint` (from
    /// [`StreamSpec::fingerprint`](super::StreamSpec::fingerprint) or
    /// `fingerprint_with`) over the dataset version `dataset_version`.
    pub fn new(step: u64, spec_fingerprint: &str, dataset_version: &str) -> Cursor {
        Cursor {
            step,
            spec: spec_fingerprint.to_string(),
            dataset: dataset_fingerprint(dataset_version),
        }
    }

    /// The next global step the stream yields.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The spec fingerprint the cursor was issued for.
    pub fn spec_fingerprint(&self) -> &str {
        &self.spec
    }

    /// The dataset fingerprint the cursor was issued for.
    pub fn dataset_fingerprint(&self) -> &str {
        &self.dataset
    }

    /// The same stream, `step` instead of this cursor's step.
    pub fn at(&self, step: u64) -> Cursor {
        Cursor {
            step,
            ..self.clone()
        }
    }

    /// The printable token (`ef1:<step>:<spec>:<dataset>`).
    pub fn encode(&self) -> String {
        self.to_string()
    }

    /// Parses a token.
    pub fn decode(token: &str) -> Result<Cursor, CursorError> {
        let malformed = |reason: String| CursorError::Malformed {
            token: token.chars().take(80).collect(),
            reason,
        };
        let parts: Vec<&str> = token.trim().split(':').collect();
        if parts[0] != CURSOR_TAG {
            return Err(malformed(format!(
                "expected the tag `{CURSOR_TAG}:`, found `{}`",
                parts[0].chars().take(16).collect::<String>()
            )));
        }
        if parts.len() != 4 {
            return Err(malformed(format!(
                "expected 4 fields separated by `:`, found {}",
                parts.len()
            )));
        }
        let step = parts[1]
            .parse::<u64>()
            .ok()
            .filter(|_| parts[1].bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| malformed("the step is not a decimal integer".to_string()))?;
        for (name, field) in [("spec", parts[2]), ("dataset", parts[3])] {
            if !is_fingerprint(field) {
                return Err(malformed(format!(
                    "the {name} fingerprint is not {FINGERPRINT_HEX_LEN} lowercase hex characters"
                )));
            }
        }
        Ok(Cursor {
            step,
            spec: parts[2].to_string(),
            dataset: parts[3].to_string(),
        })
    }

    /// The cursor's step if it belongs to the stream with this spec fingerprint and
    /// dataset version; otherwise an error saying which of the two differs.
    pub fn check(&self, spec_fingerprint: &str, dataset_version: &str) -> Result<u64, CursorError> {
        let dataset = dataset_fingerprint(dataset_version);
        match (self.spec == spec_fingerprint, self.dataset == dataset) {
            (true, true) => Ok(self.step),
            (false, true) => Err(CursorError::ForeignSpec {
                cursor: self.spec.clone(),
                expected: spec_fingerprint.to_string(),
            }),
            (true, false) => Err(CursorError::ForeignDataset {
                cursor: self.dataset.clone(),
                expected: dataset,
            }),
            (false, false) => Err(CursorError::ForeignSpecAndDataset {
                cursor_spec: self.spec.clone(),
                cursor_dataset: self.dataset.clone(),
                expected_spec: spec_fingerprint.to_string(),
                expected_dataset: dataset,
            }),
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{CURSOR_TAG}:{}:{}:{}",
            self.step, self.spec, self.dataset
        )
    }
}

impl FromStr for Cursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Cursor, CursorError> {
        Cursor::decode(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "0123456789abcdef";

    #[test]
    fn round_trips() {
        let c = Cursor::new(120_000, SPEC, "sha256:feedface");
        let token = c.encode();
        assert!(token.starts_with("ef1:120000:0123456789abcdef:"), "{token}");
        assert_eq!(token.len(), 4 + 6 + 1 + 16 + 1 + 16);
        assert_eq!(Cursor::decode(&token).unwrap(), c);
        assert_eq!(token.parse::<Cursor>().unwrap().step(), 120_000);
        assert_eq!(c.at(5).check(SPEC, "sha256:feedface"), Ok(5));
    }

    #[test]
    fn malformed_tokens_say_why() {
        let ds = dataset_fingerprint("v");
        for (token, why) in [
            ("", "tag"),
            ("ef2:1:0123456789abcdef:0123456789abcdef", "tag"),
            ("ef1:1:0123456789abcdef", "4 fields"),
            (&format!("ef1:1:{SPEC}:{ds}:9") as &str, "4 fields"),
            (&format!("ef1:-1:{SPEC}:{ds}"), "step"),
            (&format!("ef1:+1:{SPEC}:{ds}"), "step"),
            (&format!("ef1:99999999999999999999:{SPEC}:{ds}"), "step"),
            (&format!("ef1:1:0123456789ABCDEF:{ds}"), "spec fingerprint"),
            (&format!("ef1:1:{SPEC}:abc"), "dataset fingerprint"),
        ] {
            let err = Cursor::decode(token).unwrap_err().to_string();
            assert!(err.starts_with("malformed cursor"), "{err}");
            assert!(err.contains(why), "{token}: {err}");
        }
    }

    #[test]
    fn foreign_cursors_name_what_differs() {
        let c = Cursor::new(3, SPEC, "v1");
        let err = c.check("fedcba9876543210", "v1").unwrap_err().to_string();
        assert!(
            err.contains("stream spec") && !err.contains("dataset"),
            "{err}"
        );
        let err = c.check(SPEC, "v2").unwrap_err().to_string();
        assert!(
            err.contains("dataset version") && !err.contains("spec"),
            "{err}"
        );
        let err = c.check("fedcba9876543210", "v2").unwrap_err().to_string();
        assert!(err.contains("spec and a different dataset"), "{err}");
    }
}
