//! Packing at dataset scale, black-box through the `editfeed` binary on a Pico-Banana
//! fixture written by code: any thread count writes the same bytes (pack pico-banana,
//! pack webdataset, reshard); a pack split in parts and merged has the single pack's
//! samples, order and version; a pack killed with SIGKILL resumes to the same dataset;
//! a pack read from an S3 root (moto) with sources from an S3 prefix equals the same
//! pack from local folders.

mod common;
#[path = "support/pico.rs"]
mod pico;
#[path = "support/s3.rs"]
mod s3;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{bin, succeeds};
use editfeed::dataset::{Dataset, Subset};
use pico::{files, write_pico, Pico};

/// Runs the binary; panics with its output unless it succeeds.
fn run(args: &[String]) -> Output {
    succeeds(bin().args(args))
}

/// Runs the binary, expecting it to fail; returns stderr.
fn fails(args: &[String]) -> String {
    let out = bin().args(args).output().unwrap();
    assert!(
        !out.status.success(),
        "editfeed {} succeeded",
        args.join(" ")
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn strs(a: &[&str]) -> Vec<String> {
    a.iter().map(|x| x.to_string()).collect()
}

/// `pack pico-banana` of the fixture into `out` with extra flags.
fn pack(p: &Pico, out: &Path, extra: &[&str]) -> Output {
    let mut args = p.args();
    args.extend(strs(&["--out", &s(out), "--shard-samples", "5"]));
    args.extend(strs(extra));
    run(&args)
}

/// Every sample of a dataset in canonical order: (subset, key, content digest).
fn samples(ds: &Path) -> Vec<(Subset, String, [u8; 32])> {
    let ds = Dataset::open(ds).unwrap();
    let mut out = Vec::new();
    for subset in ds.subsets() {
        for i in 0..ds.len(subset) {
            let raw = ds.read_raw(subset, i).unwrap();
            out.push((subset, raw.key.clone(), raw.digest()));
        }
    }
    out
}

fn manifest(ds: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(ds.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn any_thread_count_writes_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_pico(dir.path(), [40, 12, 10], 64);
    let one = dir.path().join("t1");
    pack(&p, &one, &["--threads", "1"]);
    let want = files(&one);
    assert!(want.len() > 10, "{:?}", want.keys());
    // The bad rows were skipped and said why.
    let report: serde_json::Value = serde_json::from_slice(&want["import-report.json"]).unwrap();
    let reasons: BTreeMap<String, u64> =
        serde_json::from_value(report["skipped_by_reason"].clone()).unwrap();
    assert_eq!(
        reasons,
        BTreeMap::from([
            ("duplicate_output".to_string(), 1),
            ("missing_edit_file".to_string(), 1),
            ("undecodable_image".to_string(), 1),
            ("unresolved_source".to_string(), 1),
        ])
    );
    for threads in ["2", "4"] {
        let out = dir.path().join(format!("t{threads}"));
        pack(&p, &out, &["--threads", threads]);
        assert_eq!(files(&out), want, "{threads} threads");
    }
    // With a transcode, and a memory bound smaller than one sample.
    let q1 = dir.path().join("q1");
    pack(&p, &q1, &["--threads", "1", "--transcode-edits", "qoi"]);
    let q3 = dir.path().join("q3");
    pack(
        &p,
        &q3,
        &[
            "--threads",
            "3",
            "--transcode-edits",
            "qoi",
            "--max-inflight-bytes",
            "1",
        ],
    );
    assert_eq!(files(&q3), files(&q1));
    assert_ne!(manifest(&q1)["version"], manifest(&one)["version"]);

    // pack webdataset over the pack's own shards, and reshard with a transcode.
    let shards: Vec<String> = manifest(&one)["subsets"]["sft"]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|sh| s(&one.join(sh["path"].as_str().unwrap())))
        .collect();
    let wds = |threads: &str| {
        let out = dir.path().join(format!("wds{threads}"));
        let mut args = strs(&["pack", "webdataset"]);
        args.extend(shards.iter().cloned());
        args.extend(strs(&[
            "--subset",
            "sft",
            "--transcode-edits",
            "qoi",
            "--shard-samples",
            "7",
            "--threads",
            threads,
            "--out",
            &s(&out),
        ]));
        run(&args);
        files(&out)
    };
    assert_eq!(wds("3"), wds("1"));
    let reshard = |threads: &str| {
        let out = dir.path().join(format!("re{threads}"));
        run(&strs(&[
            "reshard",
            &s(&one),
            "--out",
            &s(&out),
            "--shard-samples",
            "3",
            "--transcode-edits",
            "ppm",
            "--threads",
            threads,
        ]));
        files(&out)
    };
    assert_eq!(reshard("4"), reshard("1"));
}

#[test]
fn parts_merged_are_the_single_pack() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_pico(dir.path(), [30, 9, 8], 48);
    let single = dir.path().join("single");
    pack(&p, &single, &["--threads", "2"]);
    let merged = dir.path().join("merged");
    let part = |i: u32| merged.join(format!("part-{i}"));
    for i in [2, 0, 1] {
        pack(
            &p,
            &part(i),
            &["--part", &format!("{i}/3"), "--threads", "2"],
        );
        assert!(!part(i).join("manifest.json").exists());
    }
    let merge = |parts: &[PathBuf], extra: &[&str]| {
        let mut args = strs(&["manifest", "merge"]);
        args.extend(parts.iter().map(|p| s(p)));
        args.extend(strs(&["--out", &s(&merged)]));
        args.extend(strs(extra));
        args
    };
    let all = [part(1), part(0), part(2)];
    // Refusals first, each naming the part.
    let err = fails(&merge(&all[..2], &[]));
    assert!(err.contains("part 2 of 3 is missing"), "{err}");
    let err = fails(&merge(&[part(0), part(1), part(2), part(1)], &[]));
    assert!(err.contains("are both part 1 of 3"), "{err}");
    let other = dir.path().join("merged/other");
    pack(&p, &other, &["--part", "2/3", "--level", "5"]);
    let err = fails(&merge(&[part(0), part(1), other.clone()], &[]));
    assert!(
        err.contains("does not belong with part") && err.contains("other options"),
        "{err}"
    );
    let err = fails(&strs(&[
        "manifest",
        "merge",
        &s(&part(0)),
        "--out",
        &s(&single),
    ]));
    assert!(err.contains("is not inside"), "{err}");

    // A retried pod of a finished part (--resume) finds its record and packs nothing.
    let shard = part(1).join("sft-000000.tar.zst");
    let written = std::fs::metadata(&shard).unwrap().modified().unwrap();
    pack(
        &p,
        &part(1),
        &["--part", "1/3", "--threads", "2", "--resume"],
    );
    assert_eq!(
        std::fs::metadata(&shard).unwrap().modified().unwrap(),
        written
    );

    let out = run(&merge(&all, &[]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (m, s1) = (manifest(&merged), manifest(&single));
    assert_eq!(m["version"], s1["version"], "{stdout}");
    for subset in ["sft", "preference", "multi_turn"] {
        for field in ["samples", "content_sha256", "max_turns"] {
            assert_eq!(m["subsets"][subset][field], s1["subsets"][subset][field]);
        }
    }
    assert_eq!(samples(&merged), samples(&single));
    let report = |d: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(d.join("import-report.json")).unwrap()).unwrap()
    };
    assert_eq!(report(&merged), report(&single));
    // The merged dataset verifies: every shard and index checks out from its part.
    run(&strs(&["verify", &s(&merged)]));
}

#[test]
fn a_pack_killed_mid_way_resumes_to_the_same_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_pico(dir.path(), [150, 30, 30], 160);
    let flags = ["--threads", "1", "--transcode-edits", "qoi"];
    let whole = dir.path().join("whole");
    pack(&p, &whole, &flags);
    let out = dir.path().join("killed");
    let mut args = p.args();
    args.extend(strs(&["--out", &s(&out), "--shard-samples", "5"]));
    args.extend(strs(&flags));
    let mut child = bin().args(&args).spawn().unwrap();
    let log = out.join("pack-progress.json");
    let started = Instant::now();
    let logged = |at: &Path| -> usize {
        std::fs::read(at)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map_or(0, |v| v["shards"].as_array().map_or(0, Vec::len))
    };
    while logged(&log) < 4 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pack ended before it could be killed"
        );
        assert!(started.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!out.join("manifest.json").exists());
    let first = out.join("sft-000000.tar.zst");
    let mtime = || std::fs::metadata(&first).unwrap().modified().unwrap();
    let before = mtime();
    let mut resumed = args.clone();
    resumed.push("--resume".into());
    run(&resumed);
    assert_eq!(
        mtime(),
        before,
        "the intact first shard was kept, not written again"
    );
    assert!(
        !log.exists(),
        "the log is removed once the manifest is written"
    );
    assert_eq!(files(&out), files(&whole));
    // A resume with other options is refused, naming the log.
    let again = dir.path().join("again");
    let mut a = p.args();
    a.extend(strs(&["--out", &s(&again), "--shard-samples", "5"]));
    let mut child = bin().args(&a).spawn().unwrap();
    while logged(&again.join("pack-progress.json")) < 1 {
        assert!(child.try_wait().unwrap().is_none(), "ended too soon");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    a.extend(strs(&["--resume", "--transcode-edits", "qoi"]));
    let err = fails(&a);
    assert!(
        err.contains("pack-progress.json") && err.contains("other input or options"),
        "{err}"
    );
}

