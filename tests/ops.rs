//! Operations, black box against the real binary: gRPC health through loading, serving
//! and draining; SIGTERM mid-stream gives a clean end and exit 0; Prometheus metrics;
//! `config check`.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use editfeed::dataset::writer::ShardTarget;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

async fn health(endpoint: &str) -> Option<ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .ok()?
        .connect()
        .await
        .ok()?;
    let mut client = HealthClient::new(channel);
    let resp = client
        .check(HealthCheckRequest {
            service: "editfeed.v1.Loader".into(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(resp.into_inner().status).ok()
}

async fn wait_for(endpoint: &str, want: ServingStatus) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while health(endpoint).await != Some(want) {
        assert!(Instant::now() < deadline, "health never became {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sigterm(child: &Child) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the daemon did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_before_load_and_while_draining() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    let dataset = format!("d={}", ds.display());
    let Spawned {
        mut child,
        endpoint,
        ..
    } = spawn_serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--dataset",
            &dataset,
            "--metrics-listen",
            "",
            "--drain-seconds",
            "20",
        ],
        &[("EDITFEED_LOAD_RETRY_SECONDS", "1")],
    );
    // The dataset does not exist yet: listening, but not serving.
    wait_for(&endpoint, ServingStatus::NotServing).await;
    let refused = fetch_all(&endpoint, request("d", 0, 2, 1, 0, 16, 1))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    write_dataset(
        &ds,
        &all_samples(&small_synth(10, 1)),
        ShardTarget::Samples(4),
    );
    wait_for(&endpoint, ServingStatus::Serving).await;

    // A stream in flight when SIGTERM arrives finishes; health says NOT_SERVING meanwhile.
    // Its 40 batches (30 MB at 256 px) outgrow the HTTP/2 window, so it cannot be sent
    // in full before this client reads: the drain really waits for it.
    let mut client = editfeed::transport::client::connect(&endpoint)
        .await
        .unwrap();
    let mut stream = client
        .stream(request("d", 0, 2, 1, 0, 256, 40))
        .await
        .unwrap()
        .into_inner();
    let mut got = vec![stream.message().await.unwrap().unwrap()];
    sigterm(&child);
    wait_for(&endpoint, ServingStatus::NotServing).await;
    while let Some(b) = stream.message().await.unwrap() {
        got.push(b);
    }
    assert_eq!(
        got.len(),
        40,
        "the in-flight stream finished during the drain"
    );
    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(20)))
            .await
            .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_ends_cleanly_and_exits_zero() {
    sigterm_mid_stream(16, Duration::ZERO).await;
}

/// The client stops reading through the drain period: the flow-control windows and the
/// stream's response channel are full when it ends, and the error still comes, after
/// the batches already queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_stream_of_a_client_that_is_behind() {
    sigterm_mid_stream(512, Duration::from_millis(1500)).await;
}

/// Streams an endless stream of `size` px batches, takes one, sends SIGTERM, waits
/// `behind` without reading (the drain period is 1 s), then reads to the end: the stream
/// must end with UNAVAILABLE "shutting down" and the daemon exit 0.
async fn sigterm_mid_stream(size: u32, behind: Duration) {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(
        dir.path(),
        &all_samples(&small_synth(10, 2)),
        ShardTarget::Samples(4),
    );
    let dataset = format!("d={}", dir.path().display());
    let Spawned {
        mut child,
        endpoint,
        lines,
        ..
    } = spawn_serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--dataset",
            &dataset,
            "--metrics-listen",
            "",
            "--drain-seconds",
            "1",
        ],
        &[],
    );
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(20)).unwrap(),
        "ready"
    );
    let mut client = editfeed::transport::client::connect(&endpoint)
        .await
        .unwrap();
    // An endless stream: it cannot finish within the drain period.
    let mut stream = client
        .stream(request("d", 0, 2, 1, 0, size, 0))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    sigterm(&child);
    tokio::time::sleep(behind).await;
    let mut last = first;
    let end = loop {
        match stream.message().await {
            Ok(Some(b)) => last = b,
            Ok(None) => break None,
            Err(s) => break Some(s),
        }
    };
    let status = end.expect("an endless stream is told to move on");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("shutting down"), "{status:?}");
    assert!(
        !last.cursor.is_empty(),
        "the last batch carries the cursor to resume from"
    );
    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(20)))
            .await
            .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_in_prometheus_format() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(
        dir.path(),
        &all_samples(&small_synth(10, 3)),
        ShardTarget::Samples(4),
    );
    let dataset = format!("d={}", dir.path().display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let Spawned {
        mut child,
        endpoint,
        lines,
        ..
    } = spawn_serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--dataset",
            &dataset,
            "--metrics-listen",
            &metrics_addr,
        ],
        &[],
    );
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(20)).unwrap(),
        "ready"
    );
    let mut req = request("d", 0, 2, 1, 0, 16, 3);
    req.job = "metrics-test".into();
    fetch_all(&endpoint, req).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await; // one pool-gauge tick
    let body = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(metrics_addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    for want in [
        "editfeed_batches_sent_total{subset=",
        "editfeed_stream_batches_total{training_job=\"metrics-test\"} 3",
        "editfeed_stage_seconds_bucket{stage=\"decode_augment\"",
        "editfeed_stage_seconds_bucket{stage=\"send\"",
        "editfeed_active_streams",
        "editfeed_pool_workers",
        "editfeed_store_read_bytes_total{store=\"file\"}",
    ] {
        assert!(
            body.contains(want),
            "{want:?} missing from /metrics:\n{body}"
        );
    }
    sigterm(&child);
    wait_exit(&mut child, Duration::from_secs(20));
    // promtool's lint of the exposition format; scripts/test.sh always provides it.
    match std::env::var("PROMTOOL") {
        Ok(promtool) if !promtool.is_empty() => {
            let text = body
                .split_once("\r\n\r\n")
                .map_or(body.as_str(), |(_, b)| b)
                .to_string();
            let mut check = std::process::Command::new(&promtool)
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("PROMTOOL runs");
            use std::io::Write;
            check
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = check.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        _ => eprintln!("PROMTOOL not set: /metrics not linted (scripts/test.sh sets it)"),
    }
}

#[test]
fn config_check_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "listen = \"0.0.0.0:50051\"\nworkers = 2\n[datasets]\npico = \"/data/pico\"\n",
    )
    .unwrap();
    let out = bin()
        .args(["config", "check", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = \"0.0.0.0:50051\"\nprefetch_batchs = 2\n").unwrap();
    let out = bin()
        .args(["config", "check", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("prefetch_batchs") && err.contains("bad.toml"),
        "{err}"
    );
    let out = bin()
        .args(["config", "check", good.to_str().unwrap()])
        .env("EDITFEED_WORKERS", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("workers"));
}
