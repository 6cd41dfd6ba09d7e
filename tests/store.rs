//! Black-box tests of the store layer without a network: datasets written to and read
//! from an in-memory object store through the same code paths an S3 bucket takes
//! (range reads, coalescing, multipart uploads, the disk cache with its byte limit,
//! restarts and corruption), and store reads from inside an async runtime.
//! `tests/s3.rs` runs the same paths against a real S3 server.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use editfeed::dataset::verify::{verify, VerifyOptions};
use editfeed::dataset::writer::{DatasetWriter, ShardTarget, WriteOptions};
use editfeed::dataset::{Dataset, Manifest, Sample, Subset};
use editfeed::store::{DiskCache, Location, RemoteUrl, Store, StoreConfig, StoreStats};
use object_store::memory::InMemory;

fn url(prefix: &str) -> RemoteUrl {
    match Location::parse(&format!("s3://mem/{prefix}")).unwrap() {
        Location::Remote(u) => u,
        Location::Local(_) => unreachable!("an s3 url"),
    }
}

fn config() -> StoreConfig {
    StoreConfig {
        io_threads: 1,
        ..StoreConfig::default()
    }
}

fn cached(dir: &Path, bytes: u64) -> StoreConfig {
    StoreConfig {
        cache_dir: Some(dir.to_path_buf()),
        cache_bytes: bytes,
        ..config()
    }
}

fn mem_store(mem: &Arc<InMemory>, prefix: &str, config: &StoreConfig) -> Store {
    Store::with_object_store(url(prefix), mem.clone(), Some(mem.clone()), config).unwrap()
}

fn write_to(store: Store, samples: &[Sample], target: ShardTarget) -> Manifest {
    let mut w = DatasetWriter::with_store(
        store,
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

/// Every sample of a dataset as raw members, in canonical order.
fn read_all(ds: &Dataset) -> Vec<editfeed::shard::RawSample> {
    ds.subsets()
        .into_iter()
        .flat_map(|s| (0..ds.len(s)).map(move |i| (s, i)))
        .map(|(s, i)| ds.read_raw(s, i).unwrap())
        .collect()
}

#[test]
fn a_dataset_written_to_an_object_store_reads_back_like_the_local_one() {
    let samples = all_samples(&small_synth(12, 3));
    let dir = tempfile::tempdir().unwrap();
    let local = write_dataset(dir.path(), &samples, ShardTarget::Samples(3));
    let mem = Arc::new(InMemory::new());
    let remote = write_to(
        mem_store(&mem, "ds", &config()),
        &samples,
        ShardTarget::Samples(3),
    );
    assert_eq!(local, remote, "the same dataset, byte for byte");

    let l = Dataset::open(dir.path()).unwrap();
    let r = Dataset::open_store(mem_store(&mem, "ds", &config())).unwrap();
    assert!(r.store().is_remote());
    assert_eq!(r.root(), Path::new("s3://mem/ds"));
    assert_eq!(read_all(&l), read_all(&r));
    for subset in r.subsets() {
        for shard in 0..r.shards(subset).unwrap().len() {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            l.stream_shard(subset, shard, |s| {
                a.push(s);
                Ok(())
            })
            .unwrap();
            r.stream_shard(subset, shard, |s| {
                b.push(s);
                Ok(())
            })
            .unwrap();
            assert_eq!(a, b, "{subset} shard {shard} streams the same");
        }
    }
    let report = verify(
        &r,
        &VerifyOptions {
            decode_images: true,
            threads: 2,
        },
        &|_| {},
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.samples, 12);
}

#[test]
fn bytes_read_are_counted_alike_for_local_folders_and_object_stores() {
    let samples = all_samples(&small_synth(9, 5));
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), &samples, ShardTarget::Samples(4));
    let mem = Arc::new(InMemory::new());
    write_to(
        mem_store(&mem, "ds", &config()),
        &samples,
        ShardTarget::Samples(4),
    );
    let l = Dataset::open(dir.path()).unwrap();
    let r = Dataset::open_store(mem_store(&mem, "ds", &config())).unwrap();
    let manifest = std::fs::metadata(dir.path().join("manifest.json"))
        .unwrap()
        .len();
    assert_eq!(l.bytes_read(), manifest, "opening reads the manifest only");
    assert_eq!(r.bytes_read(), manifest);
    let read = read_all(&l);
    assert_eq!(read, read_all(&r));
    // Every sample's frame is read once: nearly all of the shards' bytes.
    let shards: u64 = l.manifest().subsets.values().map(|s| s.bytes).sum();
    assert!(
        l.bytes_read() > manifest + shards * 9 / 10,
        "{} of {shards} shard bytes",
        l.bytes_read()
    );
    assert_eq!(
        l.bytes_read(),
        r.bytes_read(),
        "the same reads, counted alike"
    );
}

