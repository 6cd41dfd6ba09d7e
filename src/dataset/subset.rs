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

    /// Parses a subset name; also accepts the common aliases `single_turn`, `dpo` and
    /// `multi-turn`.
    pub fn from_name(name: &str) -> Option<Subset> {
        match name {
            "sft" | "single_turn" | "single-turn" => Some(Subset::Sft),
            "preference" | "dpo" => Some(Subset::Preference),
            "multi_turn" | "multi-turn" => Some(Subset::MultiTurn),
            _ => None,
        }
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
}
