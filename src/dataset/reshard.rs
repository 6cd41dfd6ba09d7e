//! Rewrites an open dataset with another shard layout: every sample of the chosen
//! subsets, in canonical order, through a [`DatasetWriter`] with a new shard target and
//! compression level, optionally transcoding or shrinking images on the way. Without
//! image options the samples' bytes are unchanged, so the new version equals the old
//! one and cursors stay valid. The writer is deterministic, so the same source and
//! options always give byte-identical shards, indexes and manifest.
//!
//! Resuming: every shard closed is reported ([`ClosedShard`]); a later run of the same
//! reshard given those reports takes over the shards whose files still match their
//! checksums, skips their samples and writes the rest, with the same result as an
//! uninterrupted run.
//!
//! Flow: dataset reader -> RESHARD -> dataset writer -> store (manifest last).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::manifest::{category_from_char, Manifest};
use super::parallel::{run_ordered, Parallelism};
use super::sample::Role;
use super::splits::SplitSource;
use super::transcode::{transcode, TranscodeError, DEFAULT_PIXEL_LIMIT};
use super::writer::{ClosedShard, DatasetWriter, EncodedSample, SampleEncoder, WriteError};
use super::{Dataset, DatasetError, Subset};
use crate::codec::TranscodeTarget;
use crate::shard::RawSample;

/// Samples read with one coalesced range read; bounds the memory a reshard holds.
const READ_CHUNK: u64 = 32;

/// What to change besides the layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReshardOptions {
    /// The subsets to keep (all when empty).
    pub subsets: Vec<Subset>,
    /// Re-encode edited images (every image but the source) to this format.
    pub transcode_edits: Option<TranscodeTarget>,
    /// Shrink every image so that its longer side is at most this many pixels.
    pub max_side: Option<u32>,
    /// Threads that transcode and compress samples, and the memory bound of the work in
    /// flight (the output does not depend on them).
    pub parallel: Parallelism,
}

impl ReshardOptions {
    /// The subsets of `ds` this reshard writes, in canonical order.
    pub fn subsets_of(&self, ds: &Dataset) -> Vec<Subset> {
        ds.subsets()
            .into_iter()
            .filter(|s| self.subsets.is_empty() || self.subsets.contains(s))
            .collect()
    }

    /// Samples this reshard writes.
    pub fn total_samples(&self, ds: &Dataset) -> u64 {
        self.subsets_of(ds).iter().map(|s| ds.len(*s)).sum()
    }

    fn rewrites(&self) -> bool {
        self.transcode_edits.is_some() || self.max_side.is_some()
    }
}

/// How far a reshard is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Samples written (taken over ones included).
    pub samples: u64,
    /// Compressed bytes written (taken over ones included): the closed shards' file
    /// sizes plus the frames of the shards still open.
    pub bytes: u64,
    /// Shards closed (taken over ones included).
    pub shards: u64,
    /// Samples in shards taken over from an interrupted run.
    pub resumed: u64,
    /// The shard closed (or taken over) just now, if any.
    pub closed: Option<ClosedShard>,
}

/// Why a reshard stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReshardError {
    /// The source dataset could not be read.
    #[error("reading {subset} sample {ordinal}: {source}")]
    Read {
        subset: Subset,
        ordinal: u64,
        #[source]
        source: DatasetError,
    },
    /// An image could not be transcoded.
    #[error("{subset} sample {key:?}, member {field}: {source}")]
    Transcode {
        subset: Subset,
        key: String,
        field: String,
        #[source]
        source: TranscodeError,
    },
    /// The destination could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The caller asked to stop.
    #[error("cancelled")]
    Cancelled,
}