#[test]
fn local_shards_read_alike_through_memory_maps_and_positioned_reads() {
    let samples = all_samples(&small_synth(9, 6));
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), &samples, ShardTarget::Samples(4));
    let open = |mmap| {
        let config = StoreConfig { mmap, ..config() };
        let store = Store::open(&Location::Local(dir.path().to_path_buf()), &config).unwrap();
        Dataset::open_store(store).unwrap()
    };
    let (mapped, read) = (open(true), open(false));
    assert_eq!(read_all(&mapped), read_all(&read));
    assert_eq!(mapped.bytes_read(), read.bytes_read(), "counted alike");
    let batch: Vec<_> = (0..mapped.len(Subset::Sft)).collect();
    assert_eq!(
        mapped.read_raw_many(Subset::Sft, &batch).unwrap(),
        read.read_raw_many(Subset::Sft, &batch).unwrap()
    );

    // A shard cut short after the datasets were opened (and, for the first, mapped):
    // both stores name the shard's path, and neither reads past the new end.
    let shard = &mapped.manifest().subsets[&Subset::Sft].shards[0];
    let path = dir.path().join(&shard.path);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::write(&path, &std::fs::read(&path).unwrap()[..(len / 2) as usize]).unwrap();
    for ds in [&mapped, &read] {
        let e = ds
            .store()
            .read_range(&shard.path, 0..len, None)
            .unwrap_err();
        assert_eq!(e.url(), path.display().to_string());
        assert!(e.to_string().contains(&format!("offset 0 + {len}")), "{e}");
        assert!(
            ds.read_raw(Subset::Sft, 0).is_ok(),
            "the first half still reads"
        );
    }
}

#[test]
fn a_file_that_cannot_be_mapped_is_read_with_positioned_reads() {
    // sysfs attribute files refuse mmap (ENODEV) but read normally.
    let dir = Path::new("/sys/kernel/mm/transparent_hugepage");
    let Ok(want) = std::fs::read(dir.join("enabled")) else {
        eprintln!("skipped: no {} on this machine", dir.display());
        return;
    };
    let store = Store::open(&Location::Local(dir.to_path_buf()), &config()).unwrap();
    assert!(config().mmap);
    let got = store.read_range("enabled", 0..4, None).unwrap();
    assert_eq!(&got[..], &want[..4]);
}

