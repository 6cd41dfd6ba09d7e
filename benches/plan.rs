//! Benchmark of the stream plan on a Pico-Banana-sized dataset (257,730 single-turn,
//! 56,473 preference, 72,000 multi-turn samples; categories on the first two): plan
//! build time and memory, and the cost of a cursor lookup (one rank batch) at steps
//! 0, 10^3, 10^6 and 10^7, which must not grow with the step. Also measures shuffle
//! quality against read locality for the full and block shuffle modes.
//!
//! Run with `cargo bench --bench plan`. A plain `main` (harness = false), no framework.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use editfeed::dataset::edit_types::EDIT_TYPES;
use editfeed::dataset::{Category, Subset};
use editfeed::plan::{Plan, PlanDataset, PlanSubset, ShuffleSpec, StreamSpec};
use editfeed::rng::Rng;

const SIZES: [u64; 3] = [257_730, 56_473, 72_000];
const WORLD: u32 = 8;

const CURRICULUM: &str = r#"
seed = 17
global_batch = 256

[[curriculum]]
until_step = 20000
weights = { sft = 1.0 }

[[curriculum]]
until_step = 60000
ramp_steps = 5000
weights = { sft = 0.3, preference = 0.7 }

[[curriculum]]
ramp_steps = 2000
weights = { sft = 0.2, preference = 0.3, multi_turn = 0.5 }

[category_weights]
text_symbol = 3.0
human_centric = 2.0
pixel_photometric = 0.5
"#;

/// Categories in the published proportions, in a scrambled canonical order.
fn categories(len: u64, seed: u64) -> Arc<[Option<Category>]> {
    let total: u64 = EDIT_TYPES.iter().map(|t| t.2 as u64).sum();
    let mut out: Vec<Option<Category>> = Vec::with_capacity(len as usize);
    for (_, category, count) in EDIT_TYPES {
        let n = (count as u64 * len).div_ceil(total);
        out.extend(std::iter::repeat_n(Some(category), n as usize));
    }
    out.truncate(len as usize);
    Rng::from_seed(seed).shuffle(&mut out);
    out.into()
}

fn dataset() -> PlanDataset {
    PlanDataset {
        version: "bench-v1".into(),
        subsets: vec![
            PlanSubset {
                subset: Subset::Sft,
                len: SIZES[0],
                categories: Some(categories(SIZES[0], 1)),
                selected: None,
            },
            PlanSubset {
                subset: Subset::Preference,
                len: SIZES[1],
                categories: Some(categories(SIZES[1], 2)),
                selected: None,
            },
            PlanSubset {
                subset: Subset::MultiTurn,
                len: SIZES[2],
                categories: None,
                selected: None,
            },
        ],
    }
}

/// A field of /proc/self/status in KiB (Linux only; 0 elsewhere).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn fmt(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.1} us", ns as f64 / 1e3)
    } else {
        format!("{:.2} ms", ns as f64 / 1e6)
    }
}

fn bench_plan(label: &str, ds: &PlanDataset, spec: &StreamSpec) {
    println!("== {label}");
    let hwm_before = status_kib("VmHWM:");
    let rss_before = status_kib("VmRSS:");
    let mut builds = Vec::new();
    for _ in 0..9 {
        let t = Instant::now();
        let plan = black_box(Plan::new(ds, spec).unwrap());
        builds.push(t.elapsed());
        drop(plan);
    }
    println!("plan build: median {} over 9 runs", fmt(median(builds)));

    let plan = Plan::new(ds, spec).unwrap();
    for step in [0u64, 1_000, 1_000_000, 10_000_000] {
        let t = Instant::now();
        black_box(plan.rank_batch(step, 3, WORLD).unwrap());
        let cold = t.elapsed();
        let mut warm = Vec::new();
        for _ in 0..2001 {
            let t = Instant::now();
            black_box(plan.rank_batch(black_box(step), 3, WORLD).unwrap());
            warm.push(t.elapsed());
        }
        let mut counts = Vec::new();
        for _ in 0..2001 {
            let t = Instant::now();
            black_box(plan.consumed_before(black_box(step)));
            counts.push(t.elapsed());
        }
        println!(
            "step {step:>10}: rank batch ({} samples) first call {} (may build an epoch), warm median {}; consumed_before median {}; subset {}",
            spec.global_batch / WORLD,
            fmt(cold),
            fmt(median(warm)),
            fmt(median(counts)),
            plan.subset_at(step).unwrap(),
        );
    }
    // A trainer moving forward: consecutive steps, all ranks, caches warm.
    let t = Instant::now();
    let steps = 2_000u64;
    for step in 10_000_000..10_000_000 + steps {
        for rank in 0..WORLD {
            black_box(plan.rank_batch(step, rank, WORLD).unwrap());
        }
    }
    println!(
        "sequential: {} per step for all {WORLD} ranks (steps 10^7.., includes epoch builds)",
        fmt(t.elapsed() / steps as u32)
    );
    let hwm_after = status_kib("VmHWM:");
    let rss_after = status_kib("VmRSS:");
    let cached: u64 = Subset::ALL
        .iter()
        .filter_map(|&s| plan.epoch_len(s))
        .map(|l| l * 4 * editfeed::plan::EPOCH_CACHE_SIZE as u64)
        .sum();
    let members: u64 = ds
        .subsets
        .iter()
        .filter(|s| s.categories.is_some())
        .map(|s| s.len * 4)
        .sum();
    println!(
        "memory: peak RSS grew {:.1} MiB (VmHWM {} -> {} KiB), RSS with the plan alive grew {:.1} MiB; structures: epoch caches at most {:.1} MiB, category member lists {:.1} MiB",
        (hwm_after.saturating_sub(hwm_before)) as f64 / 1024.0,
        hwm_before,
        hwm_after,
        (rss_after.saturating_sub(rss_before)) as f64 / 1024.0,
        cached as f64 / (1024.0 * 1024.0),
        members as f64 / (1024.0 * 1024.0),
    );
}