#[test]
fn a_pack_from_s3_equals_the_same_pack_from_local_folders() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_pico(dir.path(), [20, 6, 5], 48);
    let local = dir.path().join("local");
    pack(&p, &local, &["--threads", "2"]);
    // The root and the Open Images folder in a bucket, keyed like the folders.
    let bucket = s3::bucket("pico");
    let store = |prefix: &str| {
        let url = s3::s3_url(&bucket, prefix, &s3::moto().endpoint);
        editfeed::store::Store::open(
            &editfeed::store::Location::parse(&url).unwrap(),
            &s3::s3_config(),
        )
        .unwrap()
    };
    for (folder, prefix) in [(&p.root, "pico"), (&p.open_images, "openimages")] {
        let st = store(prefix);
        for (name, bytes) in files(folder) {
            st.put(&name, bytes.into()).unwrap();
        }
    }
    let remote = dir.path().join("remote");
    let args = strs(&[
        "pack",
        "pico-banana",
        "--root",
        &format!("s3://{bucket}/pico"),
        "--source-dir",
        &s(&p.sources),
        "--source-map",
        &s(&p.map),
        "--source-images",
        &format!("s3://{bucket}/openimages"),
        "--out",
        &s(&remote),
        "--shard-samples",
        "5",
        "--threads",
        "2",
    ]);
    succeeds(s3::moto_env(bin().args(&args)));
    let (mut a, mut b) = (files(&local), files(&remote));
    // The reports name the folders they read (paths or URLs); everything else is equal.
    let (ra, rb) = (
        a.remove("import-report.json").unwrap(),
        b.remove("import-report.json").unwrap(),
    );
    assert_eq!(a, b);
    let reasons = |r: &[u8]| {
        let v: serde_json::Value = serde_json::from_slice(r).unwrap();
        v["skipped_by_reason"].clone()
    };
    assert_eq!(reasons(&ra), reasons(&rb));
}
