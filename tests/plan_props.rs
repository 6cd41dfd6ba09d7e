//! Property tests of the stream plan over random datasets and specs: elasticity,
//! resume without replay, epoch coverage, category resampling, layout independence,
//! curriculum mixing and ramps, seeds and cursors.
//!
//! Tolerances used (each asserted below):
//! - mixing: in every 100-step window of a constant phase, each subset's step count is
//!   within 2 steps of `100 * p` (the hierarchical Beatty split guarantees < 2);
//! - ramps: in each 100-step stage-aligned window the count is within 2 steps of the
//!   linear ramp's value at the window's middle;
//! - resampling: every complete epoch holds exactly `round(n_c * w_c)` samples of
//!   category `c`; over `E` complete epochs each sample appears `copies * E` plus the
//!   floor or ceiling of `E * extra / n_c` times; over any prefix of the stream a
//!   category's share is within one epoch's worth of samples of its target share.

use std::collections::BTreeMap;
use std::sync::Arc;

use editfeed::dataset::{Category, Subset};
use editfeed::plan::{
    Cursor, Phase, Plan, PlanDataset, PlanError, PlanSubset, SampleRef, ShuffleSpec, StreamSpec,
};
use editfeed::rng::{Purpose, Rng};
use proptest::prelude::*;

const BATCHES: [u32; 8] = [1, 2, 4, 6, 8, 12, 16, 24];

/// A dataset with all three subsets; sft and preference carry categories (ordinal 0 of
/// each is uncategorised, so no category weighting can empty an epoch).
fn dataset(sizes: [u64; 3], category_seed: u64) -> PlanDataset {
    let mut rng = Rng::from_seed(category_seed);
    let subsets = Subset::ALL
        .iter()
        .zip(sizes)
        .map(|(&subset, len)| {
            let categories = (subset != Subset::MultiTurn).then(|| {
                (0..len)
                    .map(|o| match rng.below(10) {
                        _ if o == 0 => None,
                        0 => None,
                        k => Some(Category::ALL[(k as usize - 1) % 8]),
                    })
                    .collect::<Arc<[_]>>()
            });
            PlanSubset {
                subset,
                len,
                categories,
                selected: None,
            }
        })
        .collect();
    PlanDataset {
        version: format!("test-{category_seed:x}"),
        subsets,
    }
}

fn weights_map(w: [f64; 3]) -> BTreeMap<String, f64> {
    Subset::ALL
        .iter()
        .zip(w)
        .filter(|(_, w)| *w > 0.0)
        .map(|(s, w)| (s.name().to_string(), w))
        .collect()
}

/// Random stream knobs; turned into a spec by `spec()`.
#[derive(Debug, Clone)]
struct Knobs {
    seed: u64,
    batch: u32,
    /// (weights, phase length, ramp as a fraction of the phase length)
    phases: Vec<([f64; 3], u64, f64)>,
    endless: bool,
    category_weights: Vec<(usize, f64)>,
    block: Option<(u64, u64)>,
}

impl Knobs {
    fn spec(&self) -> StreamSpec {
        let mut spec = StreamSpec::new(self.seed, self.batch);
        let mut end = 0;
        let n = self.phases.len();
        for (i, &(w, len, ramp)) in self.phases.iter().enumerate() {
            end += len;
            spec.curriculum.push(Phase {
                until_step: (i + 1 < n || !self.endless).then_some(end),
                weights: weights_map(w),
                ramp_steps: if i == 0 {
                    0
                } else {
                    (len as f64 * ramp) as u64
                },
            });
        }
        for &(c, w) in &self.category_weights {
            spec.category_weights
                .insert(Category::ALL[c].name().to_string(), w);
        }
        if let Some((block, window)) = self.block {
            spec.shuffle = ShuffleSpec {
                block: Some(block),
                window: Some(window),
            };
        }
        spec
    }
}

fn weights() -> impl Strategy<Value = [f64; 3]> {
    prop::array::uniform3(prop_oneof![1 => Just(0.0), 3 => 0.05f64..5.0])
        .prop_filter("a phase needs a positive weight", |w| {
            w.iter().sum::<f64>() > 0.0
        })
}

fn knobs() -> impl Strategy<Value = Knobs> {
    (
        any::<u64>(),
        prop::sample::select(BATCHES.to_vec()),
        prop::collection::vec((weights(), 1u64..300, 0.0f64..=1.0), 0..4),
        any::<bool>(),
        prop::collection::vec((0usize..8, 0.0f64..3.0), 0..4),
        prop::option::of((1u64..20, 1u64..5)),
    )
        .prop_map(
            |(seed, batch, phases, endless, category_weights, block)| Knobs {
                seed,
                batch,
                phases,
                endless,
                category_weights,
                block,
            },
        )
}

