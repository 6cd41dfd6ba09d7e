//! Fixtures shared by the black-box tests: small synthetic datasets written by code.

#![allow(dead_code)]

use std::path::Path;

use editfeed::dataset::synth::{synth_sample, SynthOptions};
use editfeed::dataset::verify::{verify, VerifyOptions, VerifyReport};
use editfeed::dataset::writer::{DatasetWriter, ShardTarget, WriteOptions};
use editfeed::dataset::{Manifest, Sample, Subset};

/// Small synthetic options: `samples` over three subsets, images at 1/16 scale.
pub fn small_synth(samples: u64, seed: u64) -> SynthOptions {
    SynthOptions {
        samples,
        seed,
        scale: 0.0625,
        jpeg_quality: 85,
    }
}

/// Every sample of the options, in canonical order.
pub fn all_samples(opts: &SynthOptions) -> Vec<Sample> {
    opts.split()
        .iter()
        .flat_map(|&(s, n)| (0..n).map(move |i| synth_sample(opts, s, i)))
        .collect()
}

/// Writes `samples` into `root` with a shard target; returns the manifest.
pub fn write_dataset(root: &Path, samples: &[Sample], target: ShardTarget) -> Manifest {
    let mut w = DatasetWriter::create(
        root,
        WriteOptions {
            target,
            level: 3,
            compress_literals: false,
            overwrite: true,
        },
    )
    .unwrap();
    for s in samples {
        w.add(s).unwrap();
    }
    w.finish().unwrap()
}

/// A folder holding `samples` small synthetic samples of `seed`, `per_shard` to a shard.
pub fn synth_dataset(samples: u64, seed: u64, per_shard: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(
        dir.path(),
        &all_samples(&small_synth(samples, seed)),
        ShardTarget::Samples(per_shard),
    );
    dir
}

/// `samples` synthetic samples over the three subsets, `per_shard` to a shard, with
/// train/val/test splits (60/20/20) by rule, and the dataset opened.
pub fn split_dataset(
    samples: u64,
    per_shard: u64,
) -> (tempfile::TempDir, editfeed::dataset::Dataset) {
    use editfeed::dataset::splits::{SplitRule, SplitSource};
    let dir = tempfile::tempdir().unwrap();
    let rule = SplitRule::parse("seed=5,train=0.6,val=0.2,test=0.2").unwrap();
    let mut w = DatasetWriter::create(
        dir.path(),
        WriteOptions {
            target: ShardTarget::Samples(per_shard),
            level: 1,
            compress_literals: false,
            overwrite: true,
        },
    )
    .unwrap()
    .with_splits(Some(SplitSource::Rule(rule)));
    for s in all_samples(&small_synth(samples, 4)) {
        w.add(&s).unwrap();
    }
    w.finish().unwrap();
    let ds = editfeed::dataset::Dataset::open(dir.path()).unwrap();
    (dir, ds)
}

/// A folder holding the single-turn samples of `small_synth(10, 7)`, 4 to a shard, the
/// edit image of sample `broken` replaced by bytes that are not a PNG; and that
/// sample's key.
pub fn sft_dataset_with_broken_sample(broken: usize) -> (tempfile::TempDir, String) {
    use editfeed::dataset::sample::Role;
    let dir = tempfile::tempdir().unwrap();
    let mut samples: Vec<_> = all_samples(&small_synth(10, 7))
        .into_iter()
        .filter(|s| s.subset() == Subset::Sft)
        .collect();
    let key = samples[broken].key.clone();
    let img = samples[broken]
        .images
        .iter_mut()
        .find(|i| i.role == Role::Edit)
        .unwrap();
    img.bytes = bytes::Bytes::from_static(b"\x89PNG\r\n\x1a\nthis is not a png");
    write_dataset(dir.path(), &samples, ShardTarget::Samples(4));
    (dir, key)
}

/// The samples of one subset, in order.
pub fn of_subset(samples: &[Sample], subset: Subset) -> Vec<&Sample> {
    samples.iter().filter(|s| s.subset() == subset).collect()
}

/// The built `editfeed` binary.
pub fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_editfeed"))
}