#[test]
fn read_raw_many_coalesces_adjacent_frames_into_one_request() {
    let samples = all_samples(&small_synth(20, 4));
    let mem = Arc::new(InMemory::new());
    write_to(
        mem_store(&mem, "ds", &config()),
        &samples,
        ShardTarget::Samples(4),
    );
    let ds = Dataset::open_store(mem_store(&mem, "ds", &config())).unwrap();
    for shard in 0..ds.shards(Subset::Sft).unwrap().len() {
        ds.index(Subset::Sft, shard).unwrap();
    }
    let requests = || ds.store().stats().requests;
    let before = requests();
    let run = ds.read_raw_many(Subset::Sft, &[0, 1, 2, 3]).unwrap();
    assert_eq!(
        requests() - before,
        1,
        "four adjacent frames, one range read"
    );
    let singles: Vec<_> = (0..4)
        .map(|i| ds.read_raw(Subset::Sft, i).unwrap())
        .collect();
    assert_eq!(run, singles);

    let before = requests();
    let mixed = ds.read_raw_many(Subset::Sft, &[5, 0, 4, 2, 6]).unwrap();
    // Shard 0 holds {0, 2}: not adjacent, two reads; shard 1 holds {4, 5, 6}: one.
    assert_eq!(requests() - before, 3);
    let keys: Vec<_> = mixed.iter().map(|s| s.key.clone()).collect();
    let expected: Vec<_> = [5, 0, 4, 2, 6]
        .iter()
        .map(|&o| ds.key_of(Subset::Sft, o).unwrap())
        .collect();
    assert_eq!(keys, expected, "results come back in the order asked");
}

#[test]
fn large_shards_are_uploaded_in_parts_and_read_back() {
    let mem = Arc::new(InMemory::new());
    let cfg = StoreConfig {
        upload_part_bytes: 5 << 20,
        ..config()
    };
    let store = mem_store(&mem, "big", &cfg);
    let mut w = DatasetWriter::with_store(
        store,
        WriteOptions {
            target: ShardTarget::Samples(100),
            level: 1,
            compress_literals: false,
            overwrite: false,
        },
    )
    .unwrap();
    // Incompressible members make a shard of about 12 MiB: three 5 MiB parts at most.
    let mut rng = editfeed::rng::Rng::from_seed(7);
    let blobs: Vec<Vec<u8>> = (0..4)
        .map(|_| (0..3 << 20).map(|_| rng.next_u64() as u8).collect())
        .collect();
    for (i, b) in blobs.iter().enumerate() {
        let key = format!("{i:06}");
        w.add_members(Subset::Sft, None, &key, [("bin", &b[..])])
            .unwrap();
    }
    let manifest = w.finish().unwrap();
    let shard = &manifest.subsets[&Subset::Sft].shards[0];
    assert!(shard.bytes > 10 << 20, "{}", shard.bytes);
    let ds = Dataset::open_store(mem_store(&mem, "big", &cfg)).unwrap();
    for (i, b) in blobs.iter().enumerate() {
        let raw = ds.read_raw(Subset::Sft, i as u64).unwrap();
        assert_eq!(&raw.members[0].1[..], &b[..]);
    }
    let whole = ds.read_object(&shard.path).unwrap();
    use sha2::Digest as _;
    assert_eq!(
        editfeed::hex::hex(&sha2::Sha256::digest(&whole)),
        shard.sha256
    );
}

#[test]
fn a_multipart_upload_sends_parts_while_writing() {
    // The request count tells the upload path: one PUT for a small shard; create, parts
    // and complete for a large one.
    let mem = Arc::new(InMemory::new());
    let cfg = StoreConfig {
        upload_part_bytes: 5 << 20,
        ..config()
    };
    let store = mem_store(&mem, "parts", &cfg);
    let mut w = editfeed::store::Store::writer(&store, "blob").unwrap();
    use std::io::Write as _;
    let chunk = vec![9u8; 1 << 20];
    for _ in 0..11 {
        w.write_all(&chunk).unwrap();
    }
    assert_eq!(w.finish().unwrap(), 11 << 20);
    // create + 3 parts (5, 5, 1 MiB) + complete.
    assert_eq!(store.stats().requests, 5);
    assert_eq!(store.read("blob").unwrap().len(), 11 << 20);
    let mut small = store.writer("small").unwrap();
    small.write_all(b"tiny").unwrap();
    small.finish().unwrap();
    assert_eq!(store.stats().requests, 5 + 1 + 1);
    assert!(!store.exists("never-finished").unwrap());
    let mut abandoned = store.writer("never-finished").unwrap();
    abandoned.write_all(&chunk).unwrap();
    drop(abandoned);
    assert!(
        !store.exists("never-finished").unwrap(),
        "no object until finish"
    );
}

