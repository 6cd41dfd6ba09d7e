//! The three kinds of sample a dataset holds. A subset is also the unit of curriculum
//! mixing: a global batch always holds samples of one subset, so one shape.

use serde::{Deserialize, Serialize};

/// A subset of an image-editing dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subset {
    /// Single-turn edits for supervised fine-tuning: source, instruction, edited image.
    Sft,
    /// Preference pairs for DPO: source, instruction, chosen edit, rejected edits.
    Preference,
    /// Multi-turn chains: source, then 2 to 5 instructions, each with its image.
    MultiTurn,
}

impl Subset {
    /// Every subset in canonical order; `id()` indexes this slice.
    pub const ALL: [Subset; 3] = [Subset::Sft, Subset::Preference, Subset::MultiTurn];

    /// The name used in manifests, shard file names, curriculum files and the wire.
    pub fn name(self) -> &'static str {
        match self {
            Subset::Sft => "sft",
            Subset::Preference => "preference",
            Subset::MultiTurn => "multi_turn",
        }
    }

    /// A dense id (0..3), stable across releases; part of RNG keys.
    pub fn id(self) -> u8 {
        match self {
            Subset::Sft => 0,
            Subset::Preference => 1,
            Subset::MultiTurn => 2,
        }
    }

    /// The other names a subset goes by, accepted wherever a subset is named
    /// (curriculum weights, reshard subsets, `pack --subset`). Documented in README
    /// ("Curriculum files"), `loader.proto` and the Python client's `editfeed.spec`.
    pub const ALIASES: [(&'static str, Subset); 4] = [
        ("single_turn", Subset::Sft),
        ("single-turn", Subset::Sft),
        ("dpo", Subset::Preference),
        ("multi-turn", Subset::MultiTurn),
    ];

    /// Parses a subset name or one of its [`Subset::ALIASES`].
    pub fn from_name(name: &str) -> Option<Subset> {
        Subset::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .or_else(|| {
                Subset::ALIASES
                    .iter()
                    .find(|(alias, _)| *alias == name)
                    .map(|(_, s)| *s)
            })
    }
}

impl std::fmt::Display for Subset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_ids_are_dense() {
        for (i, s) in Subset::ALL.iter().enumerate() {
            assert_eq!(Subset::from_name(s.name()), Some(*s));
            assert_eq!(s.id() as usize, i);
        }
        assert_eq!(Subset::from_name("dpo"), Some(Subset::Preference));
        assert_eq!(Subset::from_name("video"), None);
    }

    #[test]
    fn every_alias_is_documented_where_subsets_are_named() {
        let docs = [
            ("README.md", include_str!("../../README.md")),
            (
                "loader.proto",
                include_str!("../../proto/editfeed/v1/loader.proto"),
            ),
            (
                "editfeed/spec.py",
                include_str!("../../clients/python/editfeed/spec.py"),
            ),
            (
                "clients/python/README.md",
                include_str!("../../clients/python/README.md"),
            ),
        ];
        for (alias, subset) in Subset::ALIASES {
            assert_eq!(Subset::from_name(alias), Some(subset));
            for (file, text) in docs {
                let named = format!("`{alias}` for `{}`", subset.name());
                let quoted = format!("\"{alias}\" for \"{}\"", subset.name());
                assert!(
                    text.contains(&named) || text.contains(&quoted),
                    "{file} does not document the alias {alias:?}"
                );
            }
        }
    }
}
