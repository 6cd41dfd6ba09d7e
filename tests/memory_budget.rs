//! The daemon-wide memory budget (`max_inflight_bytes`) over real gRPC on loopback:
//! a request whose one batch could never fit is refused naming the budget, and many
//! concurrent streams of large batches share it, stay within it and get the batches
//! they get alone.

mod common;

use common::*;
use editfeed::transport::proto::v1 as pb;

/// A 256 px sft batch of 4 samples: 4 x 2 images x 256 x 256 x 3 = 1.5 MiB of tensors,
/// charged twice that when prepared ahead. The default spec mixes the subsets: a
/// multi-turn batch of the synthetic dataset (the source and up to 5 turns) is three
/// times larger, and a stream's base is three times its largest batch.
const CHARGE: u64 = 3 << 20;
const MULTI_TURN_BYTES: u64 = 3 * CHARGE / 2;
/// The base of a stream of multi-turn batches of 4.
const MULTI_TURN_NEED: u64 = 3 * MULTI_TURN_BYTES;

async fn server(dir: &tempfile::TempDir, max_inflight_bytes: u64) -> TestServer {
    let mut config = editfeed::config::ServeConfig {
        workers: 2,
        prefetch_batches: 2,
        max_inflight_bytes,
        ..Default::default()
    };
    config
        .datasets
        .insert("d".into(), dir.path().display().to_string());
    TestServer::start_config(config).await
}

async fn memory(admin: &str) -> pb::MemoryStats {
    let mut c = editfeed::transport::client::connect_admin(admin)
        .await
        .unwrap();
    let stats = c.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    stats.memory.expect("Stats reports the memory budget")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_one_batch_passes_the_budget_is_refused_naming_it() {
    let dir = synth_dataset(24, 5, 8);
    let limit = MULTI_TURN_NEED + (1 << 20);
    let srv = server(&dir, limit).await;
    // 8 samples: a multi-turn stream needs 27 MiB, over the budget by itself.
    let e = fetch_all(&srv.endpoint, request("d", 1, 8, 1, 0, 256, 2))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    let need = format!("({} bytes", 2 * MULTI_TURN_NEED);
    let named = format!("max_inflight_bytes {limit}");
    for part in ["multi_turn batch at step", &need, &named] {
        assert!(e.message().contains(part), "{part:?} in {:?}", e.message());
    }
    // Half of it fits, and is served.
    let got = fetch_all(&srv.endpoint, request("d", 1, 4, 1, 0, 256, 2))
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_share_the_budget_within_it_and_get_their_batches() {
    let dir = synth_dataset(40, 11, 8);
    let streams = 8u64;
    let batches = 5;
    let req = move |seed| request("d", seed, 4, 1, 0, 256, batches);

    // Alone, one stream at a time, with room for every batch the streams prepare.
    let roomy = server(&dir, 1 << 30).await;
    let mut alone = Vec::new();
    for seed in 0..streams {
        alone.push(digests(
            &fetch_all(&roomy.endpoint, req(seed)).await.unwrap(),
        ));
    }
    roomy.stop().await;

    // Together, with room for one stream's base and two extra sft batches, where 8
    // streams would hold up to 32 batches.
    let limit = MULTI_TURN_NEED + 2 * CHARGE;
    let srv = server(&dir, limit).await;
    let runs: Vec<_> = (0..streams)
        .map(|seed| {
            let endpoint = srv.endpoint.clone();
            tokio::spawn(async move { fetch_all(&endpoint, req(seed)).await })
        })
        .collect();
    for (seed, run) in runs.into_iter().enumerate() {
        let got = run.await.unwrap().unwrap();
        assert_eq!(digests(&got), alone[seed], "stream {seed}");
    }
    let m = memory(&srv.admin).await;
    assert_eq!(m.max_inflight_bytes, limit);
    assert!(m.peak_inflight_bytes <= limit, "{m:?}");
    assert!(
        m.peak_inflight_bytes >= 2 * CHARGE,
        "the streams used the room they had: {m:?}"
    );
    assert!(m.waits > 0, "streams waited to be admitted: {m:?}");
    assert_eq!(m.inflight_bytes, 0, "every charge came back: {m:?}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_keeps_its_base_and_prefetch_only_and_others_keep_moving() {
    let dir = synth_dataset(40, 11, 8);
    // The most a stream holds: its base and, for prefetch 2, two extra multi-turn
    // batches at twice their bytes. Room for two such streams.
    let most = MULTI_TURN_NEED + 2 * 2 * MULTI_TURN_BYTES;
    let limit = 2 * most + (1 << 20);
    let srv = server(&dir, limit).await;
    let mut client = editfeed::transport::client::connect(&srv.endpoint)
        .await
        .unwrap();
    let mut stalled = client
        .stream(request("d", 1, 4, 1, 0, 256, 0))
        .await
        .unwrap()
        .into_inner();
    stalled.message().await.unwrap().unwrap();
    // Whatever the stalled stream holds, the other streams are admitted and finish.
    for seed in 2..5 {
        let got = fetch_all(&srv.endpoint, request("d", seed, 4, 1, 0, 256, 6))
            .await
            .unwrap();
        assert_eq!(got.len(), 6, "stream {seed}");
    }
    let m = memory(&srv.admin).await;
    assert!(m.peak_inflight_bytes <= limit, "{m:?}");
    assert!(
        (MULTI_TURN_NEED..=most).contains(&m.inflight_bytes),
        "the stalled stream's base, and its prefetch at most: {m:?}"
    );
    drop(stalled);
    srv.stop().await;
}
