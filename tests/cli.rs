//! The binary end to end: synth, inspect, verify, and the errors a user sees.

mod common;

use common::bin;

fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().expect("editfeed runs");
    assert!(
        out.status.success(),
        "{:?} failed: {}{}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn synth_inspect_verify() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("demo");
    let ds_arg = ds.to_str().unwrap();
    let out = run_ok(bin().args([
        "synth",
        "--out",
        ds_arg,
        "--samples",
        "10",
        "--scale",
        "0.1",
        "--seed",
        "7",
    ]));
    assert!(out.contains("10 samples"), "{out}");
    let out = run_ok(bin().args(["inspect", ds_arg]));
    for want in [
        "sft",
        "preference",
        "multi_turn",
        "edit types",
        "first samples",
        "turn 1:",
    ] {
        assert!(out.contains(want), "inspect lacks {want:?}: {out}");
    }
    let out = run_ok(bin().args(["verify", ds_arg]));
    assert!(out.contains("ok: version sha256:"), "{out}");

    // Same seed, same bytes: a second synth gives the same version.
    let again = dir.path().join("again");
    run_ok(bin().args([
        "synth",
        "--out",
        again.to_str().unwrap(),
        "--samples",
        "10",
        "--scale",
        "0.1",
        "--seed",
        "7",
    ]));
    let v = |p: &std::path::Path| {
        editfeed::dataset::Dataset::open(p)
            .unwrap()
            .manifest()
            .version
            .clone()
    };
    assert_eq!(v(&ds), v(&again));

    // A single foreign shard inspects as a stream.
    let shard = std::fs::read_dir(&ds)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("sft-000000.tar.zst"))
        .unwrap();
    let out = run_ok(bin().args(["inspect", shard.to_str().unwrap()]));
    assert!(out.contains("field src.jpg"), "{out}");
}

#[test]
fn verify_fails_with_the_sample_named_on_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    run_ok(bin().args([
        "synth",
        "--out",
        ds.to_str().unwrap(),
        "--samples",
        "5",
        "--scale",
        "0.1",
    ]));
    let shard = ds.join("multi_turn-000000.tar.zst");
    let mut bytes = std::fs::read(&shard).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x55;
    std::fs::write(&shard, &bytes).unwrap();
    let out = bin()
        .args(["verify", ds.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("problem: ") && text.contains("multi_turn-000000.tar.zst"),
        "{text}"
    );
    assert!(text.contains("sample 0000000"), "names the sample: {text}");
}

#[test]
fn a_missing_dataset_is_a_clear_error() {
    let out = bin()
        .args(["inspect", "/nonexistent/dataset"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/dataset/manifest.json"), "{err}");
}
