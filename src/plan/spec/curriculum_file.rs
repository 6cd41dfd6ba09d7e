//! The TOML forms of a stream spec: a whole [`StreamSpec`]
//! ([`StreamSpec::from_toml_str`]), or a [`CurriculumFile`] without the seed and the
//! global batch size, which come from the command line. Unknown or misspelt keys are
//! rejected by name, with their line and column.
//!
//! Part of the plan stage: store -> shard reader -> **plan** (spec + dataset -> schedule
//! and epochs) -> prefetch -> decode/augment -> collate -> gRPC.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::SpecError;
use super::stream_spec::{Phase, ShuffleSpec, StreamSpec};
use crate::plan::eval::{EvalOrder, Mode};
use crate::plan::select::Selection;
use crate::plan::view::MultiTurnView;

/// The part of a stream spec that lives in a curriculum file, when the seed and the
/// global batch size come from the command line. Same keys and meaning as in
/// [`StreamSpec`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurriculumFile {
    /// See [`StreamSpec::curriculum`].
    #[serde(default)]
    pub curriculum: Vec<Phase>,
    /// See [`StreamSpec::category_weights`].
    #[serde(default)]
    pub category_weights: BTreeMap<String, f64>,
    /// See [`StreamSpec::shuffle`].
    #[serde(default)]
    pub shuffle: ShuffleSpec,
    /// See [`StreamSpec::select`].
    #[serde(default)]
    pub select: Selection,
    /// See [`StreamSpec::mode`].
    #[serde(default)]
    pub mode: Mode,
    /// See [`StreamSpec::order`].
    #[serde(default)]
    pub order: EvalOrder,
    /// See [`StreamSpec::multi_turn`].
    #[serde(default)]
    pub multi_turn: MultiTurnView,
}

impl CurriculumFile {
    /// Parses a curriculum file; unknown or misspelt keys are rejected by name.
    pub fn from_toml_str(text: &str) -> Result<CurriculumFile, SpecError> {
        toml::from_str(text).map_err(|e| toml_error(text, e))
    }

    /// Reads and parses the curriculum file at `path`, with the key files its
    /// `[select]` names read (relative to the file's folder). Errors name the file.
    pub fn read(path: &std::path::Path) -> Result<CurriculumFile, SpecError> {
        let named = |message: String| SpecError::Toml {
            message: format!("{}: {message}", path.display()),
        };
        let text = std::fs::read_to_string(path).map_err(|e| named(e.to_string()))?;
        let mut file = CurriculumFile::from_toml_str(&text).map_err(|e| match e {
            SpecError::Toml { message } => named(message),
            other => other,
        })?;
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        file.select = file.select.with_key_files(base)?;
        Ok(file)
    }

    /// The full spec, with the seed and global batch size given elsewhere, validated.
    pub fn into_spec(self, seed: u64, global_batch: u32) -> Result<StreamSpec, SpecError> {
        let spec = StreamSpec {
            seed,
            global_batch,
            curriculum: self.curriculum,
            category_weights: self.category_weights,
            shuffle: self.shuffle,
            select: self.select,
            mode: self.mode,
            order: self.order,
            multi_turn: self.multi_turn,
        };
        spec.validate()?;
        Ok(spec)
    }
}

fn toml_error(text: &str, e: toml::de::Error) -> SpecError {
    // The parser's own Display draws a multi-line source excerpt; one line with the
    // position reads better in logs and CLI errors.
    let message = e.message().trim_end();
    let message = match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_string(),
    };
    SpecError::Toml { message }
}

impl StreamSpec {
    /// Parses and validates a whole spec from TOML; unknown or misspelt keys are
    /// rejected by name.
    pub fn from_toml_str(text: &str) -> Result<StreamSpec, SpecError> {
        let spec: StreamSpec = toml::from_str(text).map_err(|e| toml_error(text, e))?;
        spec.validate()?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::spec::fixtures::parse;

    #[test]
    fn misspelt_keys_are_rejected_by_name() {
        let err = parse("seed = 1\nglobal_batch = 8\nsede = 2\n").unwrap_err();
        assert!(err.to_string().contains("sede"), "{err}");
        let err = parse("seed = 1\nglobal_batch = 8\n[[curriculum]]\nwieghts = { sft = 1.0 }\n")
            .unwrap_err();
        assert!(err.to_string().contains("wieghts"), "{err}");
        let err = CurriculumFile::from_toml_str("[shuffle]\nblok = 3\n").unwrap_err();
        assert!(err.to_string().contains("blok"), "{err}");
    }

    #[test]
    fn curriculum_file_takes_seed_and_batch_from_elsewhere() {
        let file = CurriculumFile::from_toml_str(
            "[[curriculum]]\nuntil_step = 5\nweights = { sft = 1 }\n[[curriculum]]\nweights = { dpo = 1 }\n",
        )
        .unwrap();
        let spec = file.clone().into_spec(3, 16).unwrap();
        assert_eq!((spec.seed, spec.global_batch), (3, 16));
        assert_eq!(spec.curriculum.len(), 2);
        assert_eq!(file.into_spec(3, 0), Err(SpecError::ZeroGlobalBatch));
    }
}