fn sizes() -> impl Strategy<Value = [u64; 3]> {
    prop::array::uniform3(1u64..200)
}

/// The steps `range` of a plan, or fewer if the stream ends first.
fn batches(plan: &Plan, range: std::ops::Range<u64>) -> Vec<(u64, Subset, Vec<SampleRef>)> {
    range
        .map_while(|s| plan.global_batch(s).ok())
        .map(|b| (b.step, b.subset, b.samples))
        .collect()
}

/// The documented epoch permutation without category weights or block mode, written
/// out independently of the plan: Fisher-Yates over 0..len keyed by
/// (seed, subset id, epoch, 0, Shuffle).
fn reference_epoch(seed: u64, subset: Subset, epoch: u64, len: u64) -> Vec<u32> {
    let mut v: Vec<u32> = (0..len as u32).collect();
    Rng::keyed(seed, subset.id() as u64, epoch, 0, Purpose::Shuffle).shuffle(&mut v);
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn elastic_ranks_concatenate_to_the_global_batch(
        knobs in knobs(), sizes in sizes(), cat_seed in any::<u64>(), start in 0u64..1500,
    ) {
        let plan = Plan::new(&dataset(sizes, cat_seed), &knobs.spec()).unwrap();
        let b = knobs.batch;
        for (step, subset, global) in batches(&plan, start..start + 4) {
            prop_assert_eq!(global.len(), b as usize);
            for w in (1..=b).filter(|w| b % w == 0) {
                let mut joined = Vec::new();
                for r in 0..w {
                    let part = plan.rank_batch(step, r, w).unwrap();
                    prop_assert_eq!(part.subset, subset);
                    prop_assert_eq!(part.samples.len(), (b / w) as usize);
                    joined.extend(part.samples);
                }
                prop_assert_eq!(&joined, &global, "step {} world {}", step, w);
            }
            // A world size that does not divide the batch is refused, naming it.
            let bad = b + 1;
            let err = plan.rank_batch(step, 0, bad).unwrap_err();
            let named = matches!(err, PlanError::WorldSize { world_size, .. } if world_size == bad);
            prop_assert!(named, "{}", err);
        }
    }

    #[test]
    fn resume_equals_the_suffix_of_a_walk(
        knobs in knobs(), sizes in sizes(), cat_seed in any::<u64>(), s in 0u64..400,
    ) {
        let ds = dataset(sizes, cat_seed);
        let spec = knobs.spec();
        let walked = Plan::new(&ds, &spec).unwrap();
        let walk = batches(&walked, 0..s + 6);
        let fresh = Plan::new(&ds, &spec).unwrap();
        let cursor = Cursor::decode(&walked.cursor(s).encode()).unwrap();
        let from = fresh.resume(&cursor).unwrap();
        prop_assert_eq!(from, s);
        let resumed = batches(&fresh, from..s + 6);
        let suffix: Vec<_> = walk.into_iter().filter(|b| b.0 >= s).collect();
        prop_assert_eq!(resumed, suffix);
    }

    #[test]
    fn resume_near_ten_million_matches_references(
        seed in any::<u64>(), sizes in sizes(), w in weights(), batch in prop::sample::select(BATCHES.to_vec()),
        s in 9_999_000u64..10_001_000, lead_in in 1u64..5000,
    ) {
        // Unweighted, full shuffle, one phase before an endless constant one, so that
        // both the epochs and the mix have an independent reference.
        let mut spec = StreamSpec::new(seed, batch);
        spec.curriculum = vec![
            Phase { until_step: Some(lead_in), weights: weights_map([1.0, 0.0, 0.0]), ramp_steps: 0 },
            Phase { until_step: None, weights: weights_map(w), ramp_steps: 0 },
        ];
        let mut ds = dataset(sizes, 0);
        for s in &mut ds.subsets {
            s.categories = None;
        }
        let plan = Plan::new(&ds, &spec).unwrap();
        let b = batch as u64;
        let total: f64 = w.iter().sum();
        let at_lead_in = plan.consumed_before(lead_in);
        prop_assert_eq!(at_lead_in.get(Subset::Sft), lead_in * b);
        for step in s..s + 8 {
            let before = plan.consumed_before(step);
            let after = plan.consumed_before(step + 1);
            let batch_plan = plan.global_batch(step).unwrap();
            prop_assert_eq!(before.total(), step * b);
            for subset in Subset::ALL {
                let grew = after.get(subset) - before.get(subset);
                prop_assert_eq!(grew, if subset == batch_plan.subset { b } else { 0 });
                // The mix since the phase began follows the weights within 2 steps.
                let steps = (before.get(subset) - at_lead_in.get(subset)) / b;
                let want = (step - lead_in) as f64 * w[subset.id() as usize] / total;
                prop_assert!((steps as f64 - want).abs() < 2.0, "{} {} {}", subset, steps, want);
            }
            let len = sizes[batch_plan.subset.id() as usize];
            let pos0 = before.get(batch_plan.subset);
            for (i, sample) in batch_plan.samples.iter().enumerate() {
                let pos = pos0 + i as u64;
                let (epoch, offset) = (pos / len, pos % len);
                let reference = reference_epoch(seed, batch_plan.subset, epoch, len);
                prop_assert_eq!(
                    (sample.epoch, sample.offset, sample.ordinal),
                    (epoch, offset, reference[offset as usize] as u64)
                );
            }
        }
    }

    #[test]
    fn unweighted_epochs_cover_every_sample_once(
        knobs in knobs(), sizes in prop::array::uniform3(1u64..60), cat_seed in any::<u64>(),
    ) {
        let mut knobs = knobs;
        knobs.category_weights.clear();
        let plan = Plan::new(&dataset(sizes, cat_seed), &knobs.spec()).unwrap();
        let mut per_epoch: BTreeMap<(Subset, u64), Vec<(u64, u64)>> = BTreeMap::new();
        let walk = batches(&plan, 0..250);
        for (_, _, samples) in &walk {
            for s in samples {
                per_epoch.entry((s.subset, s.epoch)).or_default().push((s.offset, s.ordinal));
            }
        }
        let end = walk.last().map_or(0, |b| b.0 + 1);
        let consumed = plan.consumed_before(end);
        for ((subset, epoch), mut entries) in per_epoch {
            let len = sizes[subset.id() as usize];
            prop_assert_eq!(plan.epoch_len(subset), Some(len));
            if (epoch + 1) * len > consumed.get(subset) {
                continue; // not complete yet
            }
            entries.sort();
            let offsets: Vec<u64> = entries.iter().map(|e| e.0).collect();
            prop_assert_eq!(offsets, (0..len).collect::<Vec<_>>());
            let mut ordinals: Vec<u64> = entries.iter().map(|e| e.1).collect();
            ordinals.sort();
            prop_assert_eq!(ordinals, (0..len).collect::<Vec<_>>(), "{} epoch {}", subset, epoch);
        }
    }

    #[test]
    fn category_weights_are_met_per_epoch(
        seed in any::<u64>(), len in 20u64..150, cat_seed in any::<u64>(),
        cat_weights in prop::collection::vec((0usize..8, 0.0f64..3.5), 1..6),
        batch in prop::sample::select(BATCHES.to_vec()),
    ) {
        let ds = dataset([len, len / 2 + 1, 5], cat_seed);
        let mut spec = StreamSpec::new(seed, batch);
        spec.curriculum = vec![Phase {
            until_step: None,
            weights: weights_map([1.0, 1.0, 0.0]),
            ramp_steps: 0,
        }];
        let mut w = [1.0f64; 9]; // index 8: no category, always 1
        for &(c, x) in &cat_weights {
            spec.category_weights.insert(Category::ALL[c].name().to_string(), x);
            w[c] = x;
        }
        let plan = Plan::new(&ds, &spec).unwrap();
        let epochs = 6u64;
        for subset in [Subset::Sft, Subset::Preference] {
            let cats = ds.subsets[subset.id() as usize].categories.clone().unwrap();
            let key = |o: u64| cats[o as usize].map_or(8, |c| c.id() as usize);
            let mut n = [0u64; 9];
            for o in 0..cats.len() as u64 {
                n[key(o)] += 1;
            }
            let slots: Vec<u64> = (0..9).map(|c| (n[c] as f64 * w[c]).round() as u64).collect();
            let epoch_len: u64 = slots.iter().sum();
            prop_assert_eq!(plan.epoch_len(subset), Some(epoch_len));
            let mut seen = vec![0u64; cats.len()];
            for e in 0..epochs {
                let mut per_cat = [0u64; 9];
                for offset in 0..epoch_len {
                    let s = plan.sample_at(subset, e * epoch_len + offset).unwrap();
                    prop_assert_eq!((s.epoch, s.offset), (e, offset));
                    per_cat[key(s.ordinal)] += 1;
                    seen[s.ordinal as usize] += 1;
                }
                prop_assert_eq!(&per_cat[..], &slots[..], "{} epoch {}", subset, e);
            }
            for (o, &count) in seen.iter().enumerate() {
                let c = key(o as u64);
                let copies = slots[c] / n[c];
                let extra = slots[c] % n[c];
                let lo = copies * epochs + extra * epochs / n[c];
                let hi = copies * epochs + (extra * epochs).div_ceil(n[c]);
                prop_assert!(lo <= count && count <= hi, "ordinal {} seen {} not in {}..={}", o, count, lo, hi);
            }
            // Over any prefix, a category's share is off by at most one epoch's worth.
            let drawn = epochs * epoch_len + epoch_len / 3;
            let mut per_cat = [0u64; 9];
            for pos in 0..drawn {
                per_cat[key(plan.sample_at(subset, pos).unwrap().ordinal)] += 1;
            }
            for c in 0..9 {
                let want = slots[c] as f64 / epoch_len as f64;
                let got = per_cat[c] as f64 / drawn as f64;
                prop_assert!((got - want).abs() <= epoch_len as f64 / drawn as f64);
            }
        }
    }

    #[test]
    fn shard_layout_and_listing_order_do_not_matter(
        knobs in knobs(), sizes in sizes(), cat_seed in any::<u64>(),
        shard_a in 1usize..40, shard_b in 1usize..40,
    ) {
        // The plan only ever sees ordinals and categories: two datasets that hold the
        // same samples in the same canonical order, however sharded, plan identically.
        let base = dataset(sizes, cat_seed);
        let reshard = |shard: usize, reverse: bool| {
            let mut ds = base.clone();
            for s in &mut ds.subsets {
                if let Some(cats) = &s.categories {
                    let shards: Vec<Vec<Option<Category>>> =
                        cats.chunks(shard).map(|c| c.to_vec()).collect();
                    s.categories = Some(shards.concat().into());
                }
            }
            if reverse {
                ds.subsets.reverse();
            }
            ds
        };
        let a = Plan::new(&reshard(shard_a, false), &knobs.spec()).unwrap();
        let b = Plan::new(&reshard(shard_b, true), &knobs.spec()).unwrap();
        prop_assert_eq!(batches(&a, 0..60), batches(&b, 0..60));
    }

    #[test]
    fn windows_follow_the_weights(
        seed in any::<u64>(), w in weights(), sizes in sizes(), lead_in in 0u64..300,
    ) {
        let mut spec = StreamSpec::new(seed, 4);
        spec.curriculum = vec![Phase { until_step: None, weights: weights_map(w), ramp_steps: 0 }];
        if lead_in > 0 {
            spec.curriculum.insert(0, Phase {
                until_step: Some(lead_in),
                weights: weights_map([0.0, 0.0, 1.0]),
                ramp_steps: 0,
            });
        }
        let plan = Plan::new(&dataset(sizes, 1), &spec).unwrap();
        let total: f64 = w.iter().sum();
        let steps: Vec<Subset> = (lead_in..lead_in + 2100).map(|s| plan.subset_at(s).unwrap()).collect();
        for start in (0..2000).step_by(10) {
            for subset in Subset::ALL {
                let got = steps[start..start + 100].iter().filter(|&&s| s == subset).count() as f64;
                let want = 100.0 * w[subset.id() as usize] / total;
                prop_assert!((got - want).abs() < 2.0, "{} window {}: {} vs {}", subset, start, got, want);
            }
        }
    }

    #[test]
    fn ramps_are_followed(
        seed in any::<u64>(), from in weights(), to in weights(), start in 1u64..500,
    ) {
        // 6400 ramp steps = 64 stages of 100 steps, so windows align with stages.
        let ramp = 6400u64;
        let mut spec = StreamSpec::new(seed, 2);
        spec.curriculum = vec![
            Phase { until_step: Some(start), weights: weights_map(from), ramp_steps: 0 },
            Phase { until_step: None, weights: weights_map(to), ramp_steps: ramp },
        ];
        let plan = Plan::new(&dataset([50, 50, 50], 2), &spec).unwrap();
        let norm = |w: [f64; 3]| { let t: f64 = w.iter().sum(); w.map(|x| x / t) };
        let (p0, p1) = (norm(from), norm(to));
        // Start, middle and end of the ramp, then after it.
        for offset in [0, 100, 3100, 3200, 6300, 6400, 9000] {
            let a = plan.consumed_before(start + offset);
            let b = plan.consumed_before(start + offset + 100);
            let t = ((offset as f64 + 50.0) / ramp as f64).min(1.0);
            for subset in Subset::ALL {
                let i = subset.id() as usize;
                let got = (b.get(subset) - a.get(subset)) as f64 / 2.0;
                let want = 100.0 * (p0[i] + (p1[i] - p0[i]) * t);
                prop_assert!((got - want).abs() < 2.0, "{} at +{}: {} vs {}", subset, offset, got, want);
            }
        }
    }

    #[test]
    fn seeds_decide_the_order(knobs in knobs(), sizes in prop::array::uniform3(50u64..200)) {
        let ds = dataset(sizes, 3);
        let one = batches(&Plan::new(&ds, &knobs.spec()).unwrap(), 0..20);
        let again = batches(&Plan::new(&ds, &knobs.spec()).unwrap(), 0..20);
        prop_assert_eq!(&one, &again);
        let mut other = knobs.clone();
        other.seed = knobs.seed.wrapping_add(1);
        let two = batches(&Plan::new(&ds, &other.spec()).unwrap(), 0..20);
        prop_assert_ne!(one, two);
    }

    #[test]
    fn cursors_round_trip_and_refuse_foreign_streams(
        step in any::<u64>(), seed in any::<u64>(), version in "[a-z0-9:]{0,40}", junk in "[ -~]{0,60}",
    ) {
        let ds = PlanDataset { version: version.clone(), ..dataset([10, 10, 10], 0) };
        let spec = StreamSpec::new(seed, 4);
        let plan = Plan::new(&ds, &spec).unwrap();
        let token = plan.cursor(step).encode();
        let cursor = Cursor::decode(&token).unwrap();
        prop_assert_eq!(plan.resume(&cursor).unwrap(), step);
        prop_assert_eq!(cursor.encode(), token.clone());

        let other_spec = Plan::new(&ds, &StreamSpec::new(seed ^ 1, 4)).unwrap();
        let err = other_spec.resume(&cursor).unwrap_err().to_string();
        prop_assert!(err.contains("spec") && !err.contains("dataset"), "{}", err);
        let other_ds = PlanDataset { version: format!("{version}+1"), ..ds.clone() };
        let err = Plan::new(&other_ds, &spec).unwrap().resume(&cursor).unwrap_err().to_string();
        prop_assert!(err.contains("dataset") && !err.contains("spec"), "{}", err);

        // Arbitrary text never panics; whatever parses survives a round trip.
        match Cursor::decode(&junk) {
            Ok(c) => prop_assert_eq!(Cursor::decode(&c.encode()).unwrap(), c),
            Err(e) => prop_assert!(e.to_string().starts_with("malformed cursor")),
        }
        // Cutting a valid token short is always refused.
        let cut = &token[..token.len() - 1 - (step as usize % 16)];
        prop_assert!(Cursor::decode(cut).is_err());
    }
}

