//! Evaluation passes (`mode = "eval"`): one finite pass in which every selected sample
//! comes exactly once across the ranks, the last batch of each subset padded and
//! masked, the same bytes whatever the worker count and from a resumed cursor, without
//! augmentation; augmentation fields and training settings are refused by name.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use editfeed::dataset::{Dataset, Subset};
use editfeed::plan::{EvalOrder, Mode, Plan, PlanInput, Selection, StreamSpec};
use editfeed::transport::proto::v1 as pb;
use proptest::prelude::*;

/// The canonical ordinals of `split`'s samples in each subset, read off the manifest.
fn split_ordinals(ds: &Dataset, split: &str) -> BTreeMap<Subset, Vec<u64>> {
    let m = ds.manifest();
    let id = m.splits.iter().position(|s| s == split).unwrap() as u8;
    m.subsets
        .iter()
        .map(|(&subset, sm)| {
            let ordinals = sm
                .shards
                .iter()
                .flat_map(|sh| sh.splits.bytes())
                .enumerate()
                .filter(|(_, c)| *c == b'0' + id)
                .map(|(o, _)| o as u64)
                .collect();
            (subset, ordinals)
        })
        .collect()
}

fn eval_spec(seed: u64, global_batch: u32, order: EvalOrder, split: &str) -> StreamSpec {
    let mut spec = StreamSpec::new(seed, global_batch);
    spec.mode = Mode::Eval;
    spec.order = order;
    spec.select = Selection {
        split: Some(split.into()),
        ..Default::default()
    };
    spec
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// For every world size that divides the batch: the pass covers each selected
    /// sample exactly once, subset by subset, pads only the last step of each subset,
    /// and the ranks' slices concatenate to the one-rank pass.
    #[test]
    fn an_eval_pass_yields_every_selected_sample_once_on_any_world_size(
        seed in 0u64..1000,
        batch_index in 0usize..6,
        seeded in any::<bool>(),
        split in prop::sample::select(vec!["train", "val", "test"]),
    ) {
        let (_dir, ds) = split_dataset(90, 7);
        let global_batch = [1u32, 2, 4, 6, 8, 12][batch_index];
        let order = if seeded { EvalOrder::Seeded } else { EvalOrder::Canonical };
        let spec = eval_spec(seed, global_batch, order, split);
        let plan = Plan::new(&ds.selected_plan_input(&spec.select).unwrap(), &spec).unwrap();
        let want = split_ordinals(&ds, split);
        let steps: u64 = want.values().map(|o| (o.len() as u64).div_ceil(global_batch as u64)).sum();
        prop_assert_eq!(plan.end_step(), Some(steps));
        for world in (1..=global_batch).filter(|w| global_batch.is_multiple_of(*w)) {
            let mut seen: BTreeMap<Subset, Vec<u64>> = BTreeMap::new();
            let mut order_seen = Vec::new();
            for step in 0..steps {
                let whole = plan.global_batch(step).unwrap();
                let mut rows = 0;
                let mut joined = Vec::new();
                for rank in 0..world {
                    let part = plan.rank_batch(step, rank, world).unwrap();
                    prop_assert_eq!(part.samples.len() as u32 + part.padding, global_batch / world);
                    // Padding comes after the samples, and only where the pass runs out.
                    if part.padding > 0 {
                        prop_assert!(rank == world - 1 || plan.rank_batch(step, rank + 1, world).unwrap().samples.is_empty());
                    }
                    rows += part.samples.len() + part.padding as usize;
                    joined.extend(part.samples);
                }
                prop_assert_eq!(rows, global_batch as usize);
                prop_assert_eq!(&joined, &whole.samples);
                for s in &joined {
                    seen.entry(s.subset).or_default().push(s.ordinal);
                    order_seen.push((s.subset, s.ordinal));
                }
                if whole.padding > 0 {
                    let next = plan.subset_at(step + 1).ok();
                    prop_assert!(next != Some(whole.subset), "padding before the end of {}", whole.subset);
                }
            }
            prop_assert!(plan.global_batch(steps).is_err(), "the pass ends");
            for (subset, ordinals) in &want {
                let mut got = seen.remove(subset).unwrap_or_default();
                if order == EvalOrder::Canonical {
                    prop_assert_eq!(&got, ordinals, "canonical order");
                }
                got.sort();
                prop_assert_eq!(&got, ordinals, "{} on world {}", subset, world);
            }
            prop_assert!(seen.is_empty());
            // Subset by subset, in subset order.
            let subsets: Vec<Subset> = order_seen.iter().map(|(s, _)| *s).collect();
            let mut sorted = subsets.clone();
            sorted.sort();
            prop_assert_eq!(subsets, sorted);
        }
    }
}

