//! The deterministic stream plan: which samples go to which global step and rank.
//!
//! Where it sits: store -> shard reader -> **plan** -> prefetch -> decode/augment ->
//! collate -> gRPC. The plan does no I/O. It sees each subset only as its sample count
//! and, optionally, each sample's edit category, both in canonical order; it names
//! samples by canonical ordinal ([`SampleRef`]) and the prefetch stage maps ordinals to
//! shard members. So the shard layout, the store, the worker pool and thread timing
//! cannot change what it says: the samples of step `s` at rank `r` of `W` are a pure
//! function of the dataset content, the [`StreamSpec`], `W` and `r`.
//!
//! How a step is planned:
//! 1. The curriculum (`schedule.rs`) gives global step `s` to exactly one subset, and
//!    says in closed form how many steps each subset had before `s`.
//! 2. Each subset is an endless sequence of equally long epochs (`epoch.rs`), each a
//!    fresh seeded permutation of its ordinals, with optional per-category resampling.
//!    Step `s` takes the next `global_batch` entries of its subset's stream, crossing
//!    into the next epoch where needed.
//! 3. Rank `r` of `W` gets the `r`-th contiguous slice of `global_batch / W` of them,
//!    so the world size never changes the global order (elastic training).
//! 4. A [`Cursor`] is a step plus fingerprints; resuming is O(1).
//!
//! The plan builds its own input from the dataset stage: a [`PlanDataset`] read from an
//! open dataset's manifest (`PlanDataset::from(&dataset)`, `input.rs`), narrowed to a
//! stream's selection and multi-turn view ([`narrow`], [`PlanInput`]); the dataset
//! stage knows nothing of the plan.
//!
//! # Curriculum file
//!
//! A whole [`StreamSpec`] in TOML ([`StreamSpec::from_toml_str`]), or the same without
//! `seed` and `global_batch` when those come from the command line
//! ([`CurriculumFile`]). Unknown keys are errors. Supervised fine-tuning first, then
//! preference pairs ramped in, then multi-turn chains:
//!
//! ```toml
//! seed = 17
//! global_batch = 256
//!
//! # Steps 0..20000: single-turn edits only.
//! [[curriculum]]
//! until_step = 20000
//! weights = { sft = 1.0 }
//!
//! # Steps 20000..60000: move to 30% sft / 70% preference over the first 5000 steps.
//! [[curriculum]]
//! until_step = 60000
//! ramp_steps = 5000
//! weights = { sft = 0.3, preference = 0.7 }
//!
//! # From step 60000 on, endless: bring in multi-turn chains over 2000 steps.
//! [[curriculum]]
//! ramp_steps = 2000
//! weights = { sft = 0.2, preference = 0.3, multi_turn = 0.5 }
//!
//! # Optional: rebalance edit categories inside sft and preference (default 1 each).
//! [category_weights]
//! text_symbol = 3.0
//! human_centric = 2.0
//! pixel_photometric = 0.5
//!
//! # Optional: block shuffle for high-latency stores (default: full permutation).
//! [shuffle]
//! block = 64
//! window = 16
//! ```
//!
//! Without `[[curriculum]]` the stream is one endless phase over every subset the
//! dataset holds, weighted by the subsets' sample counts.
//!
//! # Cursor token
//!
//! `ef1:<step>:<spec fingerprint>:<dataset fingerprint>`, e.g.
//! `ef1:120000:3f9a0c2b7d1e4a56:9b2e61c04d7f8a13`; see [`cursor`] for the fields.
//!
//! # Example
//!
//! ```
//! use editfeed::dataset::Subset;
//! use editfeed::plan::{Plan, PlanDataset, PlanSubset, StreamSpec};
//!
//! let dataset = PlanDataset {
//!     version: "v1".into(),
//!     subsets: vec![PlanSubset { subset: Subset::MultiTurn, len: 100, categories: None, selected: None }],
//! };
//! let plan = Plan::new(&dataset, &StreamSpec::new(7, 8)).unwrap();
//! let rank1 = plan.rank_batch(3, 1, 4).unwrap();
//! assert_eq!(rank1.samples, plan.global_batch(3).unwrap().samples[2..4]);
//! ```

pub mod cursor;
mod epoch;
mod error;
pub mod eval;
mod input;
mod key_lists;
pub mod narrow;
mod render;
mod schedule;
pub mod select;
mod selection_filter;
pub mod spec;
mod step;
mod steps_view;
mod stream_plan;
pub mod view;

pub use cursor::{Cursor, CursorError};
pub use epoch::{EPOCH_CACHE_SIZE, MAX_EPOCH_SLOTS};
pub use error::PlanError;
pub use eval::{EvalOrder, Mode};
pub use input::{PlanDataset, PlanSubset, Selected};
pub use narrow::{PlanInput, SelectError};
pub use render::render_plan;
pub use schedule::MAX_RAMP_SEGMENTS;
pub use select::{Selection, SelectionError};
pub use spec::{CurriculumFile, Phase, ShuffleSpec, SpecError, StreamSpec};
pub use step::{Consumed, SampleRef, StepPlan};
pub use stream_plan::Plan;
pub use view::MultiTurnView;
