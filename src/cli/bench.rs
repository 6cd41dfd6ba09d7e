//! `editfeed bench`: the in-process parts of the benchmark that `bench/run` drives.
//! `floor` measures decoding, cropping and resizing alone (the pipeline's per-sample
//! work without reading, collating or gRPC), on one thread and on all cores, as the
//! throughput the daemon cannot exceed. `replicate` writes a dataset whose manifest
//! lists hundreds of thousands of samples by hard-linking the shards of a small one, to
//! measure the time to the first batch on a manifest of Pico-Banana's size. `pico-root`
//! writes a Pico-Banana root to measure packing.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use editfeed::dataset::manifest::{manifest_version, ContentHasher, MANIFEST_FILE};
use editfeed::dataset::sample::{Sample, SampleImage};
use editfeed::dataset::{Dataset, Manifest, Subset};
use editfeed::pipeline::augment::{self, AugmentSpec, SampleRng, Texts};
use editfeed::pipeline::prepare::select_images;
use editfeed::plan::SampleRef;

/// What to measure.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Decode, crop and resize a dataset's samples in process, with nothing else:
    /// prints one JSON line with samples/s.
    Floor(FloorArgs),
    /// Write a dataset of at least --samples samples whose shards are hard links to the
    /// shards of --data (same bytes, same indexes, a manifest of the full size).
    Replicate(ReplicateArgs),
    /// Write a Pico-Banana root in the published layout from synthetic samples, for
    /// measuring `pack pico-banana`.
    PicoRoot(super::pico_root::PicoRootArgs),
}

/// Flags of `bench floor`.
#[derive(Debug, Args)]
pub struct FloorArgs {
    /// The dataset folder.
    #[arg(long)]
    pub data: PathBuf,
    /// sft, preference or multi_turn.
    #[arg(long, default_value = "sft")]
    pub subset: String,
    /// Output side in pixels.
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// Threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Samples to process over all threads (after one untimed warm-up sample each).
    #[arg(long, default_value_t = 64)]
    pub samples: u64,
    /// Distinct samples read into memory before the clock starts, cycled through.
    #[arg(long, default_value_t = 32)]
    pub distinct: u64,
    /// The seed of the crops and flips.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Flags of `bench replicate`.
#[derive(Debug, Args)]
pub struct ReplicateArgs {
    /// The small dataset to replicate (its folder).
    #[arg(long)]
    pub data: PathBuf,
    /// The folder to write (on the same file system, for hard links); replaced.
    #[arg(long)]
    pub out: PathBuf,
    /// At least this many samples in all (every shard is repeated the same number of
    /// times).
    #[arg(long, default_value_t = 400_000)]
    pub samples: u64,
}

/// Runs `editfeed bench`.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Floor(a) => floor(a),
        BenchCommand::Replicate(a) => replicate(a),
        BenchCommand::PicoRoot(a) => super::pico_root::run(a),
    }
}

