//! Who may use the daemon, over real gRPC on loopback: TLS end to end with a
//! certificate the test makes (openssl), the Admin bearer token, streams that name a
//! path instead of a registered dataset, the per-client stream limit and request
//! deadlines.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use editfeed::config::ServeConfig;
use editfeed::secret::Secret;
use editfeed::transport::client::{connect_admin_with, connect_with, ConnectOptions};
use editfeed::transport::proto::v1 as pb;
use tonic::Code;

fn dataset() -> tempfile::TempDir {
    synth_dataset(12, 21, 4)
}

fn config(data: &Path) -> ServeConfig {
    let mut c = ServeConfig {
        workers: 1,
        ..Default::default()
    };
    c.datasets.insert("d".into(), data.display().to_string());
    c
}

/// A test CA and a server certificate it signed for `localhost` and 127.0.0.1, made
/// by tests/support/make-test-certs.sh (openssl): (ca.pem, cert.pem, key.pem).
fn certificates(dir: &Path) -> (String, String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/make-test-certs.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .arg(dir)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = |name: &str| dir.join(name).display().to_string();
    (p("ca.pem"), p("cert.pem"), p("key.pem"))
}

fn https(endpoint: &str) -> String {
    endpoint.replace("http://", "https://")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_the_admin_token_work_end_to_end_and_keep_others_out() {
    let data = dataset();
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(certs.path());
    let mut c = config(data.path());
    c.tls_cert_file = cert;
    c.tls_key_file = key;
    c.admin_token = Secret::new("let-me-in".into());
    let secure = TestServer::start_config(c).await;
    let plain = TestServer::start(&[("d", data.path())], 1, 2).await;

    let trusted = ConnectOptions {
        ca_pem: Some(std::fs::read(&ca).unwrap()),
        server_name: Some("localhost".into()),
        ..Default::default()
    };
    // The same batches over TLS as over plaintext.
    let req = request("d", 4, 2, 1, 0, 32, 4);
    let mut client = connect_with(&https(&secure.endpoint), &trusted)
        .await
        .unwrap();
    let mut stream = client.stream(req.clone()).await.unwrap().into_inner();
    let mut over_tls = Vec::new();
    while let Some(b) = stream.message().await.unwrap() {
        over_tls.push(b);
    }
    let expected = fetch_all(&plain.endpoint, req.clone()).await.unwrap();
    assert_eq!(digests(&over_tls), digests(&expected));

    // A plaintext client, and a TLS client that does not trust the certificate, fail.
    let plaintext = match editfeed::transport::client::connect(&secure.endpoint).await {
        Ok(mut c) => c.stream(req.clone()).await.err(),
        Err(e) => Some(tonic::Status::unavailable(e.to_string())),
    };
    assert!(plaintext.is_some(), "plaintext reached a TLS daemon");
    assert!(
        connect_with(&https(&secure.endpoint), &ConnectOptions::default())
            .await
            .is_err(),
        "an untrusted certificate was accepted"
    );

    // Admin: no token and a wrong token are refused; the right one works.
    let admin = https(&secure.admin);
    for token in ["", "let-me-out"] {
        let opts = ConnectOptions {
            token: Secret::new(token.into()),
            ..trusted.clone()
        };
        let mut a = connect_admin_with(&admin, &opts).await.unwrap();
        let e = a
            .list_datasets(pb::ListDatasetsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{token:?}: {e:?}");
    }
    let opts = ConnectOptions {
        token: Secret::new("let-me-in".into()),
        ..trusted.clone()
    };
    let mut a = connect_admin_with(&admin, &opts).await.unwrap();
    let listed = a
        .list_datasets(pb::ListDatasetsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(format!("{listed:?}").contains("\"d\""), "{listed:?}");
    secure.stop().await;
    plain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_name_datasets_not_paths_and_clients_have_a_stream_limit() {
    let data = dataset();
    let mut c = config(data.path());
    c.max_streams_per_client = 2;
    let server = TestServer::start_config(c).await;
    for location in [
        data.path().display().to_string(),
        "s3://bucket/prefix".into(),
        "../d".into(),
        "file:///etc".into(),
    ] {
        let e = fetch_all(&server.endpoint, request(&location, 0, 2, 1, 0, 32, 1))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{location}: {e:?}");
        assert!(e.message().contains("never a location"), "{}", e.message());
    }

    // Two endless streams from this client fill its share; a third is refused.
    let mut client = editfeed::transport::client::connect(&server.endpoint)
        .await
        .unwrap();
    let mut open = Vec::new();
    for seed in 0..2 {
        let mut s = client
            .stream(request("d", seed, 2, 1, 0, 32, 0))
            .await
            .unwrap()
            .into_inner();
        s.message().await.unwrap().unwrap();
        open.push(s);
    }
    let e = fetch_all(&server.endpoint, request("d", 9, 2, 1, 0, 32, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message().contains("max_streams_per_client"),
        "{}",
        e.message()
    );
    // A slot comes back when a stream ends.
    drop(open.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match fetch_all(&server.endpoint, request("d", 9, 2, 1, 0, 32, 1)).await {
            Ok(b) => {
                assert_eq!(b.len(), 1);
                break;
            }
            Err(e) if e.code() == Code::ResourceExhausted => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the slot never came back"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    drop(open);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_deadline_ends_the_stream_and_frees_its_slot() {
    let data = dataset();
    let server = TestServer::start_config(config(data.path())).await;
    let mut client = editfeed::transport::client::connect(&server.endpoint)
        .await
        .unwrap();
    let mut req = tonic::Request::new(request("d", 0, 2, 1, 0, 32, 0));
    req.set_timeout(Duration::from_millis(700));
    let started = std::time::Instant::now();
    let mut stream = client.stream(req).await.unwrap().into_inner();
    let mut batches = 0;
    let status = loop {
        match stream.message().await {
            Ok(Some(_)) => batches += 1,
            Ok(None) => panic!("an endless stream ended"),
            Err(s) => break s,
        }
    };
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("deadline"), "{status:?}");
    assert!(batches > 0);
    assert!(started.elapsed() < Duration::from_secs(10));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server
        .state
        .streams
        .load(std::sync::atomic::Ordering::SeqCst)
        > 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream's slot was kept"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}
