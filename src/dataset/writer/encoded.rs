//! A sample made ready for the writer on any thread: its frame compressed and the
//! attributes the manifest records per sample (category, edit type, turns, instruction
//! length, source URL for split rules) read from its members. The writer then only
//! appends, in canonical order, so a pack's bytes do not depend on which thread encoded
//! what.

use crate::dataset::edit_types::EDIT_TYPES;
use crate::dataset::sample::Role;
use crate::dataset::{Category, Subset};
use crate::shard::{Frame, FrameCompressor};

use super::options::{WriteError, WriteOptions};

/// What the writer records per sample from its `json` member (read leniently: members
/// written by other tools may carry other fields, or none).
#[derive(Debug, Default, serde::Deserialize)]
struct JsonAttrs {
    #[serde(default)]
    edit_type: Option<String>,
    #[serde(default)]
    text: String,
    #[serde(default)]
    turns: Vec<String>,
    #[serde(default)]
    source_url: Option<String>,
}

/// The per-sample facts the manifest records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleAttrs {
    /// The sample's category, if known.
    pub category: Option<Category>,
    /// Index of its edit type in [`EDIT_TYPES`], if its `json` names a known one.
    pub edit_type: Option<usize>,
    /// Turn images it holds (multi-turn chains).
    pub turns: u32,
    /// Words in its longest instruction.
    pub instruction_words: u32,
    /// Its source photo's URL, which split rules group by.
    pub source_url: Option<String>,
}

impl SampleAttrs {
    /// Reads the attributes from a sample's members.
    pub fn from_members<'a>(
        category: Option<Category>,
        members: impl IntoIterator<Item = (&'a str, &'a [u8])> + Clone,
    ) -> SampleAttrs {
        let json: JsonAttrs = members
            .clone()
            .into_iter()
            .find(|(f, _)| *f == "json")
            .and_then(|(_, b)| serde_json::from_slice(b).ok())
            .unwrap_or_default();
        let turns = members
            .into_iter()
            .filter(|(f, _)| {
                f.split_once('.')
                    .and_then(|(name, _)| Role::from_field(name))
                    .is_some_and(|r| matches!(r, Role::Turn(_)))
            })
            .count() as u32;
        let instruction_words = std::iter::once(&json.text)
            .chain(&json.turns)
            .map(|t| t.split_whitespace().count() as u32)
            .max()
            .unwrap_or(0);
        SampleAttrs {
            category,
            edit_type: json
                .edit_type
                .as_deref()
                .and_then(|t| EDIT_TYPES.iter().position(|(n, _, _)| *n == t)),
            turns,
            instruction_words,
            source_url: json.source_url,
        }
    }
}

/// A sample ready to append: its frame and its attributes.
#[derive(Debug, Clone)]
pub struct EncodedSample {
    /// The subset it belongs to.
    pub subset: Subset,
    /// The compressed frame (its key inside).
    pub frame: Frame,
    /// What the manifest records of it.
    pub attrs: SampleAttrs,
}

impl EncodedSample {
    /// The sample's key.
    pub fn key(&self) -> &str {
        &self.frame.key
    }
}

/// Encodes samples for one writer's options; make one per thread.
pub struct SampleEncoder {
    compressor: FrameCompressor,
}

impl SampleEncoder {
    /// An encoder for `opts` (the level and literal setting of the writer's shards).
    pub fn new(opts: &WriteOptions) -> Result<SampleEncoder, WriteError> {
        let compressor = FrameCompressor::new(opts.level, opts.compress_literals)
            .map_err(|e| WriteError::Options(format!("zstd level {}: {e}", opts.level)))?;
        Ok(SampleEncoder { compressor })
    }

    /// Compresses a sample given as raw members and reads its attributes.
    pub fn encode<'a>(
        &mut self,
        subset: Subset,
        category: Option<Category>,
        key: &str,
        members: impl IntoIterator<Item = (&'a str, &'a [u8])> + Clone,
    ) -> Result<EncodedSample, WriteError> {
        let attrs = SampleAttrs::from_members(category, members.clone());
        let frame = self
            .compressor
            .sample(key, members)
            .map_err(|source| WriteError::Encode {
                subset,
                key: key.to_string(),
                source,
            })?;
        Ok(EncodedSample {
            subset,
            frame,
            attrs,
        })
    }
}