fn floor(a: FloorArgs) -> anyhow::Result<()> {
    let subset =
        Subset::from_name(&a.subset).with_context(|| format!("unknown subset {:?}", a.subset))?;
    let ds = Dataset::open(a.data.as_path())?;
    let n = ds.len(subset).min(a.distinct);
    anyhow::ensure!(n > 0, "the dataset has no {subset} samples");
    let samples: Vec<Sample> = (0..n)
        .map(|i| ds.read_sample(subset, i))
        .collect::<Result<_, _>>()?;
    let slots = match subset {
        Subset::Sft => 2,
        Subset::Preference => 3,
        Subset::MultiTurn => {
            1 + ds
                .manifest()
                .subsets
                .get(&subset)
                .map_or(0, |s| s.max_turns) as usize
        }
    };
    let threads = match a.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        t => t,
    };
    let spec = AugmentSpec::default();
    let target = (a.size, a.size);
    let per_image = (a.size * a.size * 3) as usize;
    let work = |t: usize, count: u64| -> anyhow::Result<()> {
        let mut out = vec![0u8; slots * per_image];
        for k in 0..count {
            let ordinal = (t as u64 + k * threads as u64) % n;
            let sample = &samples[ordinal as usize];
            let sref = SampleRef {
                subset,
                ordinal,
                epoch: k,
                offset: ordinal,
                turn: 0,
            };
            let images: Vec<&SampleImage> = select_images(sample, a.seed, &sref);
            let rng = SampleRng {
                seed: a.seed,
                subset,
                epoch: k,
                ordinal,
            };
            let texts = Texts::from_meta(&sample.meta);
            augment::process(
                &images,
                &texts,
                &spec,
                rng,
                target,
                &mut out[..images.len() * per_image],
            )
            .with_context(|| format!("sample {}", sample.key))?;
        }
        Ok(())
    };
    let per_thread = a.samples.div_ceil(threads as u64);
    let barrier = std::sync::Barrier::new(threads + 1);
    let (elapsed, result) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, work) = (&barrier, &work);
                s.spawn(move || {
                    let warm = work(t, 1);
                    barrier.wait();
                    warm.and_then(|()| work(t, per_thread))
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let result: anyhow::Result<()> = handles
            .into_iter()
            .try_for_each(|h| h.join().expect("floor thread panicked"));
        (started.elapsed().as_secs_f64(), result)
    });
    result?;
    let done = per_thread * threads as u64;
    println!(
        "{{\"subset\":\"{subset}\",\"size\":{},\"threads\":{threads},\"samples\":{done},\"seconds\":{elapsed:.4},\"samples_per_s\":{:.2}}}",
        a.size,
        done as f64 / elapsed
    );
    Ok(())
}

fn replicate(a: ReplicateArgs) -> anyhow::Result<()> {
    let ds = Dataset::open(a.data.as_path())?;
    let src = ds.manifest().clone();
    let total = src.total_samples();
    anyhow::ensure!(total > 0, "the dataset is empty");
    let copies = a.samples.div_ceil(total);
    if a.out.exists() {
        std::fs::remove_dir_all(&a.out)
            .with_context(|| format!("cannot replace {}", a.out.display()))?;
    }
    std::fs::create_dir_all(&a.out)?;
    let mut out = src.clone();
    for (subset, sm) in out.subsets.iter_mut() {
        let mut hasher = ContentHasher::default();
        let mut shards = Vec::new();
        for copy in 0..copies {
            for (i, sh) in src.subsets[subset].shards.iter().enumerate() {
                let index = ds.index(*subset, i)?;
                for e in &index.entries {
                    hasher.add(&e.key, &e.digest);
                }
                let mut sh = sh.clone();
                sh.path = link(&a.data, &a.out, &sh.path, copy)?;
                if let Some(ix) = &sh.index {
                    sh.index = Some(link(&a.data, &a.out, ix, copy)?);
                }
                shards.push(sh);
            }
        }
        sm.samples *= copies;
        sm.bytes *= copies;
        sm.shards = shards;
        sm.content_sha256 = hasher.finish();
    }
    out.version = manifest_version(&out);
    let bytes = out.to_json();
    Manifest::parse(&bytes).context("the replicated manifest does not validate")?;
    std::fs::write(a.out.join(MANIFEST_FILE), bytes)?;
    println!(
        "{} samples ({copies} copies of {total}) in {}",
        out.total_samples(),
        a.out.display()
    );
    Ok(())
}

/// Hard-links `rel` of `from` into `to` as copy `copy` (`<name>.r<copy>.<ext>`, in a
/// folder per copy so names stay unique); returns the new relative path.
fn link(from: &Path, to: &Path, rel: &str, copy: u64) -> anyhow::Result<String> {
    let new = format!("r{copy:06}/{rel}");
    let dst = to.join(&new);
    std::fs::create_dir_all(dst.parent().expect("joined path has a parent"))?;
    std::fs::hard_link(from.join(rel), &dst).with_context(|| {
        format!(
            "cannot link {} to {}",
            from.join(rel).display(),
            dst.display()
        )
    })?;
    Ok(new)
}
