//! The bad-input corpus: each kind of broken input gives a clear error naming what is
//! wrong and where, without a panic and without allocating what a header merely claims.
//! Corrupt and truncated zstd frames, tar headers with bad checksums or huge sizes,
//! member names that climb out of the archive, an index out of step with its shard or
//! manifest, a manifest with a wrong checksum, and a dataset rewritten under a running
//! stream. (Decompression bombs in images: tests/augment.rs; wrong counts and unknown
//! manifest keys: tests/shards.rs. Inputs found by fuzzing are kept here too; see
//! docs/fuzzing.md.)

mod common;

use common::*;
use editfeed::dataset::manifest::MANIFEST_FILE;
use editfeed::dataset::writer::ShardTarget;
use editfeed::dataset::{Dataset, Subset};
use editfeed::shard::members::{append_member, end_of_archive, BLOCK};
use editfeed::shard::reader::{decode_frame, stream_samples};

/// An sft-only dataset of `n` samples in shards of `per_shard`.
fn sft_dataset(dir: &std::path::Path, n: u64, per_shard: u64, seed: u64) -> Vec<String> {
    let samples: Vec<_> = all_samples(&small_synth(n * 2, seed))
        .into_iter()
        .filter(|s| s.subset() == Subset::Sft)
        .take(n as usize)
        .collect();
    write_dataset(dir, &samples, ShardTarget::Samples(per_shard));
    samples.into_iter().map(|s| s.key).collect()
}

fn stream_err(name: &str, bytes: &[u8]) -> String {
    stream_samples(name, bytes, |_| Ok(()))
        .expect_err("broken input must be an error")
        .to_string()
}

#[test]
fn a_corrupt_zstd_frame_names_shard_and_offset_and_spares_its_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    sft_dataset(dir.path(), 5, 100, 1);
    let ds = Dataset::open(dir.path()).unwrap();
    let shard = ds.shards(Subset::Sft).unwrap()[0].path.clone();
    let entry = ds.index(Subset::Sft, 0).unwrap().entries[2].clone();
    let path = dir.path().join(&shard);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(entry.offset + entry.frame_len as u64 / 2) as usize] ^= 0x5a;
    std::fs::write(&path, &bytes).unwrap();

    let ds = Dataset::open(dir.path()).unwrap();
    let err = ds.read_raw(Subset::Sft, 2).unwrap_err().to_string();
    assert!(
        err.contains(&shard) && err.contains(&format!("offset {}", entry.offset)),
        "{err}"
    );
    for ok in [1, 3] {
        ds.read_raw(Subset::Sft, ok).unwrap();
    }

    // A frame cut short: the same kind of error, from the frame decoder directly.
    let frame = &bytes[entry.offset as usize..(entry.offset + entry.frame_len as u64) as usize];
    let err = decode_frame(
        &shard,
        entry.offset,
        &frame[..frame.len() / 2],
        entry.raw_len,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains(&shard) && err.contains("zstd"), "{err}");
}

#[test]
fn tar_headers_with_bad_checksums_or_huge_sizes_are_refused() {
    let mut tar = Vec::new();
    append_member(&mut tar, "k.json", b"{}").unwrap();
    append_member(&mut tar, "k.src.jpg", &[7u8; 600]).unwrap();
    tar.extend_from_slice(&end_of_archive());

    // A flipped byte in the second header's name breaks its checksum.
    let mut bad_sum = tar.clone();
    bad_sum[BLOCK * 2 + 1] ^= 1;
    let err = stream_err("bad-sum.tar", &bad_sum);
    assert!(
        err.contains("bad-sum.tar") && err.contains("checksum"),
        "{err}"
    );
    let zst = zstd::bulk::compress(&bad_sum, 3).unwrap();
    let err = stream_err("bad-sum.tar.zst", &zst);
    assert!(
        err.contains("bad-sum.tar.zst") && err.contains("checksum"),
        "{err}"
    );

    // A header declaring a terabyte, with no data behind it: refused from the header.
    let mut huge = Vec::new();
    let mut h = tar::Header::new_ustar();
    h.set_path("k.edit.png").unwrap();
    h.set_size(1 << 40);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    huge.extend_from_slice(h.as_bytes());
    huge.extend_from_slice(&end_of_archive());
    let err = stream_err("huge.tar", &huge);
    assert!(
        err.contains("huge.tar") && err.contains("k.edit.png") && err.contains("limit"),
        "{err}"
    );
    let err = decode_frame(
        "huge.tar.zst",
        0,
        &zstd::bulk::compress(&huge, 3).unwrap(),
        1536,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("limit"), "{err}");
}

/// A plain tar whose second member's name is `name` (written by hand: `tar` refuses to
/// write names that climb out).
fn tar_with_member_named(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    append_member(&mut out, "k.json", b"{}").unwrap();
    let mut h = tar::Header::new_ustar();
    h.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(3);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(b"abc");
    out.resize(out.len() + BLOCK - 3, 0);
    out.extend_from_slice(&end_of_archive());
    out
}