/// An eval request of the test split, `global_batch` 4, at 32 px.
fn eval_request(world: u32, rank: u32, order: EvalOrder) -> pb::StreamRequest {
    let mut req = request("d", 3, 4, world, rank, 32, 0);
    req.spec = Some(editfeed::transport::convert::spec_to_wire(&eval_spec(
        3, 4, order, "test",
    )));
    req
}

fn tensor<'a>(b: &'a pb::Batch, name: &str) -> &'a pb::Tensor {
    b.tensors
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("batch has no {name} tensor"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eval_pass_is_the_same_on_1_and_3_workers_and_from_a_cursor() {
    let (dir, ds) = split_dataset(90, 7);
    let one = TestServer::start(&[("d", dir.path())], 1, 2).await;
    let three = TestServer::start(&[("d", dir.path())], 3, 2).await;
    let want = split_ordinals(&ds, "test");
    let steps: usize = want.values().map(|o| o.len().div_ceil(4)).sum();
    for order in [EvalOrder::Canonical, EvalOrder::Seeded] {
        let a = fetch_all(&one.endpoint, eval_request(1, 0, order))
            .await
            .unwrap();
        assert_eq!(a.len(), steps, "the stream ends after one pass");
        let b = fetch_all(&three.endpoint, eval_request(1, 0, order))
            .await
            .unwrap();
        assert_eq!(digests(&a), digests(&b), "1 and 3 workers, {order:?}");
        // Resumed from the cursor of a batch: the rest of the pass, byte for byte.
        for k in [0, steps / 2, steps - 2] {
            let mut req = eval_request(1, 0, order);
            req.cursor = a[k].cursor.clone();
            let rest = fetch_all(&three.endpoint, req).await.unwrap();
            assert_eq!(digests(&rest), digests(&a)[k + 1..], "resumed after {k}");
        }
        // Every test sample once; padding only in the last batch of each subset.
        let mut keys = BTreeSet::new();
        for (i, batch) in a.iter().enumerate() {
            let valid = &tensor(batch, "valid").data;
            assert_eq!(valid.len(), 4);
            let last_of_subset = a.get(i + 1).is_none_or(|n| n.subset != batch.subset);
            for (row, meta) in batch.samples.iter().enumerate() {
                if valid[row] == 1 {
                    assert!(keys.insert((meta.subset.clone(), meta.key.clone())));
                } else {
                    assert!(last_of_subset, "padding at step {}", batch.step);
                    assert!(meta.key.is_empty());
                }
            }
            // No flips in evaluation.
            assert!(batch.samples.iter().all(|m| !m.flipped));
        }
        let expected: BTreeSet<(String, String)> = want
            .iter()
            .flat_map(|(s, ords)| {
                ords.iter()
                    .map(|&o| (s.name().to_string(), ds.key_of(*s, o).unwrap()))
            })
            .collect();
        assert_eq!(keys, expected);
    }
    one.stop().await;
    three.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ranks_of_an_eval_pass_cover_it_once_and_pad_with_zeros() {
    let (dir, ds) = split_dataset(90, 7);
    let server = TestServer::start(&[("d", dir.path())], 2, 2).await;
    let whole = fetch_all(&server.endpoint, eval_request(1, 0, EvalOrder::Canonical))
        .await
        .unwrap();
    let mut ranks = Vec::new();
    for rank in 0..4 {
        let req = eval_request(4, rank, EvalOrder::Canonical);
        ranks.push(fetch_all(&server.endpoint, req).await.unwrap());
    }
    // Every rank gets every step, so DDP ranks stay in step.
    assert!(ranks.iter().all(|r| r.len() == whole.len()));
    for (step, batch) in whole.iter().enumerate() {
        let keys: Vec<&str> = ranks
            .iter()
            .flat_map(|r| r[step].samples.iter().map(|m| m.key.as_str()))
            .collect();
        let want: Vec<&str> = batch.samples.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, want, "step {step}");
        let mask: Vec<u8> = ranks
            .iter()
            .flat_map(|r| tensor(&r[step], "valid").data.to_vec())
            .collect();
        assert_eq!(mask, tensor(batch, "valid").data.to_vec());
        // The pixels of each rank's rows are the one-rank batch's rows.
        let names: Vec<&str> = batch.tensors.iter().map(|t| t.name.as_str()).collect();
        for name in names.iter().filter(|n| **n != "valid") {
            let joined: Vec<u8> = ranks
                .iter()
                .flat_map(|r| tensor(&r[step], name).data.to_vec())
                .collect();
            assert_eq!(
                joined,
                tensor(batch, name).data.to_vec(),
                "{name} at {step}"
            );
        }
    }
    // The padding rows are zeros.
    let last = whole.last().unwrap();
    let valid = &tensor(last, "valid").data;
    let pad = valid.iter().filter(|v| **v == 0).count();
    let test_sft = split_ordinals(&ds, "test")[&Subset::MultiTurn].len();
    assert_eq!(pad, (4 - test_sft % 4) % 4, "multi-turn is the last subset");
    if pad > 0 {
        let images = tensor(last, "images");
        let row = images.data.len() / 4;
        assert!(images.data[(4 - pad) * row..].iter().all(|&v| v == 0));
        assert!(images.data[..row].iter().any(|&v| v != 0));
        let counts = &tensor(last, "turn_counts").data;
        assert!(counts[(4 - pad) * 4..].iter().all(|&v| v == 0));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_requests_with_augmentation_or_training_settings_are_refused() {
    let (dir, _ds) = split_dataset(30, 7);
    let server = TestServer::start(&[("d", dir.path())], 1, 2).await;
    let refused = |req: pb::StreamRequest| {
        let endpoint = server.endpoint.clone();
        async move {
            let e = fetch_all(&endpoint, req).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
            e.message().to_string()
        }
    };
    let mut req = eval_request(1, 0, EvalOrder::Canonical);
    req.augment = Some(pb::Augment {
        hflip: Some(0.5),
        ..Default::default()
    });
    let e = refused(req).await;
    assert!(
        e.contains("augment.hflip") && e.contains("eval stream"),
        "{e}"
    );

    let mut req = eval_request(1, 0, EvalOrder::Canonical);
    let mut spec = eval_spec(3, 4, EvalOrder::Canonical, "test");
    spec.category_weights.insert("stylistic".into(), 2.0);
    req.spec = Some(editfeed::transport::convert::spec_to_wire(&spec));
    let e = refused(req).await;
    assert!(e.contains("category_weights applies to training"), "{e}");

    // A seeded order is for evaluation only.
    let mut req = request("d", 3, 4, 1, 0, 32, 2);
    let mut spec = StreamSpec::new(3, 4);
    spec.order = EvalOrder::Seeded;
    req.spec = Some(editfeed::transport::convert::spec_to_wire(&spec));
    let e = refused(req).await;
    assert!(e.contains("order = \"seeded\""), "{e}");

    // A whole-image fit with the random crop on.
    let mut req = request("d", 3, 4, 1, 0, 32, 2);
    req.output.as_mut().unwrap().fit = pb::Fit::Letterbox as i32;
    let e = refused(req).await;
    assert!(
        e.contains("output.fit") && e.contains("augment.crop"),
        "{e}"
    );

    // A selection that leaves nothing is refused naming the filter of each subset.
    let mut req = eval_request(1, 0, EvalOrder::Canonical);
    let mut spec = eval_spec(3, 4, EvalOrder::Canonical, "test");
    spec.select.split = None;
    spec.select.subsets = vec!["dpo".into()];
    spec.select.categories = vec!["text_symbol".into()];
    spec.select.exclude_categories = vec!["text_symbol".into()];
    req.spec = Some(editfeed::transport::convert::spec_to_wire(&spec));
    let e = refused(req).await;
    assert!(
        e.contains("select.subsets = [\"dpo\"] leaves it out") && e.contains("left none of the 6"),
        "{e}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn letterbox_and_centre_crop_fit_the_whole_image_deterministically() {
    let (dir, ds) = split_dataset(30, 7);
    let server = TestServer::start(&[("d", dir.path())], 2, 2).await;
    let mut spec = eval_spec(0, 2, EvalOrder::Canonical, "train");
    spec.select.subsets = vec!["sft".into()];
    let fetch = |fit: pb::Fit| {
        let mut req = request("d", 0, 2, 1, 0, 32, 1);
        req.spec = Some(editfeed::transport::convert::spec_to_wire(&spec));
        req.output.as_mut().unwrap().fit = fit as i32;
        fetch_all(&server.endpoint, req)
    };
    let boxed = fetch(pb::Fit::Letterbox).await.unwrap().remove(0);
    let cropped = fetch(pb::Fit::CenterCrop).await.unwrap().remove(0);
    let default = fetch(pb::Fit::Unspecified).await.unwrap().remove(0);
    assert_eq!(
        editfeed::transport::wire::batch_digest(&default),
        editfeed::transport::wire::batch_digest(&cropped),
        "eval streams centre-crop by default"
    );
    assert_ne!(
        tensor(&boxed, "source").data,
        tensor(&cropped, "source").data
    );
    // Each letterboxed image sits in the rectangle its source's aspect gives, on zeros.
    let first = &boxed.samples[0];
    let ordinal = split_ordinals(&ds, "train")[&Subset::Sft][0];
    assert_eq!(first.key, ds.key_of(Subset::Sft, ordinal).unwrap());
    let sample = ds.read_sample(Subset::Sft, ordinal).unwrap();
    let img = &sample.images[0];
    let header = editfeed::codec::probe(img.format, &img.bytes).unwrap();
    let (left, top, w, h) =
        editfeed::pipeline::fit::letterbox_rect((header.width, header.height), (32, 32));
    assert!(w < 32 || h < 32, "the fixture's images are not square");
    let source = &tensor(&boxed, "source").data[..32 * 32 * 3];
    for y in 0..32u32 {
        for x in 0..32u32 {
            let inside = (left..left + w).contains(&x) && (top..top + h).contains(&y);
            let px = &source[((y * 32 + x) * 3) as usize..][..3];
            if !inside {
                assert_eq!(px, [0, 0, 0], "({x}, {y}) is padding");
            }
        }
    }
    let middle = &source[((16 * 32 + 16) * 3) as usize..][..3];
    assert_ne!(middle, [0, 0, 0], "the image is inside");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eval_pass_ends_at_a_broken_sample_instead_of_replacing_it() {
    let (dir, broken) = sft_dataset_with_broken_sample(2);
    let server = TestServer::start(&[("d", dir.path())], 2, 2).await;
    let mut req = request("d", 3, 2, 1, 0, 16, 0);
    let mut spec = StreamSpec::new(3, 2);
    spec.mode = Mode::Eval;
    req.spec = Some(editfeed::transport::convert::spec_to_wire(&spec));
    let mut client = editfeed::transport::client::connect(&server.endpoint)
        .await
        .unwrap();
    let mut stream = client.stream(req).await.unwrap().into_inner();
    // Canonical order: the batch of samples 0 and 1 comes, then the stream ends.
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.samples.len(), 2);
    let err = stream.message().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err:?}");
    assert!(
        err.message()
            .contains(&format!("sample {broken} (ordinal 2)"))
            && err.message().contains("does not replace samples"),
        "{err:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_leaves_a_letterbox_padding_black() {
    let (dir, ds) = split_dataset(30, 7);
    let server = TestServer::start(&[("d", dir.path())], 2, 2).await;
    let mut req = request("d", 0, 8, 1, 0, 32, 1);
    let mut spec = StreamSpec::new(0, 8);
    spec.select.subsets = vec!["sft".into()];
    req.spec = Some(editfeed::transport::convert::spec_to_wire(&spec));
    req.output.as_mut().unwrap().fit = pb::Fit::Letterbox as i32;
    req.augment = Some(pb::Augment {
        crop: Some(false),
        hflip: Some(1.0),
        flip_policy: pb::FlipPolicy::Ignore as i32,
        jitter: Some(pb::Jitter {
            brightness: 0.5,
            contrast: 0.5,
            saturation: 0.5,
        }),
        ..Default::default()
    });
    let batch = fetch_all(&server.endpoint, req).await.unwrap().remove(0);
    // Outside the rectangle each sample's source aspect gives, every pixel is zero,
    // whatever contrast the sample drew.
    let img = 32 * 32 * 3;
    for (i, m) in batch.samples.iter().enumerate() {
        let sample = ds.read_sample(Subset::Sft, m.ordinal).unwrap();
        let src = &sample.images[0];
        let header = editfeed::codec::probe(src.format, &src.bytes).unwrap();
        let (left, top, w, h) =
            editfeed::pipeline::fit::letterbox_rect((header.width, header.height), (32, 32));
        for name in ["source", "target"] {
            let image = &tensor(&batch, name).data[i * img..(i + 1) * img];
            for y in 0..32u32 {
                for x in 0..32u32 {
                    let inside = (left..left + w).contains(&x) && (top..top + h).contains(&y);
                    let px = &image[((y * 32 + x) * 3) as usize..][..3];
                    assert!(inside || px == [0, 0, 0], "{name} {i}: ({x}, {y})");
                }
            }
        }
    }
    assert!(batch.samples.iter().all(|m| m.flipped));
    server.stop().await;
}
