//! Shared-memory delivery over real gRPC on loopback: a client that shares the daemon's
//! folder gets the same batch bytes through files as through the messages, gives the
//! files back for reuse, and a client that does not give them back, or does not share
//! the folder, gets its batches in the messages.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use editfeed::transport::proto::v1 as pb;
use editfeed::transport::shared_memory::{take_files, Probe};

fn dataset() -> tempfile::TempDir {
    synth_dataset(40, 5, 8)
}

/// A folder for the shared files: on the tmpfs when there is one.
fn shm_folder() -> tempfile::TempDir {
    match Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").unwrap(),
        false => tempfile::tempdir().unwrap(),
    }
}

async fn server(data: &Path, shm: &Path) -> TestServer {
    let mut config = editfeed::config::ServeConfig {
        workers: 2,
        prefetch_batches: 2,
        shm_dir: shm.display().to_string(),
        ..Default::default()
    };
    config
        .datasets
        .insert("d".into(), data.display().to_string());
    TestServer::start_config(config).await
}

/// The batches of `req` as received, before any file is read.
async fn receive(endpoint: &str, req: pb::StreamRequest) -> Vec<pb::Batch> {
    fetch_all(endpoint, req).await.unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Waits until `dir` is empty (the daemon removes a stream's files as it ends).
async fn until_empty(dir: &Path) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = files_in(dir);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_through_shared_files_are_the_batches_in_the_messages() {
    let data = dataset();
    let shm = shm_folder();
    let server = server(data.path(), shm.path()).await;
    let pixels = request("d", 3, 4, 1, 0, 96, 12);
    let mut encoded = pixels.clone();
    encoded.output.as_mut().unwrap().format = pb::OutputFormat::Encoded as i32;
    // Encoded batches differ in length, so each takes a file of its own size.
    for (req, min_files, reused) in [(pixels, 12, true), (encoded, 3, false)] {
        let inline = receive(&server.endpoint, req.clone()).await;
        assert!(inline
            .iter()
            .all(|b| b.tensors.iter().all(|t| t.shm_file.is_empty())));

        let probe = Probe::create(shm.path()).unwrap();
        let mut shared_req = req.clone();
        shared_req.shm_probe = probe.name().to_string();
        let mut client = editfeed::transport::client::connect(&server.endpoint)
            .await
            .unwrap();
        let mut stream = client.stream(shared_req).await.unwrap().into_inner();
        // The daemon took the probe as proof that it shares the folder.
        assert!(!shm.path().join(probe.name()).exists());
        let mut shared = Vec::new();
        let mut in_files = 0;
        let mut names = std::collections::BTreeSet::new();
        while let Some(mut b) = stream.message().await.unwrap() {
            for t in &b.tensors {
                if t.shm_file.is_empty() {
                    assert!(
                        t.data.len() < editfeed::transport::shared_memory::MIN_FILE_BYTES,
                        "{}",
                        t.name
                    );
                } else {
                    assert!(t.data.is_empty());
                    assert_eq!(t.dtype, "uint8");
                    in_files += 1;
                    names.insert(t.shm_file.clone());
                }
            }
            take_files(&mut b, shm.path()).unwrap();
            shared.push(b);
        }
        let subsets: std::collections::BTreeSet<&str> =
            shared.iter().map(|b| b.subset.as_str()).collect();
        assert!(subsets.len() >= 2, "{subsets:?}");
        assert!(in_files >= min_files, "{in_files} tensors came as files");
        // Files given back are written again for later batches.
        assert!(
            !reused || names.len() < in_files,
            "{} files for {in_files} tensors",
            names.len()
        );
        assert_eq!(digests(&shared), digests(&inline));
        assert_eq!(until_empty(shm.path()).await, Vec::<String>::new());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_its_files_gets_the_rest_in_the_messages() {
    let data = dataset();
    let shm = shm_folder();
    let server = server(data.path(), shm.path()).await;
    let req = request("d", 8, 4, 1, 0, 128, 16);
    let inline = receive(&server.endpoint, req.clone()).await;

    let probe = Probe::create(shm.path()).unwrap();
    let mut kept_req = req.clone();
    kept_req.shm_probe = probe.name().to_string();
    let mut client = editfeed::transport::client::connect(&server.endpoint)
        .await
        .unwrap();
    let mut stream = client.stream(kept_req).await.unwrap().into_inner();
    let mut kept = Vec::new();
    let mut from_files = 0;
    let mut in_messages = 0;
    while let Some(mut b) = stream.message().await.unwrap() {
        // Read the files but never give them back.
        for t in b.tensors.iter_mut() {
            if t.shm_file.is_empty() {
                in_messages +=
                    (t.data.len() >= editfeed::transport::shared_memory::MIN_FILE_BYTES) as usize;
            } else {
                t.data = std::fs::read(shm.path().join(&t.shm_file)).unwrap().into();
                t.shm_file.clear();
                from_files += 1;
            }
        }
        kept.push(b);
    }
    // (prefetch 2 + 4) batches of at most 3 image tensors.
    let files = files_in(shm.path());
    assert!(files.len() <= 18, "{files:?}");
    assert!(
        from_files > 0 && in_messages > 0,
        "{from_files} {in_messages}"
    );
    assert_eq!(digests(&kept), digests(&inline));
    server.stop().await;
    // The daemon removes what is left when it stops.
    assert_eq!(files_in(shm.path()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_the_daemon_cannot_see_or_a_bad_name_keeps_tensors_in_the_messages() {
    let data = dataset();
    let shm = shm_folder();
    let elsewhere = shm_folder();
    let server = server(data.path(), shm.path()).await;
    let probe = Probe::create(elsewhere.path()).unwrap();
    let mut req = request("d", 1, 4, 1, 0, 128, 3);
    req.shm_probe = probe.name().to_string();
    let batches = receive(&server.endpoint, req.clone()).await;
    assert_eq!(batches.len(), 3);
    assert!(batches
        .iter()
        .all(|b| b.tensors.iter().all(|t| t.shm_file.is_empty())));
    assert!(elsewhere.path().join(probe.name()).exists());
    assert!(files_in(shm.path()).is_empty());

    req.shm_probe = "../escape".into();
    let err = fetch_all(&server.endpoint, req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("shm_probe"), "{}", err.message());
    server.stop().await;
}
