//! Selections in the stream spec (`[select]`): a filtered stream draws every matching
//! sample and nothing else, keeps the plan's elasticity and resume properties, and a
//! selection that names something unknown or empties a subset the stream draws from is
//! refused naming it, in the library and over gRPC.

mod common;

use std::collections::BTreeSet;

use common::*;
use editfeed::dataset::{Dataset, Subset};
use editfeed::plan::{Plan, PlanInput, Selection, StreamSpec};
use proptest::prelude::*;

fn dataset() -> (tempfile::TempDir, Dataset) {
    split_dataset(90, 7)
}

/// What the test knows of one sample, read back from its shard (and its split from the
/// manifest).
struct Facts {
    split: String,
    edit_type: Option<String>,
    category: Option<String>,
    turns: u32,
    words: u32,
}

fn facts(ds: &Dataset, subset: Subset, ordinal: u64) -> Facts {
    let m = ds.manifest();
    let split_id = m.subsets[&subset]
        .shards
        .iter()
        .flat_map(|sh| sh.splits.bytes())
        .nth(ordinal as usize)
        .unwrap();
    let sample = ds.read_sample(subset, ordinal).unwrap();
    let meta = &sample.meta;
    let words = std::iter::once(&meta.text)
        .chain(&meta.turns)
        .map(|t| t.split_whitespace().count() as u32)
        .max()
        .unwrap();
    Facts {
        split: m.splits[(split_id - b'0') as usize].clone(),
        edit_type: meta.edit_type.clone(),
        category: meta.category.map(|c| c.name().to_string()),
        turns: meta.turns.len() as u32,
        words,
    }
}

/// Whether a sample passes `sel`, decided from its own metadata.
fn matches(sel: &Selection, subset: Subset, f: &Facts) -> bool {
    let within = |v: u32, min: Option<u32>, max: Option<u32>| {
        min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m)
    };
    let named = |list: &[String], v: &Option<String>| v.as_ref().is_some_and(|v| list.contains(v));
    sel.split.as_ref().is_none_or(|s| *s == f.split)
        && (sel.edit_types.is_empty() || named(&sel.edit_types, &f.edit_type))
        && !named(&sel.exclude_edit_types, &f.edit_type)
        && (sel.categories.is_empty() || named(&sel.categories, &f.category))
        && !named(&sel.exclude_categories, &f.category)
        && (subset != Subset::MultiTurn || within(f.turns, sel.min_turns, sel.max_turns))
        && within(
            f.words,
            sel.min_instruction_words,
            sel.max_instruction_words,
        )
}

/// The median instruction length of the fixture's single-turn samples.
fn median_words(ds: &Dataset) -> u32 {
    let n = ds.manifest().subsets[&Subset::Sft].samples;
    let mut words: Vec<u32> = (0..n).map(|o| facts(ds, Subset::Sft, o).words).collect();
    words.sort();
    words[words.len() / 2]
}

/// Selections over the fixture, each leaving some samples in some subset.
fn selections(ds: &Dataset) -> Vec<Selection> {
    let words = median_words(ds);
    let edit = facts(ds, Subset::Sft, 0)
        .edit_type
        .expect("sft samples have edit types");
    let s = |f: &dyn Fn(&mut Selection)| {
        let mut sel = Selection::default();
        f(&mut sel);
        sel
    };
    vec![
        s(&|x| x.split = Some("test".into())),
        s(&|x| x.split = Some("train".into())),
        s(&|x| x.exclude_categories = vec!["stylistic".into(), "object_semantic".into()]),
        s(&|x| {
            x.split = Some("train".into());
            x.min_turns = Some(2);
            x.max_turns = Some(3);
        }),
        s(&|x| x.max_instruction_words = Some(words)),
        s(&|x| x.min_instruction_words = Some(words + 1)),
        s(&|x| x.edit_types = vec![edit.clone()]),
        s(&|x| {
            x.exclude_edit_types = vec![edit.clone()];
            x.categories = vec!["scene_composition".into(), "stylistic".into()];
        }),
    ]
}

