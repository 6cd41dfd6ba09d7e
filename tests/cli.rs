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

#[test]
fn plan_prints_steps_and_rank_keys_identically_in_separate_processes() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    let ds_arg = ds.to_str().unwrap();
    run_ok(bin().args([
        "synth",
        "--out",
        ds_arg,
        "--samples",
        "20",
        "--scale",
        "0.05",
    ]));
    let curriculum = dir.path().join("c.toml");
    std::fs::write(
        &curriculum,
        "[[curriculum]]\nuntil_step = 2\nweights = { sft = 1.0 }\n[[curriculum]]\nweights = { preference = 1.0 }\n",
    )
    .unwrap();
    let args = |seed: &str| {
        vec![
            "plan".to_string(),
            ds_arg.to_string(),
            "--seed".into(),
            seed.into(),
            "--global-batch".into(),
            "4".into(),
            "--world-size".into(),
            "2".into(),
            "--steps".into(),
            "4".into(),
            "--curriculum".into(),
            curriculum.to_str().unwrap().into(),
        ]
    };
    let a = run_ok(bin().args(args("5")));
    let b = run_ok(bin().args(args("5")));
    let c = run_ok(bin().args(args("6")));
    assert_eq!(a, b, "same seed, same plan, across processes");
    assert_ne!(a, c, "another seed, another order");
    let lines: Vec<&str> = a.lines().collect();
    assert_eq!(lines.len(), 12, "{a}");
    assert!(
        lines[0] == "step 0 sft" && lines[6] == "step 2 preference",
        "{a}"
    );
    assert!(
        lines[1].starts_with("  rank 0: ") && lines[1].split_whitespace().count() == 4,
        "{a}"
    );
    let out = bin()
        .args(["plan", ds_arg, "--global-batch", "4", "--world-size", "3"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("world_size 3"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn reshard_keeps_the_version_and_the_plan_whatever_the_shard_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    run_ok(
        bin()
            .args(["synth", "--out", &path("a"), "--samples", "18"])
            .args(["--scale", "0.05", "--shard-samples", "5"]),
    );
    let out = run_ok(
        bin()
            .args(["reshard", &path("a"), "--out", &path("b")])
            .args(["--shard-samples", "1", "--level", "9"]),
    );
    // "OUT: N samples in S shards, version NEW (source version OLD)"
    let versions = |out: &str| -> (String, String) {
        let v: Vec<String> = out
            .split("version ")
            .skip(1)
            .map(|v| v.split([' ', ')', '\n']).next().unwrap().to_string())
            .collect();
        assert_eq!(v.len(), 2, "{out}");
        (v[0].clone(), v[1].clone())
    };
    let (new, old) = versions(&out);
    assert_eq!(new, old, "{out}");
    let plan = |ds: &str| {
        run_ok(
            bin()
                .args(["plan", ds, "--seed", "3", "--global-batch", "4"])
                .args(["--world-size", "2", "--steps", "6"]),
        )
    };
    assert_eq!(plan(&path("a")), plan(&path("b")));
    run_ok(bin().args(["verify", &path("b")]));
    // Only one subset, shrunk: another version, still valid.
    let out = run_ok(
        bin()
            .args(["reshard", &path("a"), "--out", &path("c")])
            .args(["--subset", "sft", "--max-side", "32"]),
    );
    let (new, old) = versions(&out);
    assert_ne!(new, old, "{out}");
    run_ok(bin().args(["verify", &path("c")]));
    // A missing source names it.
    let bad = bin()
        .args(["reshard", &path("nope"), "--out", &path("d")])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nope"));
}

/// Kills a spawned daemon when the test ends, passed or failed.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_endpoint_flag_takes_host_port_without_a_scheme() {
    let data = common::synth_dataset(12, 3, 4);
    let dataset = format!("d={}", data.path().display());
    let served = common::spawn_serve(&["--listen", "127.0.0.1:0", "--dataset", &dataset], &[]);
    let _daemon = KillOnDrop(served.child);
    assert_eq!(
        served
            .lines
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap(),
        "ready"
    );
    let loader = served.endpoint.strip_prefix("http://").unwrap();
    let admin = served.admin.strip_prefix("http://").unwrap();
    let out = run_ok(bin().args([
        "fetch",
        "--endpoint",
        loader,
        "--dataset",
        "d",
        "--global-batch",
        "2",
        "--size",
        "16",
        "--steps",
        "2",
        "--hash",
    ]));
    assert_eq!(out.lines().count(), 3, "two batches and the cursor: {out}");
    let out = run_ok(bin().args(["admin", "--endpoint", admin, "list"]));
    assert!(out.contains('d'), "{out}");
    // A value that is no endpoint is named once, with what is wrong with it.
    for bad in ["ftp://127.0.0.1:1", "http://", "127.0.0.1:port"] {
        let out = bin()
            .args(["fetch", "--endpoint", bad, "--dataset", "d"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert_eq!(err.matches(&format!("{bad:?}")).count(), 1, "{err}");
        assert!(
            err.contains("is not host:port, http://host:port or https://host:port"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn a_second_daemon_on_the_admin_port_is_told_the_flag_key_and_port_zero() {
    let data = common::synth_dataset(12, 3, 4);
    let dataset = format!("d={}", data.path().display());
    let first = common::spawn_serve(&["--listen", "127.0.0.1:0", "--dataset", &dataset], &[]);
    let _first = KillOnDrop(first.child);
    let taken = first.admin.strip_prefix("http://").unwrap();
    let out = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", taken])
        .args(["--dataset", &dataset, "--metrics-listen", ""])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        &format!("cannot listen on {taken}") as &str,
        "--admin-listen",
        "config key admin_listen",
        "127.0.0.1:0",
        "admin listening on",
    ] {
        assert!(err.contains(want), "{want:?} missing from {err}");
    }
    // admin_listen = "127.0.0.1:0" in a config file: a free port, printed.
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nmetrics_listen = \"\"\n",
    )
    .unwrap();
    let mut cmd = bin();
    cmd.args(["serve", "--config"])
        .arg(config.path())
        .args(["--dataset", &dataset])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut second = KillOnDrop(cmd.spawn().unwrap());
    let mut stdout = std::io::BufReader::new(second.0.stdout.take().unwrap());
    let mut line = String::new();
    for _ in 0..2 {
        line.clear();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    }
    let port: u16 = line
        .trim()
        .strip_prefix("admin listening on 127.0.0.1:")
        .unwrap_or_else(|| panic!("{line:?}"))
        .parse()
        .unwrap();
    assert_ne!(port, 0);
    assert_ne!(format!("127.0.0.1:{port}"), taken);
}
