//! The Admin service, black box over real gRPC: resharding keeps sample identity and
//! order whatever the new layout; a stream running through a reshard and the version
//! switch keeps its bytes; retired versions are collected once unused; the registry
//! survives a restart; bad requests get clear errors; killing the daemon mid-reshard
//! (kill -9) leaves the old version intact and a re-run gives byte-identical output;
//! the `editfeed admin` CLI drives it all.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use editfeed::config::ServeConfig;
use editfeed::dataset::synth::SynthOptions;
use editfeed::dataset::writer::ShardTarget;
use editfeed::transport::proto::v1 as pb;
use pb::JobState;

async fn admin(endpoint: &str) -> editfeed::transport::client::Admin {
    editfeed::transport::client::connect_admin(endpoint)
        .await
        .unwrap()
}

/// A server over `datasets` keeping its state in `state_dir`.
async fn server(datasets: &[(&str, &Path)], state_dir: &Path) -> TestServer {
    let mut config = ServeConfig {
        workers: 2,
        state_dir: state_dir.display().to_string(),
        ..Default::default()
    };
    for (name, path) in datasets {
        config
            .datasets
            .insert(name.to_string(), path.display().to_string());
    }
    TestServer::start_config(config).await
}

/// A reshard request at normal priority, so that jobs progress on a machine kept busy
/// by other tests (the CLI test keeps the default, idle).
fn reshard_request(dataset: &str, dest: &Path, samples: u64, bytes: u64) -> pb::ReshardRequest {
    pb::ReshardRequest {
        dataset: dataset.into(),
        shard_samples: samples,
        shard_bytes: bytes,
        destination: dest.display().to_string(),
        priority: pb::ReshardPriority::Normal as i32,
        ..Default::default()
    }
}

/// Follows a job with WatchJob to its end; returns every state seen.
async fn watch_to_end(c: &mut editfeed::transport::client::Admin, id: &str) -> Vec<pb::Job> {
    let mut stream = c
        .watch_job(pb::GetJobRequest { job_id: id.into() })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(job) = tokio::time::timeout(Duration::from_secs(120), stream.message())
        .await
        .expect("the job ends within two minutes")
        .unwrap()
    {
        seen.push(job);
    }
    seen
}

async fn run_job(c: &mut editfeed::transport::client::Admin, req: pb::ReshardRequest) -> pb::Job {
    let id = c.reshard(req).await.unwrap().into_inner().job_id;
    let last = watch_to_end(c, &id).await.pop().unwrap();
    assert_eq!(last.state(), JobState::Succeeded, "{last:?}");
    last
}

