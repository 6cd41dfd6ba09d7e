//! Checks a dataset end to end: every shard's size and checksum, every index's checksum,
//! that the index agrees with the tar (frames contiguous from offset 0, each frame
//! holding the indexed key with the indexed digest, the end-of-archive frame last),
//! that every image decodes, and that the samples hash to the manifest's version.
//! Problems are collected, each naming the shard and sample, instead of stopping at the
//! first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::manifest::{dataset_version, ContentHasher, ShardManifest};
use super::reader::Dataset;
use super::sample::Sample;
use super::Subset;
use crate::hex::hex;
use crate::shard::members::end_of_archive;
use crate::shard::{decode_frame, stream_samples, RawSample};

/// What `verify` found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Samples checked.
    pub samples: u64,
    /// Images decoded.
    pub images: u64,
    /// Shard bytes read.
    pub bytes: u64,
    /// Every problem found, each naming where.
    pub problems: Vec<String>,
}

/// Options for [`verify`].
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Fully decode every image (the slow part).
    pub decode_images: bool,
    /// Threads to use.
    pub threads: usize,
}

/// Verifies an open dataset. `progress` is called with bytes as shards finish.
pub fn verify(ds: &Dataset, opts: &VerifyOptions, progress: &(dyn Fn(u64) + Sync)) -> VerifyReport {
    let jobs: Vec<(Subset, usize)> = ds
        .subsets()
        .into_iter()
        .flat_map(|s| (0..ds.shards(s).map_or(0, |v| v.len())).map(move |i| (s, i)))
        .collect();
    let next = AtomicU64::new(0);
    let results: Mutex<Vec<((Subset, usize), ShardResult)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..opts.threads.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&(subset, shard)) = jobs.get(i) else {
                    break;
                };
                let entry = &ds.shards(subset).expect("listed")[shard];
                let r = verify_shard(ds, subset, shard, entry, opts.decode_images);
                progress(entry.bytes);
                results
                    .lock()
                    .expect("results lock")
                    .push(((subset, shard), r));
            });
        }
    });
    let mut results = results.into_inner().expect("results lock");
    results.sort_by_key(|(k, _)| *k);
    let mut report = VerifyReport::default();
    let mut content: std::collections::BTreeMap<Subset, ContentHasher> = Default::default();
    for ((subset, _), r) in results {
        report.samples += r.samples.len() as u64;
        report.images += r.images;
        report.bytes += r.bytes;
        report.problems.extend(r.problems);
        let h = content.entry(subset).or_default();
        for (key, digest) in &r.samples {
            h.add(key, digest);
        }
    }
    let mut parts = Vec::new();
    for (subset, h) in content {
        let expect = &ds.manifest().subsets[&subset];
        let (n, sum) = (h.samples(), h.finish());
        if n != expect.samples {
            report.problems.push(format!(
                "subset {subset}: holds {n} samples, the manifest says {}",
                expect.samples
            ));
        }
        if sum != expect.content_sha256 {
            report.problems.push(format!(
                "subset {subset}: content hash differs from the manifest"
            ));
        }
        parts.push((subset, n, sum));
    }
    let version = super::manifest::with_splits(
        dataset_version(parts.iter().map(|(s, n, h)| (*s, *n, h.as_str()))),
        ds.manifest(),
    );
    if version != ds.manifest().version {
        report.problems.push(format!(
            "dataset version is {version}, the manifest says {}",
            ds.manifest().version
        ));
    }
    report
}

#[derive(Default)]
struct ShardResult {
    samples: Vec<(String, [u8; 32])>,
    images: u64,
    bytes: u64,
    problems: Vec<String>,
}

