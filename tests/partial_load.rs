//! One dataset that fails to load must not block the others: with `d=BAD` and
//! `ok=GOOD`, `ok` streams at once while `d` is retried, and `d` is reported with its
//! last error in `admin list`, in health (per-dataset service) and in metrics.

mod common;

use std::time::Duration;

use common::*;
use editfeed::config::ServeConfig;
use editfeed::transport::proto::v1 as pb;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dataset_does_not_block_the_others_and_is_reported() {
    let good = synth_dataset(24, 1, 8);
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(bad.path().join("manifest.json"), b"{ not json").unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = ServeConfig {
        listen: "127.0.0.1:0".into(),
        admin_listen: "127.0.0.1:0".into(),
        workers: 2,
        load_retry_seconds: 1,
        state_dir: state_dir.path().display().to_string(),
        ..Default::default()
    };
    config
        .datasets
        .insert("d".into(), bad.path().display().to_string());
    config
        .datasets
        .insert("ok".into(), good.path().display().to_string());
    config.validate().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = format!("http://{}", admin_listener.local_addr().unwrap());
    let state = editfeed::server::ServerState::unloaded(config).unwrap();
    tokio::spawn(editfeed::server::admin::serve_admin(
        admin_listener,
        state.clone(),
        std::future::pending(),
    ));
    tokio::spawn(editfeed::server::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));

    // `ok` streams although `d` keeps failing.
    let mut got = None;
    for _ in 0..100 {
        match fetch_all(&endpoint, request("ok", 7, 4, 1, 0, 16, 2)).await {
            Ok(b) => {
                got = Some(b);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(got.expect("ok never streamed").len(), 2);

    // `d` is refused with its own error, not a generic "still loading".
    let e = fetch_all(&endpoint, request("d", 7, 4, 1, 0, 16, 2))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert!(
        e.message().contains("dataset d") && e.message().contains("manifest"),
        "{e:?}"
    );

    // admin list names the failing one with its error.
    let mut a = editfeed::transport::client::connect_admin(&admin)
        .await
        .unwrap();
    let list = a
        .list_datasets(pb::ListDatasetsRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = list
        .datasets
        .iter()
        .map(|d| d.info.clone().unwrap().name)
        .collect();
    assert_eq!(names, vec!["ok"]);
    assert_eq!(list.failed.len(), 1, "{list:?}");
    assert_eq!(list.failed[0].name, "d");
    assert!(!list.failed[0].error.is_empty());

    // Health per dataset service.
    let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let status = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    let ok = health
        .check(status("editfeed.v1.Loader/ok"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.status, ServingStatus::Serving as i32);
    let d = health
        .check(status("editfeed.v1.Loader/d"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.status, ServingStatus::NotServing as i32);
}