/// Copies the samples of `source` into `writer` and writes the manifest. `done` are the
/// shards an interrupted run of the same reshard reported: those still intact are taken
/// over (each reported again through `on_progress`). `on_progress` runs after every
/// sample; returning false cancels (no manifest is written, so the partial output never
/// becomes a dataset).
pub fn reshard(
    source: &Dataset,
    writer: DatasetWriter,
    opts: &ReshardOptions,
    done: &[ClosedShard],
    on_progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<Manifest, ReshardError> {
    // Without a new split file or rule, the samples keep the splits they have.
    let keep_splits = writer.split_source().is_none() && !source.manifest().splits.is_empty();
    let mut writer = if keep_splits {
        writer.with_splits(Some(SplitSource::Given(source.manifest().splits.clone())))
    } else {
        writer
    };
    let mut progress = Progress::default();
    let (skip, adopted) = writer.adopt_closed(&opts.subsets_of(source), done)?;
    for closed in adopted {
        progress.samples += closed.shard.samples;
        progress.resumed += closed.shard.samples;
        progress.bytes += closed.shard.bytes;
        progress.shards += 1;
        progress.closed = Some(closed);
        if !on_progress(progress.clone()) {
            return Err(ReshardError::Cancelled);
        }
    }
    progress.closed = None;
    // Bytes are counted as closed shards' file sizes plus the frames of the shards still
    // open, whether a shard was written now or taken over, so a resumed run reports
    // the same figures as an uninterrupted one.
    let mut closed_bytes = progress.bytes;
    let mut open_bytes = 0;
    let subsets = opts.subsets_of(source);
    // Per subset: each sample's category and split, from the source's manifest.
    let mut attrs: BTreeMap<Subset, (Vec<u8>, Vec<u8>)> = BTreeMap::new();
    for &subset in &subsets {
        let shards = &source.manifest().subsets[&subset].shards;
        // Shards written without categories count as "none".
        let categories = shards
            .iter()
            .flat_map(|sh| {
                let n = sh.samples as usize;
                let c = sh.categories.as_bytes();
                (0..n).map(move |i| c.get(i).copied().unwrap_or(b'-'))
            })
            .collect();
        let splits = match keep_splits {
            true => shards
                .iter()
                .flat_map(|sh| sh.splits.bytes().map(|b| b - b'0'))
                .collect(),
            false => Vec::new(),
        };
        attrs.insert(subset, (categories, splits));
    }
    let inputs = read_in_order(source, &subsets, &skip);
    let wopts = writer.options().clone();
    run_ordered(
        opts.parallel,
        inputs,
        || SampleEncoder::new(&wopts).expect("the writer checked its level"),
        |encoder, (subset, ordinal, raw): (Subset, u64, RawSample)| {
            let members = match opts.rewrites() {
                true => rewrite_members(subset, &raw.key, raw.members, opts)?,
                false => raw.members,
            };
            let category = attrs[&subset]
                .0
                .get(ordinal as usize)
                .and_then(|c| category_from_char(*c));
            let encoded = encoder.encode(
                subset,
                category,
                &raw.key,
                members.iter().map(|(f, b)| (f.as_str(), &b[..])),
            )?;
            Ok((ordinal, encoded))
        },
        |done: &Result<(u64, EncodedSample), ReshardError>| {
            done.as_ref().map_or(0, |(_, e)| e.frame.bytes.len() as u64)
        },
        |done| {
            let (ordinal, encoded) = done?;
            let subset = encoded.subset;
            let split = attrs[&subset].1.get(ordinal as usize).copied();
            let frame = writer.add_encoded(encoded, split)?;
            progress.samples += 1;
            progress.closed = writer.take_closed().pop();
            progress.shards = writer.shards_written();
            match &progress.closed {
                Some(c) => {
                    closed_bytes += c.shard.bytes;
                    open_bytes = 0;
                }
                None => open_bytes += frame,
            }
            progress.bytes = closed_bytes + open_bytes;
            match on_progress(progress.clone()) {
                true => Ok(()),
                false => Err(ReshardError::Cancelled),
            }
        },
    )?;
    Ok(writer.finish()?)
}

/// The samples of `subsets` in canonical order, after the first `skip` of each, read
/// with coalesced range reads of [`READ_CHUNK`] samples.
fn read_in_order<'a>(
    source: &'a Dataset,
    subsets: &'a [Subset],
    skip: &'a BTreeMap<Subset, u64>,
) -> impl Iterator<Item = Result<(Subset, u64, RawSample), ReshardError>> + 'a {
    subsets.iter().flat_map(move |&subset| {
        let len = source.len(subset);
        let first = skip.get(&subset).copied().unwrap_or(0);
        (first..len)
            .step_by(READ_CHUNK as usize)
            .flat_map(move |start| {
                let ordinals: Vec<u64> = (start..(start + READ_CHUNK).min(len)).collect();
                let read =
                    source
                        .read_raw_many(subset, &ordinals)
                        .map_err(|e| ReshardError::Read {
                            subset,
                            ordinal: start,
                            source: e,
                        });
                let items: Vec<_> = match read {
                    Ok(raws) => ordinals
                        .into_iter()
                        .zip(raws)
                        .map(|(o, raw)| Ok((subset, o, raw)))
                        .collect(),
                    Err(e) => vec![Err(e)],
                };
                items
            })
    })
}

