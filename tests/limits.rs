//! Limits and slow clients over real gRPC on loopback: a client that stops reading
//! stalls no one else, its work stays bounded, and it cannot hold up a shutdown.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn dataset() -> tempfile::TempDir {
    synth_dataset(40, 11, 8)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_stalls_no_one_and_its_work_stays_bounded() {
    let dir = dataset();
    let prefetch = 2;
    let mut config = editfeed::config::ServeConfig {
        workers: 2,
        prefetch_batches: prefetch,
        drain_seconds: 1,
        ..Default::default()
    };
    config
        .datasets
        .insert("d".into(), dir.path().display().to_string());
    let server = TestServer::start_config(config).await;
    // Batches of ~1.5 MB, so that HTTP/2 flow control stops the stalled stream soon.
    let mut client = editfeed::transport::client::connect(&server.endpoint)
        .await
        .unwrap();
    let mut stalled = client
        .stream(request("d", 1, 4, 1, 0, 256, 0))
        .await
        .unwrap()
        .into_inner();
    stalled.message().await.unwrap().unwrap();

    // Another trainer gets all its batches meanwhile.
    let other = fetch_all(&server.endpoint, request("d", 2, 4, 1, 0, 256, 12))
        .await
        .unwrap();
    assert_eq!(other.len(), 12);

    // The stalled stream's producer is parked: once the pool is idle, nothing more is
    // computed for it, and at most one prefetch window of jobs waits.
    // Idle: nothing running or queued, and no job finished over the last poll.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = server.state.pool.stats();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = server.state.pool.stats();
        if now.busy == 0 && now.queued == 0 && now.completed == last.completed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pool never went idle: {now:?}"
        );
        last = now;
    }
    let before = server.state.pool.stats();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = server.state.pool.stats();
    assert_eq!(before.completed, after.completed, "{before:?} -> {after:?}");
    assert!(after.queued <= prefetch * 4, "{after:?}");

    // It goes on where it stopped when its client reads again.
    let next = stalled.message().await.unwrap().unwrap();
    let alone = fetch_all(&server.endpoint, request("d", 1, 4, 1, 0, 256, 2))
        .await
        .unwrap();
    assert_eq!(
        editfeed::transport::wire::batch_digest(&next),
        editfeed::transport::wire::batch_digest(&alone[1])
    );

    // A shutdown with the stalled client still connected ends after the drain (1 s)
    // and the close grace (2 s), not never.
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(15), server.stop())
        .await
        .expect("the shutdown waited on a client that does not read");
    assert!(started.elapsed() >= Duration::from_secs(1));
    drop(stalled);
}

/// A request whose curriculum is `phases` (until_step, subset), over 64 px output.
fn curriculum_request(
    phases: &[(Option<u64>, &str)],
    global_batch: u32,
    world: u32,
    max_batches: u64,
) -> editfeed::transport::proto::v1::StreamRequest {
    let mut spec = editfeed::plan::StreamSpec::new(5, global_batch);
    spec.curriculum = phases
        .iter()
        .map(|&(until_step, subset)| editfeed::plan::Phase {
            until_step,
            weights: [(subset.to_string(), 1.0)].into(),
            ramp_steps: 0,
        })
        .collect();
    let mut req = request("d", 5, global_batch, world, 1, 64, max_batches);
    req.spec = Some(editfeed::transport::convert::spec_to_wire(&spec));
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_batch_bytes_is_checked_for_the_subsets_the_stream_reaches_per_rank() {
    use editfeed::dataset::writer::ShardTarget;
    use editfeed::dataset::Subset;
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_dataset(
        dir.path(),
        &all_samples(&small_synth(40, 11)),
        ShardTarget::Samples(8),
    );
    let chain = manifest.subsets[&Subset::MultiTurn].max_turns as u64 + 1;
    assert!(chain > 3, "the fixture's longest chain has {chain} images");
    // Per rank (global batch 4 over 2 ranks): 2 samples of 64 x 64 x 3 per image.
    let image = 2 * 64 * 64 * 3;
    let mut config = editfeed::config::ServeConfig {
        workers: 2,
        // A preference batch (3 images per sample) just fits; a chain does not.
        max_batch_bytes: 3 * image,
        ..Default::default()
    };
    config
        .datasets
        .insert("d".into(), dir.path().display().to_string());
    let server = TestServer::start_config(config).await;
    let sft_then_chains = [(Some(4), "sft"), (Some(8), "multi_turn")];

    // The single-turn steps alone are served, and so are preference pairs.
    let got = fetch_all(
        &server.endpoint,
        curriculum_request(&sft_then_chains, 4, 2, 4),
    )
    .await
    .unwrap();
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|b| b.subset == "sft"));
    let pairs = [(Some(3), "preference")];
    let got = fetch_all(&server.endpoint, curriculum_request(&pairs, 4, 2, 0))
        .await
        .unwrap();
    assert_eq!(got.len(), 3);

    // The whole curriculum reaches the chains at step 4: refused up front, saying so.
    let e = fetch_all(
        &server.endpoint,
        curriculum_request(&sft_then_chains, 4, 2, 0),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let want = format!(
        "the multi_turn batch at step 4, curriculum[1] would take {} bytes per rank, over the daemon's max_batch_bytes {}",
        chain * image,
        3 * image
    );
    assert!(e.message().starts_with(&want), "{}", e.message());

    // Per rank: the same single-turn steps on one rank are twice the bytes.
    let e = fetch_all(&server.endpoint, {
        let mut req = curriculum_request(&sft_then_chains, 4, 1, 4);
        req.rank = 0;
        req
    })
    .await
    .unwrap_err();
    assert!(
        e.message()
            .starts_with("the sft batch at step 0, curriculum[0] would take"),
        "{}",
        e.message()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_curriculum_longer_than_the_bound_is_a_clear_invalid_argument() {
    use editfeed::plan::spec::{Phase, MAX_PHASES};
    let dir = dataset();
    let server = TestServer::start(&[("d", dir.path())], 1, 1).await;
    let mut spec = editfeed::plan::StreamSpec::new(1, 4);
    spec.curriculum = (0..30_000u64)
        .map(|i| Phase {
            until_step: (i + 1 < 30_000).then_some(i + 1),
            weights: [("sft".to_string(), 1.0)].into(),
            ramp_steps: 0,
        })
        .collect();
    let mut req = request("d", 1, 4, 1, 0, 32, 1);
    req.spec = Some(editfeed::transport::convert::spec_to_wire(&spec));
    let err = fetch_all(&server.endpoint, req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("30000 phases") && err.message().contains(&MAX_PHASES.to_string()),
        "{}",
        err.message()
    );
    // At the bound it is accepted.
    spec.curriculum.truncate(MAX_PHASES);
    spec.curriculum.last_mut().unwrap().until_step = None;
    let mut req = request("d", 1, 4, 1, 0, 32, 1);
    req.spec = Some(editfeed::transport::convert::spec_to_wire(&spec));
    assert_eq!(fetch_all(&server.endpoint, req).await.unwrap().len(), 1);
    server.stop().await;
}

#[test]
fn the_pixel_limit_defaults_to_the_daemons() {
    assert_eq!(
        editfeed::dataset::pico_banana::ImageOptions::default().pixel_limit,
        editfeed::config::ServeConfig::default().max_decode_pixels
    );
}