#[test]
fn a_misspelt_curriculum_key_is_rejected() {
    let err = StreamSpec::from_toml_str(
        "seed = 1\nglobal_batch = 8\n[[curriculum]]\nuntil_steps = 10\nweights = { sft = 1.0 }\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("until_steps"), "{err}");
}

#[test]
fn subsets_missing_from_the_dataset_are_named() {
    let ds = PlanDataset {
        version: "v".into(),
        subsets: vec![PlanSubset {
            subset: Subset::Sft,
            len: 10,
            categories: None,
            selected: None,
        }],
    };
    let spec = StreamSpec::from_toml_str(
        "seed = 1\nglobal_batch = 8\n[[curriculum]]\nweights = { sft = 1.0, multi_turn = 0.5 }\n",
    )
    .unwrap();
    let err = Plan::new(&ds, &spec).unwrap_err().to_string();
    assert!(err.contains("curriculum[0].weights.multi_turn"), "{err}");
}

#[test]
fn malformed_cursor_tokens_are_refused_clearly() {
    for token in [
        "",
        "ef1",
        "ef1:12",
        "ef1:x:0123456789abcdef:0123456789abcdef",
        "ef9:1:0123456789abcdef:0123456789abcdef",
        "ef1:1:0123456789abcdeg:0123456789abcdef",
    ] {
        let err = Cursor::decode(token).unwrap_err().to_string();
        assert!(err.starts_with("malformed cursor"), "{token}: {err}");
    }
}
