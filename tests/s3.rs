//! Black-box tests against a real S3-compatible server on loopback (moto, started by
//! the harness in `tests/support/s3.rs`; `scripts/test.sh` installs it): packing
//! straight to S3, serving from S3 through the real gRPC server with the same batch
//! hashes as from local disk, transient faults injected by a proxy (retried, counted,
//! bytes unchanged), and permanent failures (missing manifest or shard, bad
//! credentials, wrong region, unreachable endpoint) that end promptly with one error
//! naming the URL; a reshard from disk into S3, switched to, serves the same batches.

mod common;
#[path = "support/s3.rs"]
mod s3;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use editfeed::dataset::writer::{DatasetWriter, ShardTarget, WriteOptions};
use editfeed::dataset::{Dataset, Sample, Subset};
use editfeed::store::{Location, Store, StoreConfig};
use s3::*;
use tonic::Code;

/// Every test body runs under this limit: a store failure must never hang a test.
const LIMIT: Duration = Duration::from_secs(180);

/// Writes `samples` straight to S3 through the writer.
fn pack_to_s3(url: &str, samples: &[Sample], target: ShardTarget) -> editfeed::dataset::Manifest {
    let mut w = DatasetWriter::create_with(
        url,
        WriteOptions {
            target,
            level: 3,
            compress_literals: false,
            overwrite: false,
        },
        &s3_config(),
    )
    .unwrap();
    for s in samples {
        w.add(s).unwrap();
    }
    w.finish().unwrap()
}

/// The same samples on local disk and in a fresh bucket; returns (dir, bucket, prefix).
fn twin_datasets(samples: &[Sample]) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let local = write_dataset(dir.path(), samples, ShardTarget::Samples(5));
    let bucket = bucket("twin");
    let remote = pack_to_s3(
        &s3_url(&bucket, "pico/v1", &moto().endpoint),
        samples,
        ShardTarget::Samples(5),
    );
    assert_eq!(
        local, remote,
        "the writer makes the same dataset in both places"
    );
    (dir, bucket, "pico/v1".to_string())
}

