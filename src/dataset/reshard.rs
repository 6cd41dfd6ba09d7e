//! Rewrites an open dataset with another shard layout: every sample of the chosen
//! subsets, in canonical order, through a [`DatasetWriter`] with a new shard target and
//! compression level, optionally transcoding or shrinking images on the way. Without
//! image options the samples' bytes are unchanged, so the new version equals the old
//! one and cursors stay valid. The writer is deterministic, so the same source and
//! options always give byte-identical shards, indexes and manifest.
//!
//! Flow: dataset reader -> RESHARD -> dataset writer -> store (manifest last).

use bytes::Bytes;

use super::manifest::{category_from_char, Manifest};
use super::sample::Role;
use super::transcode::{transcode, TranscodeError, TranscodeTarget, DEFAULT_PIXEL_LIMIT};
use super::writer::{DatasetWriter, WriteError};
use super::{Dataset, DatasetError, Subset};

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Samples written.
    pub samples: u64,
    /// Compressed bytes written.
    pub bytes: u64,
    /// Shards closed.
    pub shards: u64,
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

/// Copies the samples of `source` into `writer` and writes the manifest. `on_progress`
/// runs after every sample; returning false cancels (no manifest is written, so the
/// partial output never becomes a dataset).
pub fn reshard(
    source: &Dataset,
    mut writer: DatasetWriter,
    opts: &ReshardOptions,
    on_progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<Manifest, ReshardError> {
    let mut progress = Progress::default();
    for subset in opts.subsets_of(source) {
        let categories: Vec<u8> = source
            .manifest()
            .subsets
            .get(&subset)
            .map(|s| {
                s.shards
                    .iter()
                    .flat_map(|sh| {
                        // Shards written without categories count as "none".
                        let n = sh.samples as usize;
                        let c = sh.categories.as_bytes();
                        (0..n).map(move |i| c.get(i).copied().unwrap_or(b'-'))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let len = source.len(subset);
        let mut start = 0;
        while start < len {
            let ordinals: Vec<u64> = (start..(start + READ_CHUNK).min(len)).collect();
            let raws = source
                .read_raw_many(subset, &ordinals)
                .map_err(|e| ReshardError::Read {
                    subset,
                    ordinal: start,
                    source: e,
                })?;
            for (ordinal, raw) in ordinals.iter().zip(raws) {
                let members = if opts.rewrites() {
                    rewrite_members(subset, &raw.key, raw.members, opts)?
                } else {
                    raw.members
                };
                let category = categories
                    .get(*ordinal as usize)
                    .and_then(|c| category_from_char(*c));
                progress.bytes += writer.add_members(
                    subset,
                    category,
                    &raw.key,
                    members.iter().map(|(f, b)| (f.as_str(), &b[..])),
                )?;
                progress.samples += 1;
                progress.shards = writer.shards_written();
                if !on_progress(progress) {
                    return Err(ReshardError::Cancelled);
                }
            }
            start += READ_CHUNK;
        }
    }
    Ok(writer.finish()?)
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
            overwrite: false,
        }
    }

    fn run(src: &Dataset, out: &std::path::Path, opts: &ReshardOptions) -> Manifest {
        let w = DatasetWriter::create(out, options(ShardTarget::Samples(3))).unwrap();
        reshard(src, w, opts, &mut |_| true).unwrap()
    }

    #[test]
    fn a_plain_reshard_keeps_every_sample_and_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(&dir.path().join("src"));
        let mut seen = Vec::new();
        let w = DatasetWriter::create(dir.path().join("out"), options(ShardTarget::Samples(3)))
            .unwrap();
        let m = reshard(&src, w, &ReshardOptions::default(), &mut |p| {
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
            assert_eq!(
                out.plan_input().subsets,
                src.plan_input().subsets,
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
                assert_eq!(info.format, crate::dataset::sample::ImageFormat::Jpeg);
            }
        }
    }

    #[test]
    fn a_cancelled_reshard_writes_no_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(&dir.path().join("src"));
        let out = dir.path().join("out");
        let w = DatasetWriter::create(&out, options(ShardTarget::Samples(2))).unwrap();
        let e = reshard(&src, w, &ReshardOptions::default(), &mut |p| p.samples < 5);
        assert!(matches!(e, Err(ReshardError::Cancelled)), "{e:?}");
        assert!(out.join("sft-000000.tar.zst").exists());
        assert!(!out.join("manifest.json").exists());
    }
}
