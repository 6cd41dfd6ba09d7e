//! The sample schema: what one training example holds and how it maps onto WebDataset
//! tar members (`<key>.<field>`). The shard writer and reader move samples as members;
//! this module gives the members their meaning.
//!
//! Fields, by subset:
//! - every sample: `json` (its [`SampleMeta`]) and `src.<ext>` (the source photo);
//! - single-turn: `edit.<ext>`;
//! - preference: `chosen.<ext>` and `rejected0.<ext>`, `rejected1.<ext>`, ...;
//! - multi-turn: `turn1.<ext>` ... `turnN.<ext>`, turn N applied to turn N-1's result.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Category, Subset};
use crate::codec::ImageFormat;
use crate::shard::RawSample;

/// The most rejected images or turns one sample may carry.
pub const MAX_IMAGES_PER_ROLE: usize = 16;

/// What an image is within its sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The source photo.
    Source,
    /// The edited image of a single-turn sample.
    Edit,
    /// The successful edit of a preference sample.
    Chosen,
    /// The n-th failed attempt of a preference sample (from 0).
    Rejected(u8),
    /// The result of turn n of a multi-turn chain (from 1).
    Turn(u8),
}

impl Role {
    /// The field name without extension (`src`, `edit`, `chosen`, `rejected0`, `turn1`).
    pub fn field(self) -> String {
        match self {
            Role::Source => "src".into(),
            Role::Edit => "edit".into(),
            Role::Chosen => "chosen".into(),
            Role::Rejected(i) => format!("rejected{i}"),
            Role::Turn(i) => format!("turn{i}"),
        }
    }

    /// Parses a field name without extension.
    pub fn from_field(field: &str) -> Option<Role> {
        let num = |rest: &str| -> Option<u8> {
            if rest.is_empty() || rest.len() > 2 || !rest.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            rest.parse().ok()
        };
        match field {
            "src" => Some(Role::Source),
            "edit" => Some(Role::Edit),
            "chosen" => Some(Role::Chosen),
            _ => {
                if let Some(rest) = field.strip_prefix("rejected") {
                    num(rest).map(Role::Rejected)
                } else if let Some(rest) = field.strip_prefix("turn") {
                    num(rest).filter(|n| *n >= 1).map(Role::Turn)
                } else {
                    None
                }
            }
        }
    }
}

/// The `json` member of a sample: everything about it that is not an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SampleMeta {
    /// Which subset the sample belongs to.
    pub subset: Option<Subset>,
    /// One of the 35 Pico-Banana edit types (absent for multi-turn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit_type: Option<String>,
    /// The category of the edit type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    /// The long instruction (for multi-turn, the first turn's).
    #[serde(default)]
    pub text: String,
    /// The short rewrite of the instruction, where published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summarized_text: Option<String>,
    /// Multi-turn: one instruction per turn, in turn order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<String>,
    /// Where the source photo was published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    /// Where the sample came from (for example `sft.jsonl:17`), for error reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// One encoded image of a sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleImage {
    /// What the image is.
    pub role: Role,
    /// How it is encoded.
    pub format: ImageFormat,
    /// The encoded bytes, as stored.
    pub bytes: Bytes,
}

/// One training example: a key, its metadata and its encoded images.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The WebDataset key: unique within its subset, no dots, no leading slash.
    pub key: String,
    /// The `json` member.
    pub meta: SampleMeta,
    /// The images, in member order.
    pub images: Vec<SampleImage>,
}

/// Why a set of members does not make a valid sample.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SampleError {
    /// The key is empty, has a dot, or tries to leave the shard (`..`, leading `/`).
    #[error("bad sample key {key:?}: {why}")]
    BadKey { key: String, why: &'static str },
    /// A member's field name is not part of the schema.
    #[error("sample {key}: unknown field {field:?}")]
    UnknownField { key: String, field: String },
    /// The `json` member is missing or does not parse.
    #[error("sample {key}: bad json member: {why}")]
    BadMeta { key: String, why: String },
    /// A role appears twice.
    #[error("sample {key}: field {field:?} appears twice")]
    Duplicate { key: String, field: String },
    /// A role the subset needs is absent.
    #[error("sample {key}: {subset} sample lacks {what}")]
    Missing {
        key: String,
        subset: Subset,
        what: &'static str,
    },
}