#[test]
fn a_filtered_stream_draws_every_matching_sample_and_nothing_else() {
    let (_dir, ds) = dataset();
    for sel in selections(&ds) {
        let input = ds.selected_plan_input(&sel).unwrap();
        let mut spec = StreamSpec::new(3, 4);
        spec.select = sel.clone();
        let plan = Plan::new(&input, &spec).unwrap();
        for subset in Subset::ALL {
            let all = ds.manifest().subsets[&subset].samples;
            let want: BTreeSet<u64> = (0..all)
                .filter(|&o| matches(&sel, subset, &facts(&ds, subset, o)))
                .collect();
            let Some(epoch) = plan.epoch_len(subset) else {
                assert!(want.is_empty(), "{sel:?}: {subset} is not drawn from");
                continue;
            };
            assert_eq!(epoch, want.len() as u64, "{sel:?} {subset}");
            // Two epochs of the subset's stream: every matching sample, each once per
            // epoch, and nothing else.
            let drawn: Vec<u64> = (0..2 * epoch)
                .map(|p| plan.sample_at(subset, p).unwrap().ordinal)
                .collect();
            for half in drawn.chunks(epoch as usize) {
                let got: BTreeSet<u64> = half.iter().copied().collect();
                assert_eq!(got, want, "{sel:?} {subset}");
                assert_eq!(got.len(), half.len());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// The global batch of a filtered stream is the same for every world size, and a
    /// cursor resumes it at the same step.
    #[test]
    fn a_filtered_stream_keeps_elasticity_and_resume(
        which in 0usize..8,
        seed in 0u64..1000,
        step in 0u64..40,
    ) {
        let (_dir, ds) = dataset();
        let sels = selections(&ds);
        let sel = sels[which].clone();
        let mut spec = StreamSpec::new(seed, 4);
        spec.select = sel.clone();
        let plan = Plan::new(&ds.selected_plan_input(&sel).unwrap(), &spec).unwrap();
        let whole = plan.global_batch(step).unwrap().samples;
        for world in [2u32, 4] {
            let parts: Vec<_> = (0..world)
                .flat_map(|r| plan.rank_batch(step, r, world).unwrap().samples)
                .collect();
            prop_assert_eq!(&parts, &whole);
        }
        let again = Plan::new(&ds.selected_plan_input(&sel).unwrap(), &spec).unwrap();
        let resumed = again.resume(&plan.cursor(step)).unwrap();
        prop_assert_eq!(resumed, step);
        prop_assert_eq!(again.global_batch(resumed).unwrap().samples, whole);
        // Another selection is another stream: its cursors do not resume this one.
        let mut other = spec.clone();
        other.select = sels[(which + 1) % sels.len()].clone();
        let other_plan = Plan::new(&ds.selected_plan_input(&other.select).unwrap(), &other).unwrap();
        prop_assert!(other_plan.resume(&plan.cursor(step)).is_err());
    }
}

#[test]
fn unknown_names_and_emptied_subsets_are_refused_naming_them() {
    let (_dir, ds) = dataset();
    let sel = Selection {
        split: Some("holdout".into()),
        ..Default::default()
    };
    let e = ds.selected_plan_input(&sel).unwrap_err().to_string();
    assert!(
        e.contains("\"holdout\"") && e.contains("train, val, test"),
        "{e}"
    );

    // A curriculum weighting multi-turn, with a turn range no chain has.
    let sel = Selection {
        min_turns: Some(30),
        ..Default::default()
    };
    let mut spec = StreamSpec::from_toml_str(
        "seed = 1\nglobal_batch = 4\n[[curriculum]]\nweights = { sft = 1.0, multi_turn = 1.0 }\n",
    )
    .unwrap();
    spec.select = sel.clone();
    let e = Plan::new(&ds.selected_plan_input(&sel).unwrap(), &spec)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("curriculum[0].weights.multi_turn")
            && e.contains("select turns 30..=")
            && e.contains("left none of the"),
        "{e}"
    );
    // Without a curriculum the stream draws from the subsets the selection leaves.
    let mut spec = StreamSpec::new(1, 4);
    spec.select = sel.clone();
    let plan = Plan::new(&ds.selected_plan_input(&sel).unwrap(), &spec).unwrap();
    assert_eq!(plan.epoch_len(Subset::MultiTurn), None);
    // Unless it leaves none at all.
    let sel = Selection {
        categories: vec!["text_symbol".into()],
        exclude_categories: vec!["text_symbol".into()],
        ..Default::default()
    };
    spec.select = sel.clone();
    let e = Plan::new(&ds.selected_plan_input(&sel).unwrap(), &spec)
        .unwrap_err()
        .to_string();
    assert!(e.contains("the selection leaves no sample"), "{e}");
    assert!(e.contains("select.exclude_categories"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_stream_over_grpc_serves_only_its_split_and_refuses_bad_names() {
    let (dir, ds) = dataset();
    let server = TestServer::start(&[("d", dir.path())], 2, 2).await;
    let sel = Selection {
        split: Some("test".into()),
        ..Default::default()
    };
    let mut req = request("d", 9, 4, 1, 0, 64, 12);
    let mut spec = StreamSpec::new(9, 4);
    spec.select = sel.clone();
    req.spec = Some(editfeed::transport::convert::spec_to_wire(&spec));
    let batches = fetch_all(&server.endpoint, req.clone()).await.unwrap();
    assert_eq!(batches.len(), 12);
    let test_keys: BTreeSet<String> = Subset::ALL
        .iter()
        .flat_map(|&s| {
            let n = ds.manifest().subsets[&s].samples;
            let ds = &ds;
            (0..n)
                .filter(move |&o| facts(ds, s, o).split == "test")
                .map(move |o| ds.key_of(s, o).unwrap())
        })
        .collect();
    for b in &batches {
        for meta in &b.samples {
            assert!(
                test_keys.contains(&meta.key),
                "{} is not in the test split",
                meta.key
            );
        }
    }
    // The same request again: the same bytes.
    let again = fetch_all(&server.endpoint, req.clone()).await.unwrap();
    assert_eq!(digests(&again), digests(&batches));

    let mut bad = spec.clone();
    bad.select.exclude_categories = vec!["texts".into()];
    req.spec = Some(editfeed::transport::convert::spec_to_wire(&bad));
    let e = fetch_all(&server.endpoint, req).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(
        e.message()
            .contains("select.exclude_categories: unknown category \"texts\""),
        "{e:?}"
    );
    server.stop().await;
}

#[test]
fn key_lists_keep_or_drop_exactly_the_samples_they_name() {
    let (dir, ds) = dataset();
    let key = |s: Subset, o: u64| ds.key_of(s, o).unwrap();
    // Two single-turn samples by `<subset>/<key>`, one preference sample by bare key.
    let file = dir.path().join("keep.txt");
    std::fs::write(
        &file,
        format!(
            "# held-out keys\nsft/{}\n\n{}\nsft/{}\n",
            key(Subset::Sft, 3),
            key(Subset::Preference, 1),
            key(Subset::Sft, 10)
        ),
    )
    .unwrap();
    let sel = Selection {
        keys_file: Some("keep.txt".into()),
        ..Default::default()
    }
    .with_key_files(dir.path())
    .unwrap();
    assert_eq!(sel.keys.len(), 3);
    let input = ds.selected_plan_input(&sel).unwrap();
    let kept = |input: &editfeed::plan::PlanDataset, s: Subset| -> Vec<u64> {
        let ps = input.subsets.iter().find(|p| p.subset == s).unwrap();
        ps.selected.as_ref().unwrap().ordinals.to_vec()
    };
    // The bare key names that key in every subset.
    let bare = key(Subset::Preference, 1);
    let n = ds.manifest().subsets[&Subset::Sft].samples;
    let want: Vec<u64> = (0..n)
        .filter(|&o| [3, 10].contains(&o) || key(Subset::Sft, o) == bare)
        .collect();
    assert_eq!(kept(&input, Subset::Sft), want);
    let pref = kept(&input, Subset::Preference);
    assert!(pref.contains(&1), "{pref:?}");
    assert!(pref
        .iter()
        .all(|&o| key(Subset::Preference, o) == key(Subset::Preference, 1)));
    assert!(kept(&input, Subset::MultiTurn)
        .iter()
        .all(|&o| key(Subset::MultiTurn, o) == key(Subset::Preference, 1)));

    // The same entries as a deny list: everything else.
    let deny = Selection {
        exclude_keys: sel.keys.clone(),
        ..Default::default()
    };
    let input = ds.selected_plan_input(&deny).unwrap();
    let rest: Vec<u64> = (0..n).filter(|o| !want.contains(o)).collect();
    assert_eq!(kept(&input, Subset::Sft), rest);

    // Another key list is another stream: cursors do not cross.
    let spec_of = |sel: &Selection| {
        let mut spec = StreamSpec::new(1, 2);
        spec.select = sel.clone();
        Plan::new(&ds.selected_plan_input(sel).unwrap(), &spec).unwrap()
    };
    let mut fewer = sel.clone();
    fewer.keys.pop();
    assert!(spec_of(&fewer).resume(&spec_of(&sel).cursor(5)).is_err());

    // An entry that names no sample, and a file that repeats one, are refused.
    let bad = Selection {
        keys: vec![format!("sft/{}", key(Subset::Sft, 0)), "sft/nope".into()],
        ..Default::default()
    };
    let e = ds.selected_plan_input(&bad).unwrap_err().to_string();
    assert_eq!(
        e,
        "select.keys[1]: \"sft/nope\" is not a sample of the dataset"
    );
    std::fs::write(dir.path().join("twice.txt"), "a\nb\n\na\n").unwrap();
    let e = Selection {
        exclude_keys_file: Some("twice.txt".into()),
        ..Default::default()
    }
    .with_key_files(dir.path())
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("select.exclude_keys_file") && e.contains("line 4 repeats \"a\" of line 1"),
        "{e}"
    );
    // A file with no entry would allow everything: refused.
    std::fs::write(dir.path().join("none.txt"), "# nothing yet\n\n").unwrap();
    let e = Selection {
        keys_file: Some("none.txt".into()),
        ..Default::default()
    }
    .with_key_files(dir.path())
    .unwrap_err()
    .to_string();
    assert!(e.contains("none.txt: names no key"), "{e}");
    // A key file left unread is refused, not ignored.
    let e = StreamSpec::from_toml_str(
        "seed = 1\nglobal_batch = 2\n[select]\nkeys_file = \"keep.txt\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("select.keys_file: keep.txt: not read"), "{e}");
    // An entry naming a sample of a subset the selection leaves out is known.
    let other = Selection {
        subsets: vec!["sft".into()],
        exclude_keys: vec![format!("multi_turn/{}", key(Subset::MultiTurn, 0))],
        ..Default::default()
    };
    let input = ds.selected_plan_input(&other).unwrap();
    assert_eq!(kept(&input, Subset::Sft).len() as u64, n);
}