/// Runs a command of the binary; panics with its output unless it succeeds.
pub fn succeeds(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An `editfeed serve` process started by [`spawn_serve`].
pub struct Spawned {
    /// The process.
    pub child: std::process::Child,
    /// Its Loader endpoint, `http://ADDR`.
    pub endpoint: String,
    /// Its Admin endpoint, `http://ADDR`.
    pub admin: String,
    /// Its stdout lines after the two address lines.
    pub lines: std::sync::mpsc::Receiver<String>,
}

/// Starts `editfeed serve` with `args` (and its Admin service on a free port).
pub fn spawn_serve(args: &[&str], env: &[(&str, &str)]) -> Spawned {
    use std::io::{BufRead, BufReader};
    use std::time::Duration;
    let mut cmd = bin();
    cmd.arg("serve")
        .args(["--admin-listen", "127.0.0.1:0"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    let address = |prefix: &str| {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("serve prints {prefix:?}"));
        let addr = line
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"));
        format!("http://{addr}")
    };
    let endpoint = address("listening on ");
    let admin = address("admin listening on ");
    Spawned {
        child,
        endpoint,
        admin,
        lines,
    }
}

/// A daemon running in-process on 127.0.0.1:0.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The Admin service, `http://127.0.0.1:PORT`.
    pub admin: String,
    /// The server's state (pool, registry, stream count).
    pub state: std::sync::Arc<editfeed::server::ServerState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a daemon serving `datasets` (name, folder) with `workers` threads and a
    /// prefetch depth.
    pub async fn start(datasets: &[(&str, &Path)], workers: usize, prefetch: usize) -> TestServer {
        let locations: Vec<(&str, String)> = datasets
            .iter()
            .map(|(name, path)| (*name, path.display().to_string()))
            .collect();
        let refs: Vec<(&str, &str)> = locations.iter().map(|(n, l)| (*n, l.as_str())).collect();
        TestServer::start_locations(&refs, workers, prefetch).await
    }

    /// Starts a daemon serving `datasets` (name, location: a folder or a URL such as
    /// `s3://bucket/prefix?endpoint=...`) with `workers` threads and a prefetch depth.
    pub async fn start_locations(
        datasets: &[(&str, &str)],
        workers: usize,
        prefetch: usize,
    ) -> TestServer {
        let mut config = editfeed::config::ServeConfig {
            listen: "127.0.0.1:0".into(),
            workers,
            prefetch_batches: prefetch,
            ..Default::default()
        };
        for (name, location) in datasets {
            config
                .datasets
                .insert(name.to_string(), location.to_string());
        }
        TestServer::start_config(config).await
    }

    /// Starts a daemon, with its Admin service, from a config (its listen addresses
    /// are replaced by 127.0.0.1:0).
    pub async fn start_config(mut config: editfeed::config::ServeConfig) -> TestServer {
        config.listen = "127.0.0.1:0".into();
        config.admin_listen = "127.0.0.1:0".into();
        config.validate().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = format!("http://{}", admin_listener.local_addr().unwrap());
        let state = editfeed::server::ServerState::new(config).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let s = state.clone();
        let handle = tokio::spawn(async move {
            let admin = tokio::spawn(editfeed::server::admin::serve_admin(
                admin_listener,
                s.clone(),
                std::future::pending(),
            ));
            editfeed::server::serve(listener, s, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
            admin.abort();
        });
        TestServer {
            endpoint,
            admin,
            state,
            stop: Some(tx),
            handle: Some(handle),
        }
    }

    /// Stops the daemon and waits for it.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.handle.take().unwrap().await;
    }
}

/// A stream request over `dataset` with a simple spec.
pub fn request(
    dataset: &str,
    seed: u64,
    global_batch: u32,
    world: u32,
    rank: u32,
    size: u32,
    batches: u64,
) -> editfeed::transport::proto::v1::StreamRequest {
    use editfeed::transport::proto::v1 as pb;
    pb::StreamRequest {
        dataset: dataset.into(),
        spec: Some(editfeed::transport::convert::spec_to_wire(
            &editfeed::plan::StreamSpec::new(seed, global_batch),
        )),
        rank,
        world_size: world,
        cursor: String::new(),
        output: Some(pb::OutputSpec {
            width: size,
            height: 0,
            format: pb::OutputFormat::Uint8Hwc as i32,
            buckets: vec![],
            ..Default::default()
        }),
        augment: None,
        max_batches: batches,
        job: String::new(),
        shm_probe: String::new(),
        ..Default::default()
    }
}

/// Every batch of a request.
pub async fn fetch_all(
    endpoint: &str,
    req: editfeed::transport::proto::v1::StreamRequest,
) -> Result<Vec<editfeed::transport::proto::v1::Batch>, tonic::Status> {
    let mut client = editfeed::transport::client::connect(endpoint)
        .await
        .unwrap();
    let mut stream = client.stream(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(b) = stream.message().await? {
        out.push(b);
    }
    Ok(out)
}

/// The batch digests of a stream.
pub fn digests(batches: &[editfeed::transport::proto::v1::Batch]) -> Vec<String> {
    batches
        .iter()
        .map(editfeed::transport::wire::batch_digest)
        .collect()
}

/// `verify` of checksums, index and frames on one thread, without decoding images.
pub fn verify_structure(ds: &editfeed::dataset::Dataset) -> VerifyReport {
    verify(
        ds,
        &VerifyOptions {
            decode_images: false,
            threads: 1,
        },
        &|_| {},
    )
}