#[test]
fn member_names_that_try_path_traversal_are_refused() {
    for name in [
        "../../etc/cron.d/k.json",
        "/etc/k.src.jpg",
        "a/../../k.json",
    ] {
        let err = stream_err("evil.tar", &tar_with_member_named(name));
        assert!(
            err.contains("evil.tar") && err.contains(name) && err.contains("offset 1024"),
            "{err}"
        );
    }
    // Through the command line: inspect and pack both name the member and fail.
    let dir = tempfile::tempdir().unwrap();
    let shard = dir.path().join("evil-000000.tar");
    std::fs::write(&shard, tar_with_member_named("../escape.json")).unwrap();
    for args in [
        vec!["inspect".into(), shard.display().to_string()],
        vec![
            "pack".into(),
            "webdataset".into(),
            shard.display().to_string(),
            "--subset".into(),
            "sft".into(),
            "--out".into(),
            dir.path().join("out").display().to_string(),
        ],
    ] {
        let out = bin().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains("../escape.json"), "{args:?}: {stderr}");
    }
    assert!(!dir.path().join("escape.json").exists());
    assert!(!dir.path().join("out").join(MANIFEST_FILE).exists());
}

#[test]
fn an_index_out_of_step_with_its_shard_or_manifest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    sft_dataset(dir.path(), 6, 3, 2);
    let ds = Dataset::open(dir.path()).unwrap();
    let shards = ds.shards(Subset::Sft).unwrap().to_vec();
    assert_eq!(shards.len(), 2);
    let idx = |i: usize| dir.path().join(shards[i].index.as_ref().unwrap());
    let (idx0, idx1) = (
        std::fs::read(idx(0)).unwrap(),
        std::fs::read(idx(1)).unwrap(),
    );
    let shard0 = std::fs::read(dir.path().join(&shards[0].path)).unwrap();

    // Another shard's index (same sample count): its checksum is not the manifest's.
    std::fs::write(idx(0), &idx1).unwrap();
    let err = Dataset::open(dir.path())
        .unwrap()
        .read_raw(Subset::Sft, 0)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(shards[0].index.as_ref().unwrap()) && err.contains("out of step"),
        "{err}"
    );

    // The right index, but the shard's bytes replaced by another shard's.
    std::fs::write(idx(0), &idx0).unwrap();
    std::fs::copy(
        dir.path().join(&shards[1].path),
        dir.path().join(&shards[0].path),
    )
    .unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    for ordinal in 0..3 {
        let err = ds.read_raw(Subset::Sft, ordinal).unwrap_err().to_string();
        assert!(err.contains(&shards[0].path), "{err}");
    }
    std::fs::write(dir.path().join(&shards[0].path), &shard0).unwrap();
    Dataset::open(dir.path())
        .unwrap()
        .read_raw(Subset::Sft, 0)
        .unwrap();
}

#[test]
fn a_manifest_with_a_wrong_shard_checksum_fails_verify_naming_the_shard() {
    let dir = tempfile::tempdir().unwrap();
    sft_dataset(dir.path(), 4, 2, 3);
    let ds = Dataset::open(dir.path()).unwrap();
    let shard = ds.shards(Subset::Sft).unwrap()[1].clone();
    let path = dir.path().join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen(&shard.sha256, &"0".repeat(64), 1)).unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    let report = common::verify_structure(&ds);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(&shard.path) && p.contains("sha256")),
        "{:?}",
        report.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_rewritten_under_a_running_stream_ends_it_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let original = tempfile::tempdir().unwrap();
    for d in [dir.path(), original.path()] {
        sft_dataset(d, 12, 2, 4);
    }
    let server = TestServer::start(&[("d", dir.path()), ("orig", original.path())], 1, 1).await;
    // Batches of 3 MB, so that flow control holds the daemon a few batches ahead of
    // the reader (small ones would all be sent before the rewrite).
    let mut client = editfeed::transport::client::connect(&server.endpoint)
        .await
        .unwrap();
    let mut stream = client
        .stream(request("d", 9, 2, 1, 0, 512, 40))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(stream.message().await.unwrap().unwrap());
    }
    // Rewritten in place with other samples (same names, same layout).
    sft_dataset(dir.path(), 12, 2, 5);
    let err = loop {
        match stream.message().await {
            Ok(Some(b)) => got.push(b),
            Ok(None) => panic!(
                "the stream ended without an error after {} batches",
                got.len()
            ),
            Err(status) => break status,
        }
    };
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("changed") && err.message().contains("new stream"),
        "{}",
        err.message()
    );
    assert!(
        got.len() < 40,
        "every batch after the rewrite would be wrong"
    );
    let expected = fetch_all(
        &server.endpoint,
        request("orig", 9, 2, 1, 0, 512, got.len() as u64),
    )
    .await
    .unwrap();
    assert_eq!(
        digests(&got),
        digests(&expected),
        "every batch sent is a batch of the version the stream started on"
    );
    server.stop().await;
}