#[test]
fn the_cache_serves_repeat_reads_and_survives_a_restart() {
    let samples = all_samples(&small_synth(9, 5));
    let mem = Arc::new(InMemory::new());
    write_to(
        mem_store(&mem, "ds", &config()),
        &samples,
        ShardTarget::Samples(2),
    );
    let cache_dir = tempfile::tempdir().unwrap();
    let cfg = cached(cache_dir.path(), 1 << 30);
    let first = Dataset::open_store(mem_store(&mem, "ds", &cfg)).unwrap();
    let expected = read_all(&first);
    let cold = first.store().stats();
    assert!(cold.requests > 9 && cold.cache_hits == 0, "{cold:?}");
    assert_eq!(read_all(&first), expected);
    let warm = first.store().stats();
    assert_eq!(
        warm.requests, cold.requests,
        "repeat reads come from the cache"
    );
    assert!(warm.cache_hits >= 9);
    drop(first);

    // A restart: a new store and cache object over the same folder.
    let again = Dataset::open_store(mem_store(&mem, "ds", &cfg)).unwrap();
    assert_eq!(read_all(&again), expected);
    let s = again.store().stats();
    assert_eq!(
        s.requests, 1,
        "only the manifest is revalidated (an ETag match), nothing else is fetched: {s:?}"
    );
    assert!(s.cache_hits > 9);
}

#[test]
fn read_ahead_follows_the_plan_within_its_limits() {
    let mem = Arc::new(InMemory::new());
    write_to(
        mem_store(&mem, "ds", &config()),
        &all_samples(&small_synth(20, 12)),
        ShardTarget::Samples(4),
    );
    let cfg = StoreConfig {
        read_ahead_samples: 4,
        ..config()
    };
    let ds = Arc::new(Dataset::open_store(mem_store(&mem, "ds", &cfg)).unwrap());
    assert!(ds.len(Subset::Sft) >= 10);
    // One sample per step: step s reads sft ordinal s; steps 0..10.
    let ra = ds
        .read_ahead(0, Some(10), 1, |step| Some(vec![(Subset::Sft, step)]))
        .expect("a remote dataset reads ahead");
    let filled = |n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while ra.len() != n && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        ra.len()
    };
    assert_eq!(filled(4), 4, "read-ahead stops at its sample limit");
    let frame = ra.take(Subset::Sft, 0).unwrap().unwrap();
    assert_eq!(
        ds.decode_raw(Subset::Sft, 0, &frame).unwrap(),
        ds.read_raw(Subset::Sft, 0).unwrap()
    );
    assert_eq!(filled(4), 4, "taking one makes room for the next step");
    assert!(
        ra.take(Subset::Sft, 11).is_none(),
        "not planned, not read ahead"
    );
    // A worker at step 3 means steps before 2 (3 - keep_steps) will never be taken.
    assert!(ra.take(Subset::Sft, 3).is_some());
    assert!(
        ra.take(Subset::Sft, 1).is_none(),
        "step 1 was dropped as stale"
    );
    assert!(ra.take(Subset::Sft, 2).is_some());
    for o in 4..10 {
        // Taking makes room, so the driver reaches every step up to the end.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let frame = loop {
            if let Some(f) = ra.take(Subset::Sft, o) {
                break f.unwrap();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "step {o} never read ahead"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        ds.decode_raw(Subset::Sft, o, &frame).unwrap();
    }
    assert_eq!(filled(0), 0, "nothing past the stream's end");
    // Local datasets do not read ahead.
    let dir = tempfile::tempdir().unwrap();
    write_dataset(
        dir.path(),
        &all_samples(&small_synth(3, 1)),
        ShardTarget::Samples(3),
    );
    let local = Arc::new(Dataset::open(dir.path()).unwrap());
    assert!(local.read_ahead(0, None, 1, |_| None).is_none());
}

