//! The multi-turn steps view (`multi_turn = "steps"`): a chain of T turns is served as
//! T single-step samples (image t-1, instruction t, image t), deterministic and
//! resumable like any stream.

mod common;

use std::collections::BTreeSet;

use common::*;
use editfeed::dataset::Subset;
use editfeed::plan::{Mode, MultiTurnView, Plan, PlanInput, StreamSpec};
use editfeed::transport::proto::v1 as pb;

fn steps_spec(seed: u64, global_batch: u32, mode: Mode) -> StreamSpec {
    let mut spec = StreamSpec::new(seed, global_batch);
    spec.multi_turn = MultiTurnView::Steps;
    spec.mode = mode;
    spec.select.subsets = vec!["multi_turn".into()];
    spec
}

#[test]
fn every_turn_of_every_chain_is_one_sample_per_epoch() {
    let (_dir, ds) = split_dataset(90, 7);
    let chains = ds.manifest().subsets[&Subset::MultiTurn].samples;
    let turns: Vec<u8> = (0..chains)
        .map(|o| {
            ds.read_sample(Subset::MultiTurn, o)
                .unwrap()
                .meta
                .turns
                .len() as u8
        })
        .collect();
    let want: BTreeSet<(u64, u8)> = (0..chains)
        .flat_map(|c| (1..=turns[c as usize]).map(move |t| (c, t)))
        .collect();
    let total = want.len() as u64;
    assert!(total > chains, "the fixture has chains of several turns");

    // Training: each epoch is a permutation of the (chain, turn) pairs.
    let spec = steps_spec(4, 4, Mode::Train);
    let plan = Plan::new(&ds.stream_plan_input(&spec).unwrap(), &spec).unwrap();
    assert_eq!(plan.epoch_len(Subset::MultiTurn), Some(total));
    for epoch in 0..2 {
        let got: BTreeSet<(u64, u8)> = (epoch * total..(epoch + 1) * total)
            .map(|p| {
                let s = plan.sample_at(Subset::MultiTurn, p).unwrap();
                (s.ordinal, s.turn)
            })
            .collect();
        assert_eq!(got, want, "epoch {epoch}");
    }
    // Another view is another stream.
    let mut chains_spec = spec.clone();
    chains_spec.multi_turn = MultiTurnView::Chains;
    let chains_plan =
        Plan::new(&ds.stream_plan_input(&chains_spec).unwrap(), &chains_spec).unwrap();
    assert!(chains_plan.resume(&plan.cursor(3)).is_err());

    // Evaluation: canonical order is chain by chain, turn by turn.
    let spec = steps_spec(4, 4, Mode::Eval);
    let plan = Plan::new(&ds.stream_plan_input(&spec).unwrap(), &spec).unwrap();
    let pass: Vec<(u64, u8)> = (0..plan.end_step().unwrap())
        .flat_map(|s| plan.global_batch(s).unwrap().samples)
        .map(|s| (s.ordinal, s.turn))
        .collect();
    assert_eq!(pass, want.into_iter().collect::<Vec<_>>());
}

fn tensor<'a>(b: &'a pb::Batch, name: &str) -> &'a [u8] {
    &b.tensors.iter().find(|t| t.name == name).unwrap().data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_carry_the_images_and_instruction_of_their_turn_and_resume() {
    let (dir, ds) = split_dataset(60, 7);
    let server = TestServer::start(&[("d", dir.path())], 2, 2).await;
    let request = |spec: &StreamSpec| {
        let mut req = request("d", 0, 4, 1, 0, 32, 0);
        req.spec = Some(editfeed::transport::convert::spec_to_wire(spec));
        req.output.as_mut().unwrap().fit = pb::Fit::Stretch as i32;
        req
    };
    // One eval pass in each view, stretched so that every image has the same box.
    let steps = fetch_all(&server.endpoint, request(&steps_spec(0, 4, Mode::Eval)))
        .await
        .unwrap();
    let mut chains_spec = steps_spec(0, 4, Mode::Eval);
    chains_spec.multi_turn = MultiTurnView::Chains;
    let chains = fetch_all(&server.endpoint, request(&chains_spec))
        .await
        .unwrap();
    let img = 32 * 32 * 3;
    let slots = chains[0].tensors[0].shape[1] as usize;
    // The chains' images by (key, slot).
    let mut chain_images = std::collections::HashMap::new();
    for b in &chains {
        let images = tensor(b, "images");
        for (i, m) in b
            .samples
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.key.is_empty())
        {
            for slot in 0..slots {
                let at = (i * slots + slot) * img;
                chain_images.insert((m.key.clone(), slot), images[at..at + img].to_vec());
            }
        }
    }
    let mut seen = 0;
    for b in &steps {
        assert!(b.tensors.iter().all(|t| t.name != "images"));
        let (source, target) = (tensor(b, "source"), tensor(b, "target"));
        for (i, m) in b
            .samples
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.key.is_empty())
        {
            let t = m.chain_turn as usize;
            assert!(t >= 1 && t <= m.turns as usize, "{m:?}");
            let chain = ds.read_sample(Subset::MultiTurn, m.ordinal).unwrap();
            assert_eq!(chain.key, m.key);
            assert_eq!(m.text, chain.meta.turns[t - 1], "instruction of turn {t}");
            assert_eq!(
                source[i * img..(i + 1) * img],
                chain_images[&(m.key.clone(), t - 1)]
            );
            assert_eq!(
                target[i * img..(i + 1) * img],
                chain_images[&(m.key.clone(), t)]
            );
            seen += 1;
        }
    }
    let total: u32 = chains
        .iter()
        .flat_map(|b| b.samples.iter().map(|m| m.turns))
        .sum();
    assert_eq!(seen, total, "one step per turn");

    // A training stream in the steps view resumes from a cursor, byte for byte.
    let mut req = request(&steps_spec(7, 4, Mode::Train));
    req.output.as_mut().unwrap().fit = 0;
    req.max_batches = 8;
    let first = fetch_all(&server.endpoint, req.clone()).await.unwrap();
    let mut again = req.clone();
    again.cursor = first[3].cursor.clone();
    again.max_batches = 4;
    let rest = fetch_all(&server.endpoint, again).await.unwrap();
    assert_eq!(digests(&rest), digests(&first)[4..]);
    assert!(first
        .iter()
        .flat_map(|b| &b.samples)
        .all(|m| m.chain_turn >= 1));
    server.stop().await;
}
