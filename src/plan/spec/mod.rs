//! The stream spec: seed, global batch size, curriculum, per-category weights and shuffle
//! mode, with its TOML form, its validation and its fingerprint.
//!
//! The spec is the user's half of the plan's input (the dataset is the other half), so
//! everything here is user documentation. It sits at the start of the plan stage: store
//! -> shard reader -> **plan** (spec + dataset -> schedule and epochs) -> prefetch ->
//! decode/augment -> collate -> gRPC. Validation that needs only the spec happens in
//! [`StreamSpec::validate`]; checks against the dataset (does a named subset exist?)
//! happen when a [`Plan`](super::Plan) is built.
//!
//! Files: the types ([`StreamSpec`], [`Phase`], [`ShuffleSpec`]), their TOML forms
//! ([`CurriculumFile`]), the checks that need no dataset, the curriculum resolved
//! against the dataset, the fingerprint, and the errors ([`SpecError`]).

mod curriculum_file;
mod error;
mod fingerprint;
mod resolve;
mod stream_spec;
mod validate;

pub use curriculum_file::CurriculumFile;
pub use error::SpecError;
pub use fingerprint::FINGERPRINT_HEX_LEN;
pub(crate) use resolve::{nothing_left, ResolvedPhase};
pub use stream_spec::{Phase, ShuffleSpec, StreamSpec, DEFAULT_SHUFFLE_WINDOW_BLOCKS};
pub use validate::MAX_PHASES;

/// What the tests of several spec files share: an example spec and its parser.
#[cfg(test)]
mod fixtures {
    use super::{SpecError, StreamSpec};

    pub(super) const EXAMPLE: &str = r#"
        seed = 17
        global_batch = 256

        [[curriculum]]
        until_step = 20000
        weights = { sft = 1.0 }

        [[curriculum]]
        until_step = 40000
        ramp_steps = 2000
        weights = { sft = 0.3, dpo = 0.7 }

        [[curriculum]]
        ramp_steps = 1000
        weights = { sft = 0.2, preference = 0.3, multi_turn = 0.5 }

        [category_weights]
        text_symbol = 2.0
        pixel_photometric = 0.5

        [shuffle]
        block = 256
    "#;

    pub(super) fn parse(text: &str) -> Result<StreamSpec, SpecError> {
        StreamSpec::from_toml_str(text)
    }
}