fn store_stats(server: &TestServer, name: &str) -> editfeed::store::StoreStatsSnapshot {
    server
        .state
        .registry
        .get(name)
        .unwrap()
        .dataset
        .store()
        .stats()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_from_s3_gives_the_same_batches_as_local_disk() {
    tokio::time::timeout(LIMIT, async {
        let samples = all_samples(&small_synth(30, 11));
        let (dir, bucket, prefix) = twin_datasets(&samples);
        let url = s3_url(&bucket, &prefix, &moto().endpoint);
        let local = dir.path().display().to_string();
        let server = TestServer::start_locations(&[("local", &local), ("s3", &url)], 2, 2).await;
        for (world, rank) in [(1, 0), (2, 1)] {
            let a = fetch_all(
                &server.endpoint,
                request("local", 5, 4, world, rank, 32, 12),
            )
            .await
            .unwrap();
            let b = fetch_all(&server.endpoint, request("s3", 5, 4, world, rank, 32, 12))
                .await
                .unwrap();
            assert_eq!(a.len(), 12);
            assert_eq!(digests(&a), digests(&b), "world {world} rank {rank}");
        }
        let s = store_stats(&server, "s3");
        assert!(s.requests > 0 && s.bytes_read > 0, "{s:?}");
        assert_eq!(s.retries, 0, "{s:?}");
        server.stop().await;
    })
    .await
    .expect("the test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_and_resets_are_retried_and_batches_are_unchanged() {
    tokio::time::timeout(LIMIT, async {
        let samples = all_samples(&small_synth(24, 12));
        let (dir, bucket, prefix) = twin_datasets(&samples);
        let proxy = Proxy::start(moto().addr);
        // About a third of distinct requests get a 503 first, a fifth a reset, a
        // seventh a body cut in half; each is hit once per kind, so retries succeed.
        proxy.faults.fail_503_mod.store(3, Ordering::Relaxed);
        proxy.faults.reset_mod.store(5, Ordering::Relaxed);
        proxy.faults.truncate_mod.store(7, Ordering::Relaxed);
        proxy.faults.delay_ms.store(5, Ordering::Relaxed);
        let url = s3_url(&bucket, &prefix, &proxy.endpoint);
        let local = dir.path().display().to_string();
        let server = TestServer::start_locations(&[("local", &local), ("s3", &url)], 2, 2).await;
        let a = fetch_all(&server.endpoint, request("local", 9, 4, 1, 0, 24, 15))
            .await
            .unwrap();
        let b = fetch_all(&server.endpoint, request("s3", 9, 4, 1, 0, 24, 15))
            .await
            .unwrap();
        assert_eq!(digests(&a), digests(&b));
        let s = store_stats(&server, "s3");
        let injected = proxy.faults.injected.load(Ordering::Relaxed);
        assert!(injected > 3, "faults were injected: {injected}");
        assert!(
            s.retries >= injected,
            "every fault was retried and counted: {s:?}"
        );
        assert_eq!(s.errors_unavailable + s.errors_other, 0, "{s:?}");
        server.stop().await;
    })
    .await
    .expect("the test finished in time");
}

#[test]
fn streaming_an_unindexed_read_resumes_a_body_cut_short() {
    let samples = all_samples(&small_synth(12, 13));
    let (dir, bucket, prefix) = twin_datasets(&samples);
    let proxy = Proxy::start(moto().addr);
    proxy.faults.truncate_mod.store(1, Ordering::Relaxed);
    let local = Dataset::open(dir.path()).unwrap();
    let remote =
        Dataset::open_with(s3_url(&bucket, &prefix, &proxy.endpoint), &s3_config()).unwrap();
    for subset in local.subsets() {
        for shard in 0..local.shards(subset).unwrap().len() {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            local
                .stream_shard(subset, shard, |s| {
                    a.push(s);
                    Ok(())
                })
                .unwrap();
            remote
                .stream_shard(subset, shard, |s| {
                    b.push(s);
                    Ok(())
                })
                .unwrap();
            assert_eq!(a, b);
        }
    }
    assert!(
        remote.store().stats().retries > 0,
        "bodies were cut and resumed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_starts_refusing_ends_the_stream_with_unavailable() {
    tokio::time::timeout(LIMIT, async {
        let samples = all_samples(&small_synth(20, 14));
        let (_dir, bucket, prefix) = twin_datasets(&samples);
        let proxy = Proxy::start(moto().addr);
        let url = s3_url(&bucket, &prefix, &proxy.endpoint);
        let server = TestServer::start_locations(&[("s3", &url)], 2, 1).await;
        let mut client = editfeed::transport::client::connect(&server.endpoint)
            .await
            .unwrap();
        let mut stream = client
            .stream(request("s3", 3, 4, 1, 0, 24, 0))
            .await
            .unwrap()
            .into_inner();
        assert!(stream.message().await.unwrap().is_some());
        proxy
            .faults
            .answer_all(403, "AccessDenied", "Access Denied");
        let started = Instant::now();
        let status = loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("an endless stream ended without an error"),
                Err(s) => break s,
            }
        };
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            status
                .message()
                .contains(&format!("s3://{bucket}/{prefix}/"))
                && status.message().contains("access denied"),
            "{}",
            status.message()
        );
        assert!(started.elapsed() < Duration::from_secs(60));
        server.stop().await;
    })
    .await
    .expect("the stream ended in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_shard_ends_the_stream_with_data_loss_naming_it() {
    tokio::time::timeout(LIMIT, async {
        let samples = all_samples(&small_synth(20, 15));
        let (_dir, bucket, prefix) = twin_datasets(&samples);
        let url = s3_url(&bucket, &prefix, &moto().endpoint);
        let Location::Remote(u) = Location::parse(&url).unwrap() else {
            unreachable!()
        };
        let store = Store::open(&Location::Remote(u), &s3_config()).unwrap();
        store.delete("sft-000001.tar.zst").unwrap();
        let server = TestServer::start_locations(&[("s3", &url)], 2, 2).await;
        // Enough steps to need every sft sample.
        let err = fetch_all(&server.endpoint, request("s3", 1, 4, 1, 0, 24, 40))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::DataLoss, "{err:?}");
        let shard_url = format!("s3://{bucket}/{prefix}/sft-000001.tar.zst");
        assert!(
            err.message().contains(&shard_url) && err.message().contains("not found"),
            "{}",
            err.message()
        );
        server.stop().await;
    })
    .await
    .expect("the stream ended in time");
}

