//! Black-box tests of shards and datasets: round trips, random access against streaming,
//! interoperability with `zstd -dc | tar t`, layout independence of the version,
//! corruption and interrupted writes.

mod common;

use std::process::Command;

use common::*;
use editfeed::dataset::manifest::MANIFEST_FILE;
use editfeed::dataset::verify::{verify, VerifyOptions};
use editfeed::dataset::writer::{DatasetWriter, ShardTarget, WriteOptions};
use editfeed::dataset::{Dataset, Subset};

#[test]
fn write_then_read_round_trips_all_three_subsets() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_synth(30, 1);
    let samples = all_samples(&opts);
    let manifest = write_dataset(dir.path(), &samples, ShardTarget::Samples(4));
    assert_eq!(manifest.subsets.len(), 3);
    let ds = Dataset::open(dir.path()).unwrap();
    for subset in Subset::ALL {
        let expected = of_subset(&samples, subset);
        assert_eq!(ds.len(subset), expected.len() as u64);
        assert!(
            ds.shards(subset).unwrap().len() > 1,
            "{subset} should span shards"
        );
        for (i, s) in expected.iter().enumerate() {
            let got = ds.read_sample(subset, i as u64).unwrap();
            assert!(&got == *s, "{subset} #{i} differs after the round trip");
        }
    }
}