fn verify_shard(
    ds: &Dataset,
    subset: Subset,
    shard: usize,
    entry: &ShardManifest,
    decode: bool,
) -> ShardResult {
    let mut r = ShardResult::default();
    let name = &entry.path;
    let data = match ds.read_object(name) {
        Ok(d) => d,
        Err(e) => {
            r.problems.push(format!("shard {name}: cannot read: {e}"));
            return r;
        }
    };
    r.bytes = data.len() as u64;
    if data.len() as u64 != entry.bytes {
        r.problems.push(format!(
            "shard {name}: {} bytes, the manifest says {}",
            data.len(),
            entry.bytes
        ));
    }
    if hex(&Sha256::digest(&data)) != entry.sha256 {
        r.problems
            .push(format!("shard {name}: sha256 differs from the manifest"));
    }
    let check_sample = |raw: RawSample, r: &mut ShardResult| {
        let digest = raw.digest();
        let key = raw.key.clone();
        match Sample::from_raw(raw) {
            Ok(sample) => {
                if sample.subset() != subset {
                    r.problems.push(format!(
                        "shard {name}, sample {key}: metadata says subset {}",
                        sample.subset()
                    ));
                }
                if decode {
                    for img in &sample.images {
                        r.images += 1;
                        if let Err(e) = image::load_from_memory(&img.bytes) {
                            r.problems.push(format!(
                                "shard {name}, sample {key}: {} does not decode: {e}",
                                img.role.field()
                            ));
                        }
                    }
                }
            }
            Err(e) => r.problems.push(format!("shard {name}, sample {key}: {e}")),
        }
        r.samples.push((key, digest));
    };
    if entry.index.is_none() {
        let mut streamed = Vec::new();
        if let Err(e) = stream_samples(name, &data[..], |raw| {
            streamed.push(raw);
            Ok(())
        }) {
            r.problems.push(e.to_string());
        }
        for raw in streamed {
            check_sample(raw, &mut r);
        }
        return r;
    }
    let index = match ds.index(subset, shard) {
        Ok(ix) => ix,
        Err(e) => {
            r.problems.push(e.to_string());
            return r;
        }
    };
    if let (Some(path), Some(sum)) = (&entry.index, &entry.index_sha256) {
        if let Ok(bytes) = ds.read_object(path) {
            if &hex(&Sha256::digest(&bytes)) != sum {
                r.problems
                    .push(format!("index {path}: sha256 differs from the manifest"));
            }
        }
    }
    let mut expect_offset = 0u64;
    for (i, e) in index.entries.iter().enumerate() {
        if e.offset != expect_offset {
            r.problems.push(format!(
                "shard {name}, sample {}: frame at offset {}, expected {expect_offset} (index out of step with the tar)",
                e.key, e.offset
            ));
        }
        expect_offset = e.offset + e.frame_len as u64;
        let Some(frame) = data.get(e.range().start as usize..e.range().end as usize) else {
            // A truncated shard loses every sample from here on: name them all, as a
            // range in index order.
            let lost = &index.entries[i..];
            let last = &lost[lost.len() - 1].key;
            r.problems.push(match lost.len() {
                1 => format!(
                    "shard {name}, sample {}: frame past the end of the shard",
                    e.key
                ),
                n => format!(
                    "shard {name}, samples {} to {last} ({n} in index order): frames past the end of the shard",
                    e.key
                ),
            });
            break;
        };
        match decode_frame(name, e.offset, frame, e.raw_len) {
            Ok(raw) => {
                if raw.key != e.key {
                    r.problems.push(format!(
                        "shard {name}: frame at offset {} holds {}, index says {}",
                        e.offset, raw.key, e.key
                    ));
                }
                if raw.digest() != e.digest {
                    r.problems.push(format!(
                        "shard {name}, sample {}: content differs from the index digest",
                        e.key
                    ));
                }
                check_sample(raw, &mut r);
            }
            Err(err) => r.problems.push(format!("sample {}: {err}", e.key)),
        }
    }
    let tail = data.get(expect_offset as usize..).unwrap_or_default();
    match zstd::bulk::decompress(tail, 4096) {
        Ok(t) if t[..] == end_of_archive()[..] => {}
        _ => r.problems.push(format!(
            "shard {name}: no end-of-archive frame at offset {expect_offset}"
        )),
    }
    r
}