#[test]
fn a_corrupt_cache_entry_is_detected_and_fetched_again() {
    let samples = all_samples(&small_synth(6, 6));
    let mem = Arc::new(InMemory::new());
    write_to(
        mem_store(&mem, "ds", &config()),
        &samples,
        ShardTarget::Samples(3),
    );
    let cache_dir = tempfile::tempdir().unwrap();
    let cfg = cached(cache_dir.path(), 1 << 30);
    let expected = read_all(&Dataset::open_store(mem_store(&mem, "ds", &cfg)).unwrap());
    // Flip one byte in the middle of every entry (frames, indexes, the manifest).
    let mut flipped = 0;
    for file in entries(cache_dir.path()) {
        let mut bytes = std::fs::read(&file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        std::fs::write(&file, &bytes).unwrap();
        flipped += 1;
    }
    assert!(flipped > 6);
    let ds = Dataset::open_store(mem_store(&mem, "ds", &cfg)).unwrap();
    assert_eq!(read_all(&ds), expected, "corrupt entries are never served");
    let s = ds.store().stats();
    assert!(s.cache_corrupt >= 6, "{s:?}");
    assert!(s.requests > 6, "corrupt entries are fetched again: {s:?}");
    // And rewritten: a third pass is served from the cache again.
    let before = ds.store().stats().requests;
    assert_eq!(read_all(&ds), expected);
    assert_eq!(ds.store().stats().requests, before);
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|d| d.file_name().len() == 2)
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .map(|f| f.path())
        .collect()
}

#[test]
fn lru_eviction_keeps_the_cache_under_its_limit_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(StoreStats::default());
    let blob = vec![1u8; 1000];
    // Room for two entries (each is 1000 bytes plus a small header), not three.
    let limit = 2_200;
    let c = DiskCache::open(dir.path(), limit, stats.clone()).unwrap();
    c.put("a", b"", &blob);
    c.put("b", b"", &blob);
    assert!(c.get("a").is_some(), "a is now the most recently used");
    c.put("c", b"", &blob);
    assert!(c.bytes() <= limit);
    assert!(
        c.contains("a") && c.contains("c") && !c.contains("b"),
        "b was least recent"
    );
    assert_eq!(stats.snapshot().cache_evictions, 1);
    drop(c);

    // The index is rebuilt from the folder, recency included.
    let c = DiskCache::open(dir.path(), limit, stats.clone()).unwrap();
    assert_eq!(c.len(), 2);
    assert!(c.get("a").is_some());
    c.put("d", b"", &blob);
    assert!(c.contains("a") && c.contains("d") && !c.contains("c"));
    // A smaller limit on restart evicts down to it.
    drop(c);
    let c = DiskCache::open(dir.path(), 1_100, stats.clone()).unwrap();
    assert_eq!(c.len(), 1);
    assert!(c.contains("d"), "the most recent entry stays");
    assert_eq!(entries(dir.path()).len(), 1, "evicted files are deleted");
}

#[test]
fn many_threads_share_one_cache_under_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let c = Arc::new(DiskCache::open(dir.path(), 50_000, Arc::default()).unwrap());
    std::thread::scope(|s| {
        for t in 0..8u8 {
            let c = c.clone();
            s.spawn(move || {
                for i in 0..100u32 {
                    let key = format!("k{}", i % 40);
                    let value = vec![(i % 40) as u8; 2_000];
                    if let Some((_, got)) = c.get(&key) {
                        assert_eq!(&got[..], &value[..], "thread {t}: a torn or wrong entry");
                    } else {
                        c.put(&key, b"", &value);
                    }
                }
            });
        }
    });
    assert!(c.bytes() <= 50_000);
    let on_disk: u64 = entries(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(on_disk, c.bytes(), "the index agrees with the folder");
}

