//! Direction words in edit instructions, and what a horizontal flip does to them.
//!
//! A mirrored image turns "put the lamp on the left" into an instruction that is wrong.
//! The augment stage (DECODE + AUGMENT in store -> shard reader -> plan -> prefetch ->
//! DECODE + AUGMENT -> collate -> gRPC, on the CPU worker pool) asks this module whether
//! a sample's texts name a direction, and under [`FlipPolicy::Swap`] rewrites them.
//!
//! What counts as a direction word: `left`, `right`, `leftmost`, `rightmost`,
//! `leftward(s)`, `rightward(s)`, `lefthand`, `righthand`, in any case. Words are
//! maximal runs of alphanumeric characters, so a hyphen or space separates words:
//! `left-hand`, `left side` and `left-most` are found through their `left` part and
//! rewritten to `right-hand`, `right side` and `right-most`, while `bright`, `lefty`,
//! `copyright`, `leftover` and `alright` are single words that are not in the list and
//! never match.
//!
//! Non-spatial senses: `left` meaning "remaining" or the past of "leave" ("the only one
//! left", "left behind") cannot be told apart from the spatial sense without parsing, so
//! it is treated as a direction. This errs on the safe side for `skip` (a sample loses
//! its flip, it never gets a wrong instruction) and rewrites a rare idiom under `swap`.
//! `right` is treated as non-directional only in four fixed idioms where it cannot mean
//! a side: `right now`, `right away`, `all right` and `right angle(s)`/`right angled`
//! (the latter is flip-invariant anyway). Everything else is a direction.
//!
//! Swapping keeps the case shape of the word (`left` -> `right`, `Left` -> `Right`,
//! `LEFT` -> `RIGHT`; any other mix becomes lowercase) and is done in one pass over the
//! text, so a `left` turned into `right` is never turned back.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// What a horizontal flip does to a sample whose texts name a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlipPolicy {
    /// Do not flip samples whose instructions name a direction; others flip as usual.
    #[default]
    Skip,
    /// Flip, and swap the direction words (left <-> right) in every instruction text.
    Swap,
    /// Flip regardless and leave the texts alone (the instructions may become wrong).
    Ignore,
}

/// The direction words and their mirror images, lowercase.
const PAIRS: [(&str, &str); 5] = [
    ("left", "right"),
    ("leftmost", "rightmost"),
    ("leftward", "rightward"),
    ("leftwards", "rightwards"),
    ("lefthand", "righthand"),
];

/// The mirror image of a lowercase direction word, or `None` if it is not one.
fn mirror_of(lower: &str) -> Option<&'static str> {
    PAIRS.iter().find_map(|&(l, r)| {
        if lower == l {
            Some(r)
        } else if lower == r {
            Some(l)
        } else {
            None
        }
    })
}

/// One word of a text: its byte span.
#[derive(Debug, Clone, Copy)]
struct Word {
    start: usize,
    end: usize,
}

fn words(text: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(Word { start: s, end: i });
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(Word {
            start: s,
            end: text.len(),
        });
    }
    out
}

fn eq_word(text: &str, w: Option<&Word>, any_of: &[&str]) -> bool {
    w.is_some_and(|w| {
        let s = &text[w.start..w.end];
        any_of.iter().any(|a| s.eq_ignore_ascii_case(a))
    })
}

/// The indices of the words of `text` that are direction words, with their lowercase
/// mirror images.
fn directions(text: &str) -> Vec<(Word, &'static str)> {
    // Quick reject: most instructions have neither substring.
    let lower = text.to_lowercase();
    if !lower.contains("left") && !lower.contains("right") {
        return Vec::new();
    }
    let ws = words(text);
    let mut out = Vec::new();
    for (i, w) in ws.iter().enumerate() {
        let word = text[w.start..w.end].to_lowercase();
        let Some(mirror) = mirror_of(&word) else {
            continue;
        };
        if word == "right" {
            let prev = i.checked_sub(1).and_then(|p| ws.get(p));
            let next = ws.get(i + 1);
            if eq_word(text, prev, &["all"])
                || eq_word(text, next, &["now", "away", "angle", "angles", "angled"])
            {
                continue;
            }
        }
        out.push((*w, mirror));
    }
    out
}

/// Whether `text` names a direction (see the module docs for the word list).
pub fn names_direction(text: &str) -> bool {
    !directions(text).is_empty()
}

/// Gives `replacement` (lowercase) the case shape of `original`.
fn match_case(original: &str, replacement: &str) -> String {
    let letters = || original.chars().filter(|c| c.is_alphabetic());
    if letters().all(char::is_uppercase) {
        replacement.to_uppercase()
    } else if original.chars().next().is_some_and(char::is_uppercase)
        && letters().skip(1).all(char::is_lowercase)
    {
        let mut out = String::with_capacity(replacement.len());
        let mut chars = replacement.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
        }
        out.extend(chars);
        out
    } else {
        replacement.to_string()
    }
}

/// `text` with every direction word replaced by its mirror image, in one pass, keeping
/// case. Borrows when there is nothing to swap.
pub fn swap_directions(text: &str) -> Cow<'_, str> {
    let found = directions(text);
    if found.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 2 * found.len());
    let mut at = 0;
    for (w, mirror) in found {
        out.push_str(&text[at..w.start]);
        out.push_str(&match_case(&text[w.start..w.end], mirror));
        at = w.end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_whole_direction_words_only() {
        for yes in [
            "Move the lamp to the left",
            "on the RIGHT side",
            "the leftmost chair",
            "shift it rightwards",
            "her left-hand glove",
            "the right-most tree",
            "left.",
            "(right)",
            "Right",
        ] {
            assert!(names_direction(yes), "{yes:?}");
        }
        for no in [
            "make it bright",
            "a lefty guitarist",
            "copyright notice",
            "brighten the leftover cake",
            "alright then",
            "do it right now",
            "right away please",
            "all right, add a hat",
            "draw a right angle",
            "",
        ] {
            assert!(!names_direction(no), "{no:?}");
        }
        // Documented choice: "left" as "remaining" still counts.
        assert!(names_direction("the only one left"));
    }

    #[test]
    fn swaps_in_one_pass_keeping_case() {
        assert_eq!(
            swap_directions("Move the lamp to the left"),
            "Move the lamp to the right"
        );
        assert_eq!(
            swap_directions("left then right then LEFT, Right"),
            "right then left then RIGHT, Left"
        );
        assert_eq!(
            swap_directions("the leftmost cup, rightward motion, left-hand side"),
            "the rightmost cup, leftward motion, right-hand side"
        );
        assert_eq!(swap_directions("Leftwards!"), "Rightwards!");
        assert_eq!(swap_directions("lEfT"), "right");
        assert_eq!(
            swap_directions("right now, on the right"),
            "right now, on the left"
        );
        assert!(matches!(swap_directions("brighter"), Cow::Borrowed(_)));
        // Involution: swapping twice gives back the text.
        let t = "Put the Left cat rightwards of the RIGHTMOST dog";
        assert_eq!(swap_directions(&swap_directions(t)), t);
    }

    #[test]
    fn handles_non_ascii_text() {
        assert_eq!(swap_directions("café à left"), "café à right");
        assert!(!names_direction("Ärightö"));
    }

    #[test]
    fn policy_names_are_snake_case() {
        let p: FlipPolicy = serde_json::from_str("\"swap\"").unwrap();
        assert_eq!(p, FlipPolicy::Swap);
        assert!(serde_json::from_str::<FlipPolicy>("\"mirror\"").is_err());
    }
}
