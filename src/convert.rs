//! Conversions between the wire messages (`proto::v1`) and the library's own types, in
//! both directions, so the server and the command-line client agree on one mapping.

use crate::plan::{Phase, ShuffleSpec, StreamSpec};
use crate::proto::v1 as pb;

/// A wire stream spec as the planner's spec.
pub fn spec_from_wire(w: &pb::StreamSpec) -> StreamSpec {
    StreamSpec {
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
    }
}

/// The planner's spec as a wire message.
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
             [category_weights]\ntext_symbol = 2.0\n[shuffle]\nblock = 16\n",
        )
        .unwrap();
        assert_eq!(spec_from_wire(&spec_to_wire(&spec)), spec);
    }
}
