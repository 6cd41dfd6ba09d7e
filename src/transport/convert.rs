//! Conversions between the wire messages (`proto::v1`) and the library's own types, in
//! both directions, so the server and the command-line client agree on one mapping.

use crate::plan::{
    EvalOrder, Mode, MultiTurnView, Phase, Selection, ShuffleSpec, SpecError, StreamSpec,
};
use crate::transport::proto::v1 as pb;

/// The library value of a wire enum field, or the error naming the field.
fn known<T>(
    field: &'static str,
    value: i32,
    map: impl FnOnce(i32) -> Option<T>,
) -> Result<T, SpecError> {
    map(value).ok_or(SpecError::UnknownEnum { field, value })
}

/// A wire stream spec as the planner's spec; an enum value this build does not know is
/// refused by field.
pub fn spec_from_wire(w: &pb::StreamSpec) -> Result<StreamSpec, SpecError> {
    let mode = known("spec.mode", w.mode, |v| {
        match pb::Mode::try_from(v).ok()? {
            pb::Mode::Unspecified | pb::Mode::Train => Some(Mode::Train),
            pb::Mode::Eval => Some(Mode::Eval),
        }
    })?;
    let order = known("spec.order", w.order, |v| {
        match pb::EvalOrder::try_from(v).ok()? {
            pb::EvalOrder::Unspecified | pb::EvalOrder::Canonical => Some(EvalOrder::Canonical),
            pb::EvalOrder::Seeded => Some(EvalOrder::Seeded),
        }
    })?;
    let multi_turn = known(
        "spec.multi_turn",
        w.multi_turn,
        |v| match pb::MultiTurnView::try_from(v).ok()? {
            pb::MultiTurnView::Unspecified | pb::MultiTurnView::Chains => {
                Some(MultiTurnView::Chains)
            }
            pb::MultiTurnView::Steps => Some(MultiTurnView::Steps),
        },
    )?;
    Ok(StreamSpec {
        seed: w.seed,
        global_batch: w.global_batch,
        curriculum: w
            .curriculum
            .iter()
            .map(|p| Phase {
                until_step: p.until_step,
                weights: p.weights.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                ramp_steps: p.ramp_steps,
            })
            .collect(),
        category_weights: w
            .category_weights
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        shuffle: ShuffleSpec {
            block: (w.shuffle_block > 0).then_some(w.shuffle_block),
            window: (w.shuffle_window > 0).then_some(w.shuffle_window),
        },
        select: w
            .select
            .as_ref()
            .map(selection_from_wire)
            .unwrap_or_default(),
        mode,
        order,
        multi_turn,
    })
}

fn selection_from_wire(w: &pb::Selection) -> Selection {
    let bound = |v: u32| (v > 0).then_some(v);
    Selection {
        subsets: w.subsets.clone(),
        split: (!w.split.is_empty()).then(|| w.split.clone()),
        edit_types: w.edit_types.clone(),
        exclude_edit_types: w.exclude_edit_types.clone(),
        categories: w.categories.clone(),
        exclude_categories: w.exclude_categories.clone(),
        min_turns: bound(w.min_turns),
        max_turns: bound(w.max_turns),
        min_instruction_words: bound(w.min_instruction_words),
        max_instruction_words: bound(w.max_instruction_words),
        keys: w.keys.clone(),
        exclude_keys: w.exclude_keys.clone(),
        keys_file: None,
        exclude_keys_file: None,
    }
}

fn selection_to_wire(s: &Selection) -> pb::Selection {
    pb::Selection {
        subsets: s.subsets.clone(),
        split: s.split.clone().unwrap_or_default(),
        edit_types: s.edit_types.clone(),
        exclude_edit_types: s.exclude_edit_types.clone(),
        categories: s.categories.clone(),
        exclude_categories: s.exclude_categories.clone(),
        min_turns: s.min_turns.unwrap_or(0),
        max_turns: s.max_turns.unwrap_or(0),
        min_instruction_words: s.min_instruction_words.unwrap_or(0),
        max_instruction_words: s.max_instruction_words.unwrap_or(0),
        keys: s.keys.clone(),
        exclude_keys: s.exclude_keys.clone(),
    }
}

/// The planner's spec as a wire message. Key files must have been read into the
/// selection's key lists first ([`Selection::with_key_files`]): the wire carries keys.
pub fn spec_to_wire(s: &StreamSpec) -> pb::StreamSpec {
    pb::StreamSpec {
        seed: s.seed,
        global_batch: s.global_batch,
        curriculum: s
            .curriculum
            .iter()
            .map(|p| pb::Phase {
                until_step: p.until_step,
                weights: p.weights.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                ramp_steps: p.ramp_steps,
            })
            .collect(),
        category_weights: s
            .category_weights
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        shuffle_block: s.shuffle.block.unwrap_or(0),
        shuffle_window: s.shuffle.window.unwrap_or(0),
        select: (!s.select.is_all()).then(|| selection_to_wire(&s.select)),
        mode: match s.mode {
            Mode::Train => pb::Mode::Unspecified,
            Mode::Eval => pb::Mode::Eval,
        } as i32,
        order: match s.order {
            EvalOrder::Canonical => pb::EvalOrder::Unspecified,
            EvalOrder::Seeded => pb::EvalOrder::Seeded,
        } as i32,
        multi_turn: match s.multi_turn {
            MultiTurnView::Chains => pb::MultiTurnView::Unspecified,
            MultiTurnView::Steps => pb::MultiTurnView::Steps,
        } as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip_through_the_wire() {
        let spec = StreamSpec::from_toml_str(
            "seed = 3\nglobal_batch = 8\n[[curriculum]]\nuntil_step = 10\nweights = { sft = 1.0 }\n\
             [[curriculum]]\nramp_steps = 4\nweights = { sft = 0.5, preference = 0.5 }\n\
             [category_weights]\ntext_symbol = 2.0\n[shuffle]\nblock = 16\n\
             [select]\nsplit = \"test\"\nexclude_categories = [\"stylistic\"]\nmin_turns = 2\n",
        )
        .unwrap();
        assert_eq!(spec_from_wire(&spec_to_wire(&spec)).unwrap(), spec);
        let eval = StreamSpec::from_toml_str(
            "seed = 3\nglobal_batch = 8\nmode = \"eval\"\norder = \"seeded\"\nmulti_turn = \"steps\"\n\
             [select]\nsubsets = [\"sft\"]\n",
        )
        .unwrap();
        assert_eq!(spec_from_wire(&spec_to_wire(&eval)).unwrap(), eval);
        let mut wire = spec_to_wire(&eval);
        wire.mode = 9;
        let err = spec_from_wire(&wire).unwrap_err().to_string();
        assert_eq!(err, "spec.mode: 9 is not a known value");
    }
}