/// Transcodes or shrinks the image members of one sample; other members pass through.
fn rewrite_members(
    subset: Subset,
    key: &str,
    members: Vec<(String, Bytes)>,
    opts: &ReshardOptions,
) -> Result<Vec<(String, Bytes)>, ReshardError> {
    members
        .into_iter()
        .map(|(field, bytes)| {
            let name = field.split_once('.').map_or(field.as_str(), |(n, _)| n);
            let Some(role) = Role::from_field(name) else {
                return Ok((field, bytes));
            };
            let target = if role == Role::Source {
                None
            } else {
                opts.transcode_edits
            };
            let (format, out) = transcode(&bytes, target, opts.max_side, DEFAULT_PIXEL_LIMIT)
                .map_err(|source| ReshardError::Transcode {
                    subset,
                    key: key.to_string(),
                    field: field.clone(),
                    source,
                })?;
            Ok((format!("{name}.{}", format.ext()), out))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::dataset::synth::{synth_sample, SynthOptions};
    use crate::dataset::transcode::probe;
    use crate::dataset::writer::{ShardTarget, WriteOptions};

    fn source(dir: &std::path::Path) -> Dataset {
        let opts = SynthOptions {
            samples: 10,
            seed: 3,
            scale: 0.0625,
            jpeg_quality: 85,
        };
        let mut w = DatasetWriter::create(dir, options(ShardTarget::Samples(4))).unwrap();
        for (subset, n) in opts.split() {
            for i in 0..n {
                w.add(&synth_sample(&opts, subset, i)).unwrap();
            }
        }
        w.finish().unwrap();
        Dataset::open(dir).unwrap()
    }

    fn options(target: ShardTarget) -> WriteOptions {
        WriteOptions {
            target,
            level: 3,
            compress_literals: false,
            overwrite: false,
        }
    }

    fn run(src: &Dataset, out: &std::path::Path, opts: &ReshardOptions) -> Manifest {
        let w = DatasetWriter::create(out, options(ShardTarget::Samples(3))).unwrap();
        reshard(src, w, opts, &[], &mut |_| true).unwrap()
    }

    #[test]
    fn a_plain_reshard_keeps_every_sample_and_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(&dir.path().join("src"));
        let mut seen = Vec::new();
        let w = DatasetWriter::create(dir.path().join("out"), options(ShardTarget::Samples(3)))
            .unwrap();
        let m = reshard(&src, w, &ReshardOptions::default(), &[], &mut |p| {
            seen.push(p);
            true
        })
        .unwrap();
        assert_eq!(m.version, src.manifest().version);
        assert_eq!(seen.len() as u64, src.manifest().total_samples());
        // Shards still open when the last sample is added are closed by finish.
        let shards: u64 = m.subsets.values().map(|s| s.shards.len() as u64).sum();
        let last = seen.last().unwrap();
        assert!(last.shards > 0 && last.shards <= shards, "{last:?}");
        assert!(seen.windows(2).all(|w| w[0].bytes < w[1].bytes));
        let out = Dataset::open(dir.path().join("out")).unwrap();
        for subset in src.subsets() {
            assert_eq!(out.len(subset), src.len(subset));
            for i in 0..src.len(subset) {
                let (a, b) = (
                    src.read_raw(subset, i).unwrap(),
                    out.read_raw(subset, i).unwrap(),
                );
                assert_eq!((a.key, a.members), (b.key, b.members));
            }
            // What the planner reads: each subset's length and its samples' categories.
            let categories = |ds: &Dataset| -> Vec<(Subset, u64, String)> {
                let subsets = ds.manifest().subsets.iter();
                subsets
                    .map(|(&k, s)| {
                        let c = s.shards.iter().map(|sh| sh.categories.as_str()).collect();
                        (k, s.samples, c)
                    })
                    .collect()
            };
            assert_eq!(
                categories(&out),
                categories(&src),
                "categories travel with the samples"
            );
        }
    }

    #[test]
    fn subsets_and_image_options_are_applied() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(&dir.path().join("src"));
        let opts = ReshardOptions {
            subsets: vec![Subset::Sft],
            transcode_edits: Some(TranscodeTarget::Jpeg { quality: 80 }),
            max_side: Some(16),
            ..Default::default()
        };
        assert_eq!(opts.total_samples(&src), src.len(Subset::Sft));
        let m = run(&src, &dir.path().join("out"), &opts);
        assert_ne!(m.version, src.manifest().version);
        assert_eq!(m.subsets.keys().collect::<Vec<_>>(), [&Subset::Sft]);
        let out = Dataset::open(dir.path().join("out")).unwrap();
        let sample = out.read_sample(Subset::Sft, 0).unwrap();
        for image in &sample.images {
            let info = probe(&image.bytes).unwrap();
            assert!(info.width.max(info.height) <= 16, "{info:?}");
            if image.role != Role::Source {
                assert_eq!(info.format, crate::codec::ImageFormat::Jpeg);
            }
        }
    }

    #[test]
    fn a_cancelled_reshard_writes_no_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(&dir.path().join("src"));
        let out = dir.path().join("out");
        let w = DatasetWriter::create(&out, options(ShardTarget::Samples(2))).unwrap();
        let e = reshard(&src, w, &ReshardOptions::default(), &[], &mut |p| {
            p.samples < 5
        });
        assert!(matches!(e, Err(ReshardError::Cancelled)), "{e:?}");
        assert!(out.join("sft-000000.tar.zst").exists());
        assert!(!out.join("manifest.json").exists());
    }

    fn files(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.to_string_lossy().ends_with(".partial"))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                (name, std::fs::read(&p).unwrap())
            })
            .collect()
    }

    #[test]
    fn a_resumed_reshard_takes_over_intact_shards_and_ends_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(&dir.path().join("src"));
        let opts = ReshardOptions::default();
        let whole = run(&src, &dir.path().join("whole"), &opts);

        // An interrupted run that completed some shards.
        let out = dir.path().join("out");
        let mut closed = Vec::new();
        let w = DatasetWriter::create(&out, options(ShardTarget::Samples(3))).unwrap();
        let e = reshard(&src, w, &opts, &[], &mut |p| {
            closed.extend(p.closed);
            p.samples < 8
        });
        assert!(matches!(e, Err(ReshardError::Cancelled)));
        assert!(closed.len() >= 2, "{closed:?}");
        // The second sft shard is damaged: it and those after it are written again.
        let damaged = out.join(&closed[1].shard.path);
        let mut bytes = std::fs::read(&damaged).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&damaged, bytes).unwrap();

        let mut whole_last = Progress::default();
        let w = DatasetWriter::create(dir.path().join("whole2"), options(ShardTarget::Samples(3)))
            .unwrap();
        reshard(&src, w, &opts, &[], &mut |p| {
            whole_last = p;
            true
        })
        .unwrap();

        let mut last = Progress::default();
        let mut reported = Vec::new();
        let w = DatasetWriter::create(&out, options(ShardTarget::Samples(3))).unwrap();
        let m = reshard(&src, w, &opts, &closed, &mut |p| {
            reported.extend(p.closed.clone());
            last = p;
            true
        })
        .unwrap();
        assert_eq!(m, whole);
        assert_eq!(
            last.resumed, closed[0].shard.samples,
            "only the intact shard"
        );
        assert_eq!(last.samples, src.manifest().total_samples());
        assert_eq!(
            (last.bytes, last.shards),
            (whole_last.bytes, whole_last.shards),
            "a resumed run reports the figures of an uninterrupted one"
        );
        assert_eq!(reported[0], closed[0]);
        assert_eq!(files(&out), files(&dir.path().join("whole")));
    }
}
