//! `editfeed inspect`: counts per subset, category and edit-type histograms and the first
//! samples of a dataset; or the samples of a single shard file of any tool.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use editfeed::dataset::manifest::category_from_char;
use editfeed::dataset::{Dataset, Sample};
use editfeed::shard::stream_samples;

/// Arguments of `editfeed inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A dataset folder, or one `.tar` / `.tar.zst` shard.
    pub path: PathBuf,
    /// Samples to show per subset.
    #[arg(long, default_value_t = 2)]
    pub show: u64,
    /// Samples per subset read for the edit-type histogram (0 = all).
    #[arg(long, default_value_t = 5000)]
    pub scan: u64,
    /// Instead of the summary, list every member read through the index, one per line:
    /// `subset shard key field bytes sha256` (for checking other readers against ours).
    #[arg(long)]
    pub members: bool,
}

/// Runs `editfeed inspect`.
pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    if args.path.is_file() {
        return inspect_shard(&args);
    }
    let ds = Dataset::open(&args.path)?;
    if args.members {
        return list_members(&ds);
    }
    let m = ds.manifest();
    println!("dataset {}", args.path.display());
    println!("version {}", m.version);
    println!(
        "{:<11} {:>9} {:>7} {:>12}",
        "subset", "samples", "shards", "bytes"
    );
    for (subset, s) in &m.subsets {
        println!(
            "{:<11} {:>9} {:>7} {:>12}",
            subset.name(),
            s.samples,
            s.shards.len(),
            editfeed::units::format_bytes(s.bytes)
        );
    }
    let mut cats: BTreeMap<String, u64> = BTreeMap::new();
    for s in m.subsets.values() {
        for sh in &s.shards {
            for b in sh.categories.bytes() {
                let name =
                    category_from_char(b).map_or("(none)".to_string(), |c| c.name().to_string());
                *cats.entry(name).or_default() += 1;
            }
        }
    }
    println!("\ncategories (all samples):");
    for (c, n) in &cats {
        println!("  {c:<20} {n:>9}");
    }
    print_splits(m);
    let mut types: BTreeMap<String, u64> = BTreeMap::new();
    let mut scanned = 0;
    let mut shown = Vec::new();
    for subset in ds.subsets() {
        let n = if args.scan == 0 {
            ds.len(subset)
        } else {
            ds.len(subset).min(args.scan)
        };
        for i in 0..n {
            let sample = ds.read_sample(subset, i)?;
            scanned += 1;
            let t = sample
                .meta
                .edit_type
                .clone()
                .unwrap_or_else(|| "(none: multi-turn)".into());
            *types.entry(t).or_default() += 1;
            if i < args.show {
                shown.push(sample);
            }
        }
    }
    println!("\nedit types ({scanned} samples scanned):");
    let mut sorted: Vec<_> = types.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (t, n) in sorted {
        println!("  {n:>7}  {t}");
    }
    println!("\nfirst samples:");
    for s in &shown {
        print_sample(s);
    }
    Ok(())
}

/// Counts per split, subset and category, from the manifest alone.
fn print_splits(m: &editfeed::dataset::Manifest) {
    if m.splits.is_empty() {
        println!("\nsplits: none (pack or reshard with --split-file or --split-rule)");
        return;
    }
    let mut counts: BTreeMap<(u8, String, String), u64> = BTreeMap::new();
    let mut totals = vec![0u64; m.splits.len()];
    for (subset, s) in &m.subsets {
        for sh in &s.shards {
            let cats = sh.categories.as_bytes();
            for (i, b) in sh.splits.bytes().enumerate() {
                let id = b - b'0';
                let cat = cats
                    .get(i)
                    .and_then(|&c| category_from_char(c))
                    .map_or("(none)", |c| c.name());
                totals[id as usize] += 1;
                *counts
                    .entry((id, subset.name().to_string(), cat.to_string()))
                    .or_default() += 1;
            }
        }
    }
    let how = m.split_source.as_deref().unwrap_or("given");
    println!("\nsplits ({how}):");
    for (id, name) in m.splits.iter().enumerate() {
        println!("  {name:<11} {:>9}", totals[id]);
    }
    println!(
        "\n{:<11} {:<11} {:<20} {:>9}",
        "split", "subset", "category", "samples"
    );
    for ((id, subset, cat), n) in &counts {
        println!(
            "{:<11} {subset:<11} {cat:<20} {n:>9}",
            m.splits[*id as usize]
        );
    }
}

fn print_sample(s: &Sample) {
    println!(
        "  [{}] {} ({})",
        s.subset(),
        s.key,
        s.meta.edit_type.as_deref().unwrap_or("-")
    );
    for img in &s.images {
        let dims = image::ImageReader::new(std::io::Cursor::new(&img.bytes[..]))
            .with_guessed_format()
            .ok()
            .and_then(|r| r.into_dimensions().ok())
            .map_or("?".to_string(), |(w, h)| format!("{w}x{h}"));
        println!(
            "      {:<10} {:<4} {:>9} bytes  {dims}",
            img.role.field(),
            img.format.ext(),
            img.bytes.len()
        );
    }
    if s.meta.turns.is_empty() {
        println!("      text: {}", s.meta.text);
        if let Some(short) = &s.meta.summarized_text {
            println!("      short: {short}");
        }
    } else {
        for (i, t) in s.meta.turns.iter().enumerate() {
            println!("      turn {}: {t}", i + 1);
        }
    }
}

fn inspect_shard(args: &InspectArgs) -> anyhow::Result<()> {
    let name = args.path.display().to_string();
    let file = std::fs::File::open(&args.path)?;
    let mut count = 0u64;
    let mut fields: BTreeMap<String, u64> = BTreeMap::new();
    stream_samples(&name, std::io::BufReader::new(file), |raw| {
        if count < args.show {
            let list: Vec<_> = raw
                .members
                .iter()
                .map(|(f, b)| format!("{f} ({} B)", b.len()))
                .collect();
            println!("  {}: {}", raw.key, list.join(", "));
        }
        for (f, _) in &raw.members {
            *fields.entry(f.clone()).or_default() += 1;
        }
        count += 1;
        Ok(())
    })?;
    println!("shard {name}: {count} samples");
    for (f, n) in fields {
        println!("  field {f:<16} {n:>8}");
    }
    Ok(())
}

fn list_members(ds: &Dataset) -> anyhow::Result<()> {
    use sha2::{Digest, Sha256};
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for subset in ds.subsets() {
        for i in 0..ds.len(subset) {
            let shard = &ds.shards(subset)?[ds.locate(subset, i)?.shard].path;
            let raw = ds.read_raw(subset, i)?;
            for (field, bytes) in &raw.members {
                let sum = editfeed::hex::hex(&Sha256::digest(bytes));
                writeln!(
                    out,
                    "{subset} {shard} {} {field} {} {sum}",
                    raw.key,
                    bytes.len()
                )?;
            }
        }
    }
    Ok(())
}