#[test]
fn a_missing_manifest_is_one_error_naming_its_url() {
    let bucket = bucket("empty");
    let url = s3_url(&bucket, "no/dataset", &moto().endpoint);
    let started = Instant::now();
    let e = Dataset::open_with(&url, &s3_config())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!("s3://{bucket}/no/dataset/manifest.json: not found")
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Through the daemon: the registry says which dataset.
    let config = editfeed::config::ServeConfig {
        datasets: [("pico".to_string(), url)].into_iter().collect(),
        ..Default::default()
    };
    let e = editfeed::server::ServerState::new(config)
        .err()
        .expect("the daemon refuses a dataset without a manifest")
        .to_string();
    assert!(
        e.contains("pico") && e.contains(&format!("s3://{bucket}/no/dataset/manifest.json")),
        "{e}"
    );
}

#[test]
fn bad_credentials_fail_fast_with_the_stores_message() {
    let proxy = Proxy::start(moto().addr);
    proxy.faults.answer_all(
        403,
        "InvalidAccessKeyId",
        "The AWS Access Key Id you provided does not exist in our records.",
    );
    let started = Instant::now();
    let url = s3_url("any-bucket", "ds", &proxy.endpoint);
    let cfg = s3_config();
    let e = Dataset::open_with(&url, &cfg).unwrap_err().to_string();
    assert!(
        e.starts_with("s3://any-bucket/ds/manifest.json: access denied")
            && e.contains("InvalidAccessKeyId"),
        "{e}"
    );
    assert!(
        !e.contains("testing"),
        "credentials never appear in errors: {e}"
    );
    assert_eq!(
        proxy.faults.requests.load(Ordering::Relaxed),
        1,
        "403 is not retried"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_wrong_region_fails_fast_naming_the_url() {
    // S3 answers a request signed for the wrong region with a redirect and no Location.
    let proxy = Proxy::start(moto().addr);
    proxy.faults.answer_all(
        301,
        "PermanentRedirect",
        "The bucket you are attempting to access must be addressed using the specified endpoint.",
    );
    let url = s3_url("eu-bucket", "ds", &proxy.endpoint);
    let e = Dataset::open_with(&url, &s3_config())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("s3://eu-bucket/ds/manifest.json: ") && e.contains("region"),
        "{e}"
    );
    assert_eq!(proxy.faults.requests.load(Ordering::Relaxed), 1);
}

#[test]
fn an_unreachable_endpoint_is_one_error_after_bounded_retries() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = s3_url("b", "ds", &format!("http://127.0.0.1:{closed}"));
    let cfg = StoreConfig {
        max_retries: 2,
        ..s3_config()
    };
    let started = Instant::now();
    let e = Dataset::open_with(&url, &cfg).unwrap_err().to_string();
    assert!(
        e.starts_with("s3://b/ds/manifest.json: store unavailable after 3 attempts"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn large_shards_are_packed_to_s3_in_parts_and_verify() {
    let bucket = bucket("big");
    let proxy = Proxy::start(moto().addr);
    let url = s3_url(&bucket, "raw", &proxy.endpoint);
    let cfg = StoreConfig {
        upload_part_bytes: 5 << 20,
        ..s3_config()
    };
    let mut w = DatasetWriter::create_with(
        url.as_str(),
        WriteOptions {
            target: ShardTarget::Samples(100),
            level: 1,
            compress_literals: false,
            overwrite: false,
        },
        &cfg,
    )
    .unwrap();
    // Incompressible members: a shard of about 12 MiB, three parts of at most 5 MiB.
    let mut rng = editfeed::rng::Rng::from_seed(3);
    let blobs: Vec<Vec<u8>> = (0..4)
        .map(|_| (0..3 << 20).map(|_| rng.next_u64() as u8).collect())
        .collect();
    for (i, b) in blobs.iter().enumerate() {
        w.add_members(Subset::Sft, None, &format!("{i:06}"), [("bin", &b[..])])
            .unwrap();
    }
    let manifest = w.finish().unwrap();
    let shard = &manifest.subsets[&Subset::Sft].shards[0];
    assert!(shard.bytes > 10 << 20);
    let log = proxy.faults.log.lock().unwrap().clone();
    let parts = log
        .iter()
        .filter(|l| l.starts_with("PUT ") && l.contains(&shard.path) && l.contains("partNumber="))
        .count();
    assert_eq!(parts, 3, "{log:#?}");
    let last = log
        .iter()
        .rposition(|l| l.starts_with("PUT ") || l.starts_with("POST "));
    assert!(
        log[last.unwrap()].contains("manifest.json"),
        "the manifest is written last: {log:#?}"
    );
    let ds = Dataset::open_with(url.as_str(), &cfg).unwrap();
    for (i, b) in blobs.iter().enumerate() {
        assert_eq!(
            &ds.read_raw(Subset::Sft, i as u64).unwrap().members[0].1[..],
            &b[..]
        );
    }
    let report = common::verify_structure(&ds);
    // The raw members are no editfeed samples (schema problems are expected), but every
    // checksum holds and every frame agrees with the index.
    assert!(
        report
            .problems
            .iter()
            .all(|p| !p.contains("sha256") && !p.contains("index") && !p.contains("offset")),
        "{:?}",
        report.problems
    );
}

#[test]
fn synth_and_verify_commands_take_s3_urls() {
    let bucket = bucket("cli");
    let env = |c: &mut std::process::Command| {
        moto_env(c);
    };
    let out = format!("s3://{bucket}/synth");
    let mut synth = bin();
    synth.args([
        "synth",
        "--out",
        &out,
        "--samples",
        "6",
        "--scale",
        "0.0625",
        "--shard-samples",
        "2",
    ]);
    env(&mut synth);
    let r = synth.output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let mut check = bin();
    check.args(["verify", &out]);
    env(&mut check);
    let r = check.output().unwrap();
    assert!(
        r.status.success(),
        "{}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    // Writing again without --overwrite is refused, naming the URL.
    let r = synth.output().unwrap();
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains(&out) && err.contains("--overwrite"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reshard_from_disk_into_s3_is_switched_to_and_serves_the_same_batches() {
    use editfeed::transport::proto::v1 as pb;
    tokio::time::timeout(LIMIT, async {
        set_test_credentials();
        let dir = tempfile::tempdir().unwrap();
        let manifest = write_dataset(
            dir.path(),
            &all_samples(&small_synth(20, 13)),
            ShardTarget::Samples(4),
        );
        let local = dir.path().display().to_string();
        let server = TestServer::start_locations(&[("d", &local)], 2, 2).await;
        let want = digests(
            &fetch_all(&server.endpoint, request("d", 5, 4, 1, 0, 32, 10))
                .await
                .unwrap(),
        );
        let url = s3_url(&bucket("reshard"), "pico/v2", &moto().endpoint);
        let mut admin = editfeed::transport::client::connect_admin(&server.admin)
            .await
            .unwrap();
        let job_id = admin
            .reshard(pb::ReshardRequest {
                dataset: "d".into(),
                shard_samples: 3,
                destination: url.clone(),
                activate: true,
                priority: pb::ReshardPriority::Normal as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .job_id;
        let mut watch = admin
            .watch_job(pb::GetJobRequest { job_id })
            .await
            .unwrap()
            .into_inner();
        let mut last = None;
        while let Some(job) = watch.message().await.unwrap() {
            last = Some(job);
        }
        let job = last.unwrap();
        assert_eq!(job.state(), pb::JobState::Succeeded, "{job:?}");
        assert_eq!(job.version, manifest.version);
        let served = server.state.registry.get("d").unwrap();
        assert_eq!(served.location, url, "the name points at the S3 copy");
        let got = fetch_all(&server.endpoint, request("d", 5, 4, 1, 0, 32, 10))
            .await
            .unwrap();
        assert_eq!(digests(&got), want);
        assert!(store_stats(&server, "d").bytes_read > 0);
        server.stop().await;
    })
    .await
    .expect("the test finished in time");
}