fn shard_count(dir: &Path) -> usize {
    let m = editfeed::dataset::Dataset::open(dir).unwrap();
    m.manifest().subsets.values().map(|s| s.shards.len()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_keeps_sample_identity_and_order_whatever_the_shard_size() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let manifest = write_dataset(
        &src,
        &all_samples(&small_synth(30, 4)),
        ShardTarget::Samples(4),
    );
    let srv = server(&[("d", &src)], &dir.path().join("state")).await;
    let mut c = admin(&srv.admin).await;
    let want = digests(
        &fetch_all(&srv.endpoint, request("d", 11, 4, 1, 0, 16, 14))
            .await
            .unwrap(),
    );
    let want_rank1 = digests(
        &fetch_all(&srv.endpoint, request("d", 11, 4, 2, 1, 16, 6))
            .await
            .unwrap(),
    );
    for (i, (samples, bytes)) in [(1, 0), (7, 0), (0, 20_000), (1000, 0)]
        .into_iter()
        .enumerate()
    {
        let dest = dir.path().join(format!("v{i}"));
        let id = c
            .reshard(reshard_request("d", &dest, samples, bytes))
            .await
            .unwrap()
            .into_inner()
            .job_id;
        let seen = watch_to_end(&mut c, &id).await;
        let last = seen.last().unwrap();
        assert_eq!(last.state(), JobState::Succeeded, "{last:?}");
        assert_eq!(last.version, manifest.version, "the version is layout-free");
        assert_eq!((last.samples_done, last.samples_total), (30, 30));
        assert_eq!(last.shards_done as usize, shard_count(&dest));
        assert_ne!(
            shard_count(&dest),
            shard_count(&src),
            "target ({samples}, {bytes}) changed the layout"
        );
        let name = format!("v{i}");
        c.register_dataset(pb::RegisterDatasetRequest {
            name: name.clone(),
            url: dest.display().to_string(),
        })
        .await
        .unwrap();
        let got = fetch_all(&srv.endpoint, request(&name, 11, 4, 1, 0, 16, 14))
            .await
            .unwrap();
        assert_eq!(
            digests(&got),
            want,
            "{name}: same batches from the new layout"
        );
        let got = fetch_all(&srv.endpoint, request(&name, 11, 4, 2, 1, 16, 6))
            .await
            .unwrap();
        assert_eq!(digests(&got), want_rank1, "{name}: rank 1 of 2");
    }
    // A changed sample set is a different dataset: a subset choice changes the version.
    let job = run_job(
        &mut c,
        pb::ReshardRequest {
            subsets: vec!["sft".into()],
            ..reshard_request("d", &dir.path().join("sft-only"), 5, 0)
        },
    )
    .await;
    assert_ne!(job.version, manifest.version);
    // Huffman-coded literals: the same layout and samples in smaller frames.
    let lit = dir.path().join("literals");
    let job = run_job(
        &mut c,
        pb::ReshardRequest {
            compress_literals: true,
            ..reshard_request("d", &lit, 4, 0)
        },
    )
    .await;
    assert_eq!(job.version, manifest.version);
    let shard_bytes = |dir: &Path| -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".tar.zst"))
            .map(|p| p.metadata().unwrap().len())
            .sum()
    };
    assert_eq!(shard_count(&lit), shard_count(&src));
    assert!(
        shard_bytes(&lit) < shard_bytes(&src),
        "{} bytes with coded literals, {} without",
        shard_bytes(&lit),
        shard_bytes(&src)
    );
    let jobs = c
        .list_jobs(pb::ListJobsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(jobs.jobs.len(), 6);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_running_through_a_reshard_and_switch_keeps_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write_dataset(
        &src,
        &all_samples(&small_synth(24, 5)),
        ShardTarget::Samples(5),
    );
    let srv = server(&[("d", &src)], &dir.path().join("state")).await;
    let mut c = admin(&srv.admin).await;
    // Batches of about 3 MB: the stream cannot finish into the 16 MiB HTTP/2 window
    // while the client pauses, so its producer still reads when the name switches.
    let mut req = request("d", 3, 4, 1, 0, 320, 30);
    let want = digests(&fetch_all(&srv.endpoint, req.clone()).await.unwrap());

    req.job = "through-switch".into();
    let mut client = editfeed::transport::client::connect(&srv.endpoint)
        .await
        .unwrap();
    let mut stream = client.stream(req.clone()).await.unwrap().into_inner();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(stream.message().await.unwrap().unwrap());
    }
    // The client pauses: the server gets ahead of it by a prepared batch that waits.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (stats, s) = loop {
        let stats = c.stats(pb::StatsRequest {}).await.unwrap().into_inner();
        let s = stats
            .streams
            .iter()
            .find(|s| s.job == "through-switch")
            .expect("the open stream is listed")
            .clone();
        if s.ahead_batches >= 1 || Instant::now() > deadline {
            break (stats, s);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(s.ahead_batches >= 1, "{s:?}");
    assert_eq!((s.dataset.as_str(), s.rank, s.world_size), ("d", 0, 1));
    assert!(
        s.batches >= 3 && s.step >= 2 && s.batches_per_second > 0.0,
        "{s:?}"
    );
    assert_eq!(stats.pool.unwrap().workers, 2);
    assert!(
        stats
            .datasets
            .iter()
            .any(|d| d.name == "d" && d.bytes_read > 0),
        "{stats:?}"
    );

    let dest = dir.path().join("v2");
    let job = run_job(
        &mut c,
        pb::ReshardRequest {
            activate: true,
            ..reshard_request("d", &dest, 3, 0)
        },
    )
    .await;
    let list = c
        .list_datasets(pb::ListDatasetsRequest {})
        .await
        .unwrap()
        .into_inner();
    let d = list
        .datasets
        .iter()
        .find(|d| d.info.as_ref().unwrap().name == "d")
        .unwrap();
    assert_eq!(d.location, dest.display().to_string(), "switched");
    assert_eq!(list.retired.len(), 1);
    assert_eq!(list.retired[0].location, src.display().to_string());
    assert_eq!(
        list.retired[0].streams, 1,
        "the open stream holds the old one"
    );
    // While the stream reads it, the old version is kept.
    let gc = c
        .gc(pb::GcRequest { dry_run: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((gc.removed.len(), gc.kept.len()), (0, 1));
    assert!(src.join("manifest.json").exists());

    while let Some(b) = stream.message().await.unwrap() {
        got.push(b);
    }
    assert_eq!(digests(&got), want, "the stream's bytes did not change");
    assert!(got.iter().all(|b| b.dataset_version == job.version));
    drop(stream);

    // A new stream reads the new version, with the same bytes.
    let again = fetch_all(&srv.endpoint, request("d", 3, 4, 1, 0, 320, 30))
        .await
        .unwrap();
    assert_eq!(digests(&again), want);

    // Once the stream has ended, gc deletes the old version (manifest, shards, indexes).
    let deadline = Instant::now() + Duration::from_secs(10);
    let gc = loop {
        let gc = c
            .gc(pb::GcRequest { dry_run: false })
            .await
            .unwrap()
            .into_inner();
        if !gc.removed.is_empty() || Instant::now() > deadline {
            break gc;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(gc.removed.len(), 1, "{gc:?}");
    assert!(!src.join("manifest.json").exists());
    assert!(!src.join("sft-000000.tar.zst").exists());
    let list = c
        .list_datasets(pb::ListDatasetsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(list.retired.is_empty());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    write_dataset(
        &a,
        &all_samples(&small_synth(6, 1)),
        ShardTarget::Samples(4),
    );
    write_dataset(
        &b,
        &all_samples(&small_synth(6, 2)),
        ShardTarget::Samples(4),
    );
    let state = dir.path().join("state");
    let srv = server(&[("a", &a)], &state).await;
    let mut c = admin(&srv.admin).await;
    c.register_dataset(pb::RegisterDatasetRequest {
        name: "b".into(),
        url: b.display().to_string(),
    })
    .await
    .unwrap();
    c.unregister_dataset(pb::UnregisterDatasetRequest { name: "a".into() })
        .await
        .unwrap();
    srv.stop().await;

    // Config still names "a": the persisted unregistration wins, "b" comes back.
    let srv = server(&[("a", &a)], &state).await;
    let mut c = admin(&srv.admin).await;
    let list = c
        .list_datasets(pb::ListDatasetsRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = list
        .datasets
        .iter()
        .map(|d| d.info.as_ref().unwrap().name.clone())
        .collect();
    assert_eq!(names, ["b"]);
    let got = fetch_all(&srv.endpoint, request("b", 0, 2, 1, 0, 16, 2))
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write_dataset(
        &src,
        &all_samples(&small_synth(12, 6)),
        ShardTarget::Samples(4),
    );
    let srv = server(&[("d", &src)], &dir.path().join("state")).await;
    let mut c = admin(&srv.admin).await;
    let code_and_msg = |r: Result<tonic::Response<pb::ReshardResponse>, tonic::Status>| {
        let e = r.unwrap_err();
        (e.code(), e.message().to_string())
    };

    let (code, msg) = code_and_msg(
        c.reshard(reshard_request("nope", &dir.path().join("x"), 4, 0))
            .await,
    );
    assert_eq!(code, tonic::Code::NotFound, "{msg}");
    assert!(msg.contains("\"nope\"") && msg.contains("d"), "{msg}");

    let (code, msg) = code_and_msg(
        c.reshard(reshard_request("d", &dir.path().join("x"), 0, 0))
            .await,
    );
    assert_eq!(code, tonic::Code::InvalidArgument, "{msg}");
    assert!(
        msg.contains("shard_samples") && msg.contains("zero"),
        "{msg}"
    );

    // A folder inside a regular file cannot be created.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let unwritable = file.join("out");
    let (code, msg) = code_and_msg(c.reshard(reshard_request("d", &unwritable, 4, 0)).await);
    assert_eq!(code, tonic::Code::FailedPrecondition, "{msg}");
    assert!(msg.contains(&unwritable.display().to_string()), "{msg}");

    let (code, msg) = code_and_msg(c.reshard(reshard_request("d", &src, 4, 0)).await);
    assert_eq!(code, tonic::Code::InvalidArgument, "{msg}");
    assert!(msg.contains("destination"), "{msg}");

    // Two reshards into one destination: the second is refused, naming it, whether the
    // first is still running or has already written its manifest.
    let dest = dir.path().join("one");
    let first = c
        .reshard(reshard_request("d", &dest, 4, 0))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let (code, msg) = code_and_msg(c.reshard(reshard_request("d", &dest, 2, 0)).await);
    assert_eq!(code, tonic::Code::AlreadyExists, "{msg}");
    assert!(msg.contains(&dest.display().to_string()), "{msg}");
    let done = watch_to_end(&mut c, &first).await.pop().unwrap();
    assert_eq!(done.state(), JobState::Succeeded);
    let (code, msg) = code_and_msg(c.reshard(reshard_request("d", &dest, 2, 0)).await);
    assert_eq!(code, tonic::Code::AlreadyExists, "{msg}");
    assert!(msg.contains(&dest.display().to_string()), "{msg}");

    let e = c
        .cancel_job(pb::GetJobRequest {
            job_id: first.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains(&first) && e.message().contains("already finished"),
        "{e:?}"
    );
    let e = c
        .get_job(pb::GetJobRequest {
            job_id: "job-99".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let e = c
        .register_dataset(pb::RegisterDatasetRequest {
            name: "../x".into(),
            url: src.display().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let e = c
        .register_dataset(pb::RegisterDatasetRequest {
            name: "y".into(),
            url: dir.path().join("missing").display().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("missing"), "{e:?}");
    srv.stop().await;
}

/// A dataset whose reshard at zstd level 19 with image shrinking takes seconds, so a
/// job can be caught mid-way.
fn slow_dataset(root: &Path) {
    let opts = SynthOptions {
        samples: 48,
        seed: 9,
        scale: 0.5,
        jpeg_quality: 90,
    };
    write_dataset(root, &all_samples(&opts), ShardTarget::Samples(8));
}

fn slow_request(dest: &Path) -> pb::ReshardRequest {
    pb::ReshardRequest {
        level: 19,
        max_side: 200,
        ..reshard_request("d", dest, 3, 0)
    }
}

/// A server with two workers serving [`slow_dataset`] (written to `dir/src`) as `d`,
/// with the rest of `config`.
async fn slow_server(dir: &Path, mut config: ServeConfig) -> TestServer {
    let src = dir.join("src");
    slow_dataset(&src);
    config.workers = 2;
    config
        .datasets
        .insert("d".into(), src.display().to_string());
    TestServer::start_config(config).await
}

/// Every file under `dir` (relative path -> bytes), leaving out temporary files a
/// killed writer may leave behind.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".partial") || name.ends_with(".tmp") {
            continue;
        }
        out.insert(name, std::fs::read(&p).unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_queue_within_bounds_and_can_be_cancelled_queued_or_running() {
    let dir = tempfile::tempdir().unwrap();
    let srv = slow_server(
        dir.path(),
        ServeConfig {
            reshard_queue_jobs: 1,
            ..Default::default()
        },
    )
    .await;
    let mut c = admin(&srv.admin).await;
    // One reshard thread: the second job waits behind the first.
    let first = c
        .reshard(slow_request(&dir.path().join("a")))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let deadline = Instant::now() + Duration::from_secs(30);
    while c
        .get_job(pb::GetJobRequest {
            job_id: first.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .state()
        == JobState::Queued
    {
        assert!(Instant::now() < deadline, "the first job never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = c
        .reshard(slow_request(&dir.path().join("b")))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let queued = c
        .get_job(pb::GetJobRequest {
            job_id: second.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(queued.state(), JobState::Queued);
    // The queue holds one job: a third is refused.
    let e = c
        .reshard(slow_request(&dir.path().join("c")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("reshard_queue_jobs"), "{e:?}");
    for id in [&second, &first] {
        c.cancel_job(pb::GetJobRequest { job_id: id.clone() })
            .await
            .unwrap();
        let last = watch_to_end(&mut c, id).await.pop().unwrap();
        assert_eq!(last.state(), JobState::Cancelled, "{last:?}");
    }
    for d in ["a", "b"] {
        assert!(!dir.path().join(d).join("manifest.json").exists());
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_daemon_mid_reshard_keeps_the_old_version_and_a_rerun_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    slow_dataset(&src);
    let before = files(&src);
    let state = dir.path().join("state");
    let dataset = format!("d={}", src.display());
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--dataset",
        &dataset,
        "--state-dir",
        state.to_str().unwrap(),
        "--metrics-listen",
        "",
    ];
    let daemon = spawn_serve(&args, &[]);
    assert_eq!(
        daemon.lines.recv_timeout(Duration::from_secs(30)).unwrap(),
        "ready"
    );
    let want = digests(
        &fetch_all(&daemon.endpoint, request("d", 1, 4, 1, 0, 16, 6))
            .await
            .unwrap(),
    );
    let mut c = admin(&daemon.admin).await;
    let dest = dir.path().join("new");
    let req = slow_request(&dest);
    let id = c.reshard(req.clone()).await.unwrap().into_inner().job_id;
    // Kill once at least one shard is complete and the job is not finished.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = c
            .get_job(pb::GetJobRequest { job_id: id.clone() })
            .await
            .unwrap()
            .into_inner();
        assert!(
            matches!(job.state(), JobState::Queued | JobState::Running),
            "the job must still run when the daemon is killed: {job:?}"
        );
        if job.shards_done >= 2 {
            assert!(job.samples_done < job.samples_total);
            break;
        }
        assert!(Instant::now() < deadline, "the job made no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut child = daemon.child;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    assert!(
        !dest.join("manifest.json").exists(),
        "no manifest names the partial shards"
    );
    assert!(
        dest.join("sft-000000.tar.zst").exists(),
        "the killed job wrote shards"
    );
    assert_eq!(files(&src), before, "the old version is untouched");

    let daemon = spawn_serve(&args, &[]);
    assert_eq!(
        daemon.lines.recv_timeout(Duration::from_secs(30)).unwrap(),
        "ready"
    );
    let got = fetch_all(&daemon.endpoint, request("d", 1, 4, 1, 0, 16, 6))
        .await
        .unwrap();
    assert_eq!(digests(&got), want, "the old version still serves");
    let mut c = admin(&daemon.admin).await;
    let job = c
        .get_job(pb::GetJobRequest { job_id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.state(), JobState::Interrupted, "{job:?}");
    // While the name serves other content the job cannot be completed from it.
    let other = dir.path().join("other");
    write_dataset(
        &other,
        &all_samples(&small_synth(6, 1)),
        ShardTarget::Samples(4),
    );
    let register = |url: &Path| pb::RegisterDatasetRequest {
        name: "d".into(),
        url: url.display().to_string(),
    };
    c.register_dataset(register(&other)).await.unwrap();
    let e = c.reshard(req.clone()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains(&id), "{e:?}");
    c.register_dataset(register(&src)).await.unwrap();
    let resumed = c.reshard(req.clone()).await.unwrap().into_inner();
    assert_eq!(
        (resumed.job_id.as_str(), resumed.resumed),
        (id.as_str(), true)
    );
    let last = watch_to_end(&mut c, &id).await.pop().unwrap();
    assert_eq!(last.state(), JobState::Succeeded, "{last:?}");
    assert!(
        last.samples_resumed >= 3,
        "the shards completed before the kill were taken over: {last:?}"
    );
    assert!(last.samples_resumed < last.samples_total, "{last:?}");

    // The same request into a fresh destination, never interrupted.
    let clean = dir.path().join("clean");
    run_job(&mut c, slow_request(&clean)).await;
    let (resharded, uninterrupted) = (files(&dest), files(&clean));
    assert_eq!(
        resharded.keys().collect::<Vec<_>>(),
        uninterrupted.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &resharded {
        assert!(bytes == &uninterrupted[name], "{name} differs");
    }
    c.register_dataset(pb::RegisterDatasetRequest {
        name: "new".into(),
        url: dest.display().to_string(),
    })
    .await
    .unwrap();
    let mut child = daemon.child;
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cli_drives_every_rpc() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write_dataset(
        &src,
        &all_samples(&small_synth(12, 7)),
        ShardTarget::Samples(4),
    );
    let srv = server(&[("d", &src)], &dir.path().join("state")).await;
    let endpoint = srv.admin.clone();
    let dest = dir.path().join("cli");
    let run = move |args: Vec<String>| {
        let out = bin()
            .args(["admin", "--endpoint", &endpoint])
            .args(&args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let dest_s = dest.display().to_string();
    let (ok, out, err) = tokio::task::spawn_blocking({
        let run = run.clone();
        move || {
            run(vec![
                "reshard".into(),
                "--dataset".into(),
                "d".into(),
                "--dest".into(),
                dest_s,
                "--shard-samples".into(),
                "5".into(),
                "--activate".into(),
                "--watch".into(),
            ])
        }
    })
    .await
    .unwrap();
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("job-1 started") && out.contains("succeeded"),
        "{out}"
    );
    for (args, want) in [
        (vec!["list"], dest.display().to_string()),
        (vec!["jobs"], "job-1 succeeded".to_string()),
        (vec!["job", "job-1"], "12/12 samples".to_string()),
        (vec!["stats"], "pool: 2 workers".to_string()),
        (
            vec!["stats"],
            "of max_inflight_bytes 2147483648 in flight".to_string(),
        ),
        (vec!["gc", "--dry-run"], "would remove d".to_string()),
    ] {
        let r = run.clone();
        let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (ok, out, err) = tokio::task::spawn_blocking(move || r(a)).await.unwrap();
        assert!(ok && out.contains(&want), "{args:?}: {out}{err}");
    }
    let r = run.clone();
    let (ok, _, err) =
        tokio::task::spawn_blocking(move || r(vec!["cancel".into(), "job-1".into()]))
            .await
            .unwrap();
    assert!(!ok && err.contains("already finished"), "{err}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_takes_the_free_thread_budget_and_writes_what_one_thread_writes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let srv = slow_server(
        dir.path(),
        ServeConfig {
            reshard_threads: 3,
            ..Default::default()
        },
    )
    .await;
    let mut c = admin(&srv.admin).await;
    let request = |dest: &str| pb::ReshardRequest {
        level: 9,
        max_side: 200,
        transcode_edits: "qoi".into(),
        ..reshard_request("d", &dir.path().join(dest), 3, 0)
    };
    let first = c.reshard(request("a")).await.unwrap().into_inner().job_id;
    let deadline = Instant::now() + Duration::from_secs(30);
    let state = |c: &mut editfeed::transport::client::Admin, id: String| {
        let mut c = c.clone();
        async move {
            c.get_job(pb::GetJobRequest { job_id: id })
                .await
                .unwrap()
                .into_inner()
        }
    };
    while state(&mut c, first.clone()).await.state() == JobState::Queued {
        assert!(Instant::now() < deadline, "the first job never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The running job holds all three threads: a second one waits for them.
    let second = c.reshard(request("b")).await.unwrap().into_inner().job_id;
    let job = state(&mut c, first.clone()).await;
    if job.state() == JobState::Running {
        assert_eq!(
            state(&mut c, second.clone()).await.state(),
            JobState::Queued
        );
    }
    for id in [&first, &second] {
        let last = watch_to_end(&mut c, id).await.pop().unwrap();
        assert_eq!(last.state(), JobState::Succeeded, "{last:?}");
    }
    srv.stop().await;
    // The same reshard on one thread, offline, writes the same files.
    let one = dir.path().join("one");
    succeeds(
        bin()
            .args(["reshard", &src.display().to_string(), "--out"])
            .arg(&one)
            .args(["--shard-samples", "3", "--level", "9", "--max-side", "200"])
            .args(["--transcode-edits", "qoi", "--threads", "1"]),
    );
    assert_eq!(files(&dir.path().join("a")), files(&one));
    assert_eq!(files(&dir.path().join("b")), files(&one));
}