#[test]
fn random_access_equals_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let samples = all_samples(&small_synth(12, 2));
    write_dataset(dir.path(), &samples, ShardTarget::Bytes(20_000));
    let ds = Dataset::open(dir.path()).unwrap();
    for subset in ds.subsets() {
        let mut streamed = Vec::new();
        for shard in 0..ds.shards(subset).unwrap().len() {
            ds.stream_shard(subset, shard, |raw| {
                streamed.push(raw);
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(streamed.len() as u64, ds.len(subset));
        for (i, raw) in streamed.into_iter().enumerate() {
            assert_eq!(ds.read_raw(subset, i as u64).unwrap(), raw);
        }
    }
}

#[test]
fn zstd_cli_and_tar_list_the_same_members() {
    let dir = tempfile::tempdir().unwrap();
    let samples = all_samples(&small_synth(6, 3));
    let manifest = write_dataset(dir.path(), &samples, ShardTarget::Samples(100));
    let shard = &manifest.subsets[&Subset::Preference].shards[0].path;
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc {shard} | tar t"))
        .current_dir(dir.path())
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "zstd -dc | tar t failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let expected: Vec<String> = of_subset(&samples, Subset::Preference)
        .iter()
        .flat_map(|s| {
            s.to_members()
                .into_iter()
                .map(|(f, _)| format!("{}.{f}", s.key))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(listed, expected);
}

#[test]
fn version_is_a_content_hash_independent_of_layout() {
    let samples = all_samples(&small_synth(10, 4));
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let ma = write_dataset(a.path(), &samples, ShardTarget::Samples(1));
    let mb = write_dataset(b.path(), &samples, ShardTarget::Samples(1000));
    assert_eq!(ma.version, mb.version);
    assert_ne!(
        ma.subsets[&Subset::Sft].shards.len(),
        mb.subsets[&Subset::Sft].shards.len()
    );
    let mut changed = samples.clone();
    changed[0].meta.text.push('!');
    let mc = write_dataset(c.path(), &changed, ShardTarget::Samples(1));
    assert_ne!(ma.version, mc.version);
}

#[test]
fn verify_passes_a_good_dataset_and_names_a_corrupt_sample() {
    let dir = tempfile::tempdir().unwrap();
    let samples = all_samples(&small_synth(9, 5));
    let manifest = write_dataset(dir.path(), &samples, ShardTarget::Samples(3));
    let ds = Dataset::open(dir.path()).unwrap();
    let opts = VerifyOptions {
        decode_images: true,
        threads: 2,
    };
    let report = verify(&ds, &opts, &|_| {});
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.samples, 9);

    // Corrupt the second sample of the first sft shard.
    let shard = &manifest.subsets[&Subset::Sft].shards[0];
    let index = ds.index(Subset::Sft, 0).unwrap();
    let victim = &index.entries[1];
    let path = dir.path().join(&shard.path);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = (victim.offset + victim.frame_len as u64 / 2) as usize;
    bytes[mid] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();

    let ds = Dataset::open(dir.path()).unwrap();
    let err = match ds.read_sample(Subset::Sft, 1) {
        Ok(_) => panic!("a corrupt frame was read without error"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&shard.path), "error names the shard: {err}");
    assert!(
        err.contains(&victim.offset.to_string()),
        "error names the offset: {err}"
    );
    assert!(
        ds.read_sample(Subset::Sft, 0).is_ok(),
        "other samples still read"
    );
    let report = verify(&ds, &opts, &|_| {});
    assert!(
        report.problems.iter().any(|p| p.contains(&victim.key)),
        "{:?}",
        report.problems
    );
    assert!(
        report.problems.iter().any(|p| p.contains("sha256")),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_truncated_shard_is_an_error_naming_shard_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let samples = all_samples(&small_synth(6, 6));
    let manifest = write_dataset(dir.path(), &samples, ShardTarget::Samples(100));
    let shard = &manifest.subsets[&Subset::Sft].shards[0];
    let path = dir.path().join(&shard.path);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    let last = ds.len(Subset::Sft) - 1;
    let err = ds.read_sample(Subset::Sft, last).unwrap_err().to_string();
    assert!(err.contains(&shard.path) && err.contains("offset"), "{err}");
    let err = ds
        .stream_shard(Subset::Sft, 0, |_| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&shard.path), "{err}");
}

#[test]
fn zstd_fast_levels_write_the_same_dataset_and_bad_levels_are_named() {
    let samples = all_samples(&small_synth(6, 5));
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let default = write_dataset(a.path(), &samples, ShardTarget::Samples(3));
    let mut w = DatasetWriter::create(
        b.path(),
        WriteOptions {
            target: ShardTarget::Samples(3),
            level: -1,
            ..WriteOptions::default()
        },
    )
    .unwrap();
    for s in &samples {
        w.add(s).unwrap();
    }
    let fast = w.finish().unwrap();
    assert_eq!(fast.version, default.version);
    let ds = Dataset::open(b.path()).unwrap();
    for (i, s) in of_subset(&samples, Subset::Sft).into_iter().enumerate() {
        assert_eq!(&ds.read_sample(Subset::Sft, i as u64).unwrap(), s);
    }
    for level in [0, -131073, 23] {
        let e = DatasetWriter::create(
            tempfile::tempdir().unwrap().path(),
            WriteOptions {
                level,
                ..WriteOptions::default()
            },
        )
        .err()
        .unwrap();
        assert!(
            e.to_string().contains(&format!("zstd level {level} ")),
            "{e}"
        );
    }
}

#[test]
fn an_interrupted_write_leaves_no_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let samples = all_samples(&small_synth(6, 7));
    write_dataset(dir.path(), &samples, ShardTarget::Samples(2));
    assert!(dir.path().join(MANIFEST_FILE).exists());
    // Refuses to overwrite by default.
    let e = DatasetWriter::create(dir.path(), WriteOptions::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("--overwrite"), "{e}");
    // A rewrite that dies before finish() leaves no manifest behind.
    let mut w = DatasetWriter::create(
        dir.path(),
        WriteOptions {
            overwrite: true,
            ..WriteOptions::default()
        },
    )
    .unwrap();
    w.add(&samples[0]).unwrap();
    drop(w);
    assert!(!dir.path().join(MANIFEST_FILE).exists());
    assert!(Dataset::open(dir.path()).is_err());
}

#[test]
fn a_manifest_with_wrong_counts_or_unknown_keys_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(
        dir.path(),
        &all_samples(&small_synth(6, 8)),
        ShardTarget::Samples(2),
    );
    let path = dir.path().join(MANIFEST_FILE);
    let good = std::fs::read_to_string(&path).unwrap();
    let bad_count = good.replacen("\"samples\": 2", "\"samples\": 3", 1);
    std::fs::write(&path, &bad_count).unwrap();
    let e = Dataset::open(dir.path()).err().unwrap().to_string();
    assert!(e.contains("manifest.json") && e.contains("samples"), "{e}");
    let unknown = good.replacen("\"created_by\"", "\"created_byy\"", 1);
    std::fs::write(&path, &unknown).unwrap();
    let e = Dataset::open(dir.path()).err().unwrap().to_string();
    assert!(e.contains("created_byy"), "{e}");
    let escape = good.replacen(
        "\"path\": \"sft-000000.tar.zst\"",
        "\"path\": \"../sft-000000.tar.zst\"",
        1,
    );
    std::fs::write(&path, &escape).unwrap();
    let e = Dataset::open(dir.path()).err().unwrap().to_string();
    assert!(e.contains("relative path"), "{e}");
}

#[test]
fn duplicate_keys_in_a_subset_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let samples = all_samples(&small_synth(4, 9));
    let mut w = DatasetWriter::create(dir.path(), WriteOptions::default()).unwrap();
    w.add(&samples[0]).unwrap();
    let e = w.add(&samples[0]).unwrap_err().to_string();
    assert!(
        e.contains("duplicate") && e.contains(&samples[0].key),
        "{e}"
    );
}

#[test]
fn verify_names_every_sample_a_truncated_shard_lost() {
    let dir = tempfile::tempdir().unwrap();
    let samples = all_samples(&small_synth(30, 5));
    let manifest = write_dataset(dir.path(), &samples, ShardTarget::Samples(1000));
    let ds = Dataset::open(dir.path()).unwrap();
    let index = ds.index(Subset::Sft, 0).unwrap();
    let n = index.entries.len();
    assert!(n >= 4, "{n}");
    // Cut the shard in the middle of its second sample: it and all after it are lost.
    let cut = &index.entries[1];
    let path = dir
        .path()
        .join(&manifest.subsets[&Subset::Sft].shards[0].path);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..(cut.offset + 3) as usize]).unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    let opts = VerifyOptions {
        decode_images: false,
        threads: 1,
    };
    let report = verify(&ds, &opts, &|_| {});
    let all = report.problems.join("\n");
    let first = &index.entries[1].key;
    let last = &index.entries[n - 1].key;
    assert!(
        all.contains(&format!(
            "samples {first} to {last} ({} in index order)",
            n - 1
        )),
        "{all}"
    );
}