/// Shuffle quality and read locality of one epoch of the single-turn subset.
fn shuffle_tradeoff(ds: &PlanDataset, shuffle: ShuffleSpec, label: &str) {
    let mut spec = StreamSpec::new(5, 256);
    spec.shuffle = shuffle;
    let sft_only = PlanDataset {
        version: ds.version.clone(),
        subsets: vec![PlanSubset {
            categories: None,
            ..ds.subsets[0].clone()
        }],
    };
    let plan = Plan::new(&sft_only, &spec).unwrap();
    let len = plan.epoch_len(Subset::Sft).unwrap();
    let order: Vec<u64> = (0..len)
        .map(|p| plan.sample_at(Subset::Sft, p).unwrap().ordinal)
        .collect();
    let n = len as f64;
    let displacement = order
        .iter()
        .enumerate()
        .map(|(pos, &o)| (pos as f64 - o as f64).abs())
        .sum::<f64>()
        / n
        / n;
    // Spearman's rho between canonical rank and stream position (a permutation, so the
    // closed form applies).
    let d2: f64 = order
        .iter()
        .enumerate()
        .map(|(pos, &o)| (pos as f64 - o as f64).powi(2))
        .sum();
    let rho = 1.0 - 6.0 * d2 / (n * (n * n - 1.0));
    let batch = 256usize;
    // Diversity: from how many separate stretches of canonical order a batch draws
    // (neighbours in canonical order tend to be alike, e.g. one source's edits).
    let distinct_per_batch = |chunk: u64| {
        let mut total = 0usize;
        for b in order.chunks_exact(batch) {
            let mut c: Vec<u64> = b.iter().map(|o| o / chunk).collect();
            c.sort_unstable();
            c.dedup();
            total += c.len();
        }
        total as f64 / (order.len() / batch) as f64
    };
    // Locality: range reads a reader needs for the next 4096 stream samples, if it
    // reads each maximal run of consecutive ordinals with one request.
    let horizon = 4096;
    let mut runs = 0usize;
    for w in order.chunks_exact(horizon) {
        let mut v = w.to_vec();
        v.sort_unstable();
        runs += 1 + v.windows(2).filter(|p| p[1] != p[0] + 1).count();
    }
    println!(
        "{label:<28} |displacement|/len {displacement:.3} (uniform 0.333), spearman {rho:+.4}, \
         distinct 64-/1024-ordinal chunks per 256-batch {:.1} / {:.1}, range reads per 4096 samples {:.0}",
        distinct_per_batch(64),
        distinct_per_batch(1024),
        runs as f64 / (order.len() / horizon) as f64,
    );
}

fn main() {
    let ds = dataset();
    println!(
        "dataset: sft {} / preference {} / multi_turn {} samples, global batch 256, world size {WORLD}",
        SIZES[0], SIZES[1], SIZES[2]
    );
    let weighted = StreamSpec::from_toml_str(CURRICULUM).unwrap();
    bench_plan(
        "curriculum with category weights, full shuffle",
        &ds,
        &weighted,
    );
    bench_plan(
        "default curriculum, no category weights",
        &ds,
        &StreamSpec::new(17, 256),
    );

    println!("== shuffle quality vs read locality (one sft epoch)");
    shuffle_tradeoff(&ds, ShuffleSpec::default(), "full permutation (default)");
    for (block, window) in [(16, 16), (64, 16), (64, 64), (256, 16)] {
        shuffle_tradeoff(
            &ds,
            ShuffleSpec {
                block: Some(block),
                window: Some(window),
            },
            &format!("block {block}, window {window}"),
        );
    }
}
