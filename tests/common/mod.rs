//! Fixtures shared by the black-box tests: small synthetic datasets written by code.

#![allow(dead_code)]

use std::path::Path;

use editfeed::dataset::synth::{synth_sample, SynthOptions};
use editfeed::dataset::writer::{DatasetWriter, ShardTarget, WriteOptions};
use editfeed::dataset::{Manifest, Sample, Subset};

/// Small synthetic options: `samples` over three subsets, images at 1/16 scale.
pub fn small_synth(samples: u64, seed: u64) -> SynthOptions {
    SynthOptions {
        samples,
        seed,
        scale: 0.0625,
        jpeg_quality: 85,
    }
}

/// Every sample of the options, in canonical order.
pub fn all_samples(opts: &SynthOptions) -> Vec<Sample> {
    opts.split()
        .iter()
        .flat_map(|&(s, n)| (0..n).map(move |i| synth_sample(opts, s, i)))
        .collect()
}

/// Writes `samples` into `root` with a shard target; returns the manifest.
pub fn write_dataset(root: &Path, samples: &[Sample], target: ShardTarget) -> Manifest {
    let mut w = DatasetWriter::create(
        root,
        WriteOptions {
            target,
            level: 3,
            overwrite: true,
        },
    )
    .unwrap();
    for s in samples {
        w.add(s).unwrap();
    }
    w.finish().unwrap()
}

/// The samples of one subset, in order.
pub fn of_subset(samples: &[Sample], subset: Subset) -> Vec<&Sample> {
    samples.iter().filter(|s| s.subset() == subset).collect()
}

/// The built `editfeed` binary.
pub fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_editfeed"))
}
