//! The horizontal flip: a sample's instruction texts and their direction words, the
//! flip decision under the spec's [`FlipPolicy`], and the mirroring of output pixels.
//!
//! Part of DECODE + AUGMENT (store -> shard reader -> plan -> prefetch -> DECODE +
//! AUGMENT -> collate -> gRPC); the word lists and the swap live in
//! [`crate::pipeline::direction`].

use crate::dataset::sample::SampleMeta;
use crate::pipeline::direction::{self, FlipPolicy};
use crate::rng::Rng;

use super::spec::AugmentSpec;

/// The instruction texts of a sample, which a flip may rewrite.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Texts {
    /// The (long) instruction.
    pub text: String,
    /// The short rewrite, where published.
    pub summarized_text: Option<String>,
    /// Multi-turn: one instruction per turn.
    pub turns: Vec<String>,
}

impl Texts {
    /// The texts of a sample's metadata.
    pub fn from_meta(meta: &SampleMeta) -> Texts {
        Texts {
            text: meta.text.clone(),
            summarized_text: meta.summarized_text.clone(),
            turns: meta.turns.clone(),
        }
    }

    /// Whether any of the texts names a direction.
    pub fn names_direction(&self) -> bool {
        direction::names_direction(&self.text)
            || self
                .summarized_text
                .as_deref()
                .is_some_and(direction::names_direction)
            || self.turns.iter().any(|t| direction::names_direction(t))
    }

    /// The texts with left and right swapped everywhere.
    pub fn swapped(&self) -> Texts {
        let swap = |t: &str| direction::swap_directions(t).into_owned();
        Texts {
            text: swap(&self.text),
            summarized_text: self.summarized_text.as_deref().map(swap),
            turns: self.turns.iter().map(|t| swap(t)).collect(),
        }
    }
}

/// The flip decision and the texts to train on (see the [augment module
/// docs](super)).
pub fn flip_decision(spec: &AugmentSpec, texts: &Texts, rng: &mut Rng) -> (bool, Option<Texts>) {
    let coin = rng.next_f64() < spec.hflip;
    if !coin {
        return (false, None);
    }
    if !texts.names_direction() {
        return (true, None);
    }
    match spec.flip_policy {
        FlipPolicy::Skip => (false, None),
        FlipPolicy::Swap => (true, Some(texts.swapped())),
        FlipPolicy::Ignore => (true, None),
    }
}

/// Mirrors packed RGB8 rows left to right in place.
pub(super) fn mirror_rows(pixels: &mut [u8], width: usize) {
    for row in pixels.chunks_exact_mut(width * 3) {
        let (mut i, mut j) = (0, width.saturating_sub(1));
        while i < j {
            for c in 0..3 {
                row.swap(i * 3 + c, j * 3 + c);
            }
            i += 1;
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_is_exact() {
        let mut px = vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
        mirror_rows(&mut px, 5);
        assert_eq!(px, [13, 14, 15, 10, 11, 12, 7, 8, 9, 4, 5, 6, 1, 2, 3]);
    }
}