/// Checks a WebDataset key: non-empty, no dots, no absolute path, no `..` segment.
pub fn check_key(key: &str) -> Result<(), SampleError> {
    let bad = |why| {
        Err(SampleError::BadKey {
            key: key.to_string(),
            why,
        })
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > 200 {
        return bad("longer than 200 bytes");
    }
    if key.contains('.') {
        return bad("contains a dot");
    }
    if key.starts_with('/') || key.split('/').any(|s| s.is_empty() || s == "..") {
        return bad("not a relative path inside the shard");
    }
    if key.chars().any(|c| c.is_control() || c == '\\') {
        return bad("contains a control character or backslash");
    }
    Ok(())
}

impl Sample {
    /// The sample's subset (single-turn when the metadata does not say).
    pub fn subset(&self) -> Subset {
        self.meta.subset.unwrap_or(Subset::Sft)
    }

    /// The first image with a role.
    pub fn image(&self, role: Role) -> Option<&SampleImage> {
        self.images.iter().find(|i| i.role == role)
    }

    /// The images with a role matching a predicate, in order.
    pub fn images_where(&self, f: impl Fn(Role) -> bool) -> impl Iterator<Item = &SampleImage> {
        self.images.iter().filter(move |i| f(i.role))
    }

    /// The rejected images of a preference sample, in order.
    pub fn rejected(&self) -> Vec<&SampleImage> {
        let mut v: Vec<_> = self
            .images_where(|r| matches!(r, Role::Rejected(_)))
            .collect();
        v.sort_by_key(|i| i.role);
        v
    }

    /// The turn images of a multi-turn sample, in turn order.
    pub fn turns(&self) -> Vec<&SampleImage> {
        let mut v: Vec<_> = self.images_where(|r| matches!(r, Role::Turn(_))).collect();
        v.sort_by_key(|i| i.role);
        v
    }

    /// The sample as WebDataset members `(field, bytes)`: `json` first, then the images.
    pub fn to_members(&self) -> Vec<(String, Bytes)> {
        let mut out = Vec::with_capacity(self.images.len() + 1);
        let json = serde_json::to_vec(&self.meta).expect("sample metadata serialises");
        out.push(("json".to_string(), Bytes::from(json)));
        for img in &self.images {
            out.push((
                format!("{}.{}", img.role.field(), img.format.ext()),
                img.bytes.clone(),
            ));
        }
        out
    }

    /// Applies the editfeed sample schema to a sample read from a shard.
    pub fn from_raw(raw: RawSample) -> Result<Sample, SampleError> {
        Sample::from_members(&raw.key, raw.members)
    }

    /// Rebuilds a sample from its members and checks it against the schema.
    pub fn from_members(key: &str, members: Vec<(String, Bytes)>) -> Result<Sample, SampleError> {
        check_key(key)?;
        let mut meta = None;
        let mut images: Vec<SampleImage> = Vec::with_capacity(members.len());
        for (field, bytes) in members {
            if field == "json" {
                if meta.is_some() {
                    return Err(SampleError::Duplicate {
                        key: key.into(),
                        field,
                    });
                }
                meta = Some(serde_json::from_slice::<SampleMeta>(&bytes).map_err(|e| {
                    SampleError::BadMeta {
                        key: key.into(),
                        why: e.to_string(),
                    }
                })?);
                continue;
            }
            let parsed = field.split_once('.').and_then(|(name, ext)| {
                Some((Role::from_field(name)?, ImageFormat::from_ext(ext)?))
            });
            let Some((role, format)) = parsed else {
                return Err(SampleError::UnknownField {
                    key: key.into(),
                    field,
                });
            };
            if images.iter().any(|i| i.role == role) {
                return Err(SampleError::Duplicate {
                    key: key.into(),
                    field,
                });
            }
            images.push(SampleImage {
                role,
                format,
                bytes,
            });
        }
        let meta = meta.ok_or_else(|| SampleError::BadMeta {
            key: key.into(),
            why: "no json member".into(),
        })?;
        let sample = Sample {
            key: key.into(),
            meta,
            images,
        };
        sample.check()?;
        Ok(sample)
    }

    /// Checks that the images present fit the subset.
    pub fn check(&self) -> Result<(), SampleError> {
        check_key(&self.key)?;
        let subset = self.subset();
        let missing = |what| {
            Err(SampleError::Missing {
                key: self.key.clone(),
                subset,
                what,
            })
        };
        if self.image(Role::Source).is_none() {
            return missing("a source image (src)");
        }
        match subset {
            Subset::Sft => {
                if self.image(Role::Edit).is_none() {
                    return missing("an edited image (edit)");
                }
            }
            Subset::Preference => {
                if self.image(Role::Chosen).is_none() {
                    return missing("a chosen image (chosen)");
                }
                if self.rejected().is_empty() {
                    return missing("a rejected image (rejected0)");
                }
            }
            Subset::MultiTurn => {
                let turns = self.turns();
                if turns.is_empty() {
                    return missing("turn images (turn1...)");
                }
                for (i, t) in turns.iter().enumerate() {
                    if t.role != Role::Turn(i as u8 + 1) {
                        return missing("consecutive turns from turn1");
                    }
                }
                if !self.meta.turns.is_empty() && self.meta.turns.len() != turns.len() {
                    return missing("one instruction per turn image");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(role: Role) -> SampleImage {
        SampleImage {
            role,
            format: ImageFormat::Png,
            bytes: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn members_round_trip_for_each_subset() {
        let cases = [
            (Subset::Sft, vec![img(Role::Source), img(Role::Edit)]),
            (
                Subset::Preference,
                vec![
                    img(Role::Source),
                    img(Role::Chosen),
                    img(Role::Rejected(0)),
                    img(Role::Rejected(1)),
                ],
            ),
            (
                Subset::MultiTurn,
                vec![img(Role::Source), img(Role::Turn(1)), img(Role::Turn(2))],
            ),
        ];
        for (subset, images) in cases {
            let meta = SampleMeta {
                subset: Some(subset),
                text: "make it snow".into(),
                turns: if subset == Subset::MultiTurn {
                    vec!["a".into(), "b".into()]
                } else {
                    vec![]
                },
                ..Default::default()
            };
            let s = Sample {
                key: "00000001".into(),
                meta,
                images,
            };
            let back = Sample::from_members("00000001", s.to_members()).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn bad_members_are_named() {
        let json = Bytes::from_static(br#"{"subset":"sft"}"#);
        let e = Sample::from_members(
            "k",
            vec![
                ("json".into(), json.clone()),
                ("src.gif".into(), json.clone()),
            ],
        );
        assert!(matches!(e, Err(SampleError::UnknownField { field, .. }) if field == "src.gif"));
        let e = Sample::from_members(
            "k",
            vec![
                ("json".into(), json.clone()),
                ("src.jpg".into(), json.clone()),
            ],
        );
        assert!(matches!(e, Err(SampleError::Missing { what, .. }) if what.contains("edit")));
        let e = Sample::from_members("../etc", vec![]);
        assert!(matches!(e, Err(SampleError::BadKey { .. })));
        let e = Sample::from_members("k", vec![("json".into(), Bytes::from_static(b"{"))]);
        assert!(matches!(e, Err(SampleError::BadMeta { .. })));
    }

    #[test]
    fn roles_parse_strictly() {
        assert_eq!(Role::from_field("turn3"), Some(Role::Turn(3)));
        assert_eq!(Role::from_field("turn0"), None);
        assert_eq!(Role::from_field("rejected12"), Some(Role::Rejected(12)));
        assert_eq!(Role::from_field("rejected"), None);
        assert_eq!(Role::from_field("turn+1"), None);
        assert_eq!(
            ImageFormat::sniff(b"\x89PNG\r\n\x1a\n...."),
            Some(ImageFormat::Png)
        );
    }
}