#[test]
fn a_cache_that_cannot_write_does_not_fail_reads() {
    let samples = all_samples(&small_synth(6, 7));
    let mem = Arc::new(InMemory::new());
    write_to(
        mem_store(&mem, "ds", &config()),
        &samples,
        ShardTarget::Samples(3),
    );
    let cache_dir = tempfile::tempdir().unwrap();
    let cfg = cached(cache_dir.path(), 1 << 30);
    let store = mem_store(&mem, "ds", &cfg);
    // The cache's temporary folder replaced by a file: every write fails, as on a full
    // disk.
    std::fs::remove_dir_all(cache_dir.path().join("tmp")).unwrap();
    std::fs::write(cache_dir.path().join("tmp"), b"in the way").unwrap();
    let ds = Dataset::open_store(store).unwrap();
    let expected = read_all(&Dataset::open_store(mem_store(&mem, "ds", &config())).unwrap());
    assert_eq!(read_all(&ds), expected);
    let s = ds.store().stats();
    assert!(s.cache_write_errors > 0 && s.cache_hits == 0, "{s:?}");

    // A cache folder that cannot even be made: the store opens uncached.
    let blocked = cache_dir.path().join("file");
    std::fs::write(&blocked, b"x").unwrap();
    let ds =
        Dataset::open_store(mem_store(&mem, "ds", &cached(&blocked.join("c"), 1 << 20))).unwrap();
    assert!(ds.store().cache().is_none());
    assert_eq!(read_all(&ds), expected);
}

#[test]
fn missing_objects_and_existing_datasets_are_errors_naming_the_url() {
    let mem = Arc::new(InMemory::new());
    let e = Dataset::open_store(mem_store(&mem, "nothing/here", &config()))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "s3://mem/nothing/here/manifest.json: not found");
    write_to(
        mem_store(&mem, "ds", &config()),
        &all_samples(&small_synth(3, 8)),
        ShardTarget::Samples(3),
    );
    let e = DatasetWriter::with_store(mem_store(&mem, "ds", &config()), WriteOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("s3://mem/ds") && e.contains("--overwrite"),
        "{e}"
    );
    // A shard gone from under a dataset: the read names its URL.
    let store = mem_store(&mem, "ds", &config());
    store.delete("sft-000000.tar.zst").unwrap();
    let ds = Dataset::open_store(store).unwrap();
    let e = ds.read_raw(Subset::Sft, 0).unwrap_err();
    assert!(e.is_store_failure());
    assert_eq!(e.to_string(), "s3://mem/ds/sft-000000.tar.zst: not found");
}

#[tokio::test]
async fn store_reads_work_from_inside_a_single_threaded_runtime() {
    // Startup code opens datasets from async functions; the store must not need the
    // caller's runtime (a current-thread one would deadlock on a blocked thread).
    let mem = Arc::new(InMemory::new());
    write_to(
        mem_store(&mem, "ds", &config()),
        &all_samples(&small_synth(4, 9)),
        ShardTarget::Samples(2),
    );
    let ds = Dataset::open_store(mem_store(&mem, "ds", &config())).unwrap();
    assert_eq!(read_all(&ds).len(), 4);
    drop(ds); // dropping a store inside a runtime must not panic either
}

#[test]
fn local_paths_and_file_urls_still_work_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let samples = all_samples(&small_synth(6, 10));
    let url = format!("file://{}", dir.path().join("ds").display());
    let mut w = DatasetWriter::create(url.as_str(), WriteOptions::default()).unwrap();
    for s in &samples {
        w.add(s).unwrap();
    }
    w.finish().unwrap();
    let ds = Dataset::open(url.as_str()).unwrap();
    assert!(!ds.store().is_remote());
    assert_eq!(ds.root(), dir.path().join("ds"));
    let by_path = Dataset::open(dir.path().join("ds")).unwrap();
    assert_eq!(read_all(&ds), read_all(&by_path));
    let e = Dataset::open("ftp://x/y").unwrap_err().to_string();
    assert!(e.contains("unsupported scheme"), "{e}");
}
