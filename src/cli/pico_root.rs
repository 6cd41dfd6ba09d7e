//! `editfeed bench pico-root`: writes a Pico-Banana-400K root in the published layout
//! from synthetic samples at Pico-Banana's sizes (the three JSONL files, PNG edits under
//! `images/`, JPEG sources in a download folder named like their URLs), so that
//! `pack pico-banana` can be measured at scale without the real download. The same
//! seed writes the same files.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use editfeed::dataset::sample::{Role, Sample};
use editfeed::dataset::synth::{synth_sample, SynthOptions};
use editfeed::dataset::Subset;
use serde_json::json;

/// Flags of `bench pico-root`.
#[derive(Debug, Args)]
pub struct PicoRootArgs {
    /// The folder to write: `<out>/pico` (the root) and `<out>/sources` (the source
    /// photos, for `--source-dir`).
    #[arg(long)]
    pub out: PathBuf,
    /// Rows over the three files (about 60% single-turn, 20% each other kind).
    #[arg(long, default_value_t = 1000)]
    pub rows: u64,
    /// The seed of the synthetic samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Multiplies every image side (1.0 = Pico-Banana's sizes).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f32,
}

fn put(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(path.parent().expect("a file in a folder"))?;
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The JSONL row of a synthetic sample, its files written under `root` and `sources`.
fn row(
    sample: &Sample,
    subset: Subset,
    i: u64,
    root: &Path,
    sources: &Path,
) -> anyhow::Result<serde_json::Value> {
    let url = format!(
        "https://farm4.staticflickr.com/3/synth{}_{i}_o.jpg",
        subset.id()
    );
    let mut edits: Vec<String> = Vec::new();
    for img in &sample.images {
        match img.role {
            Role::Source => put(
                &sources.join(format!("synth{}_{i}_o.jpg", subset.id())),
                &img.bytes,
            )?,
            role => {
                let rel = match role {
                    Role::Turn(t) => {
                        format!("images/multi-turn/{i}_0_turn{t}.{}", img.format.ext())
                    }
                    other => format!(
                        "images/{}/{i}_{}.{}",
                        subset.name(),
                        other.field(),
                        img.format.ext()
                    ),
                };
                put(&root.join(&rel), &img.bytes)?;
                edits.push(rel);
            }
        }
    }
    let m = &sample.meta;
    Ok(match subset {
        Subset::Sft => json!({
            "open_image_input_url": url, "text": m.text, "summarized_text": m.summarized_text,
            "output_image": edits[0], "edit_type": m.edit_type,
        }),
        Subset::Preference => json!({
            "open_image_input_url": url, "text": m.text, "summarized_text": m.summarized_text,
            "output_image": edits[0], "rejected_images": edits[1..], "edit_type": m.edit_type,
        }),
        Subset::MultiTurn => {
            let last = edits.len();
            let mut files = vec![json!({"id": "original_input_image", "url": url})];
            for (t, rel) in edits.iter().enumerate() {
                let id = match t + 1 == last {
                    true => "final_image".to_string(),
                    false => format!("edit_turn{}", t + 1),
                };
                files.push(json!({"id": id, "url": rel}));
            }
            json!({"files": files, "metadata_edit_turn_prompts": m.turns})
        }
    })
}

/// Runs `bench pico-root`.
pub fn run(a: PicoRootArgs) -> anyhow::Result<()> {
    let opts = SynthOptions {
        samples: a.rows,
        seed: a.seed,
        scale: a.scale,
        ..Default::default()
    };
    let (root, sources) = (a.out.join("pico"), a.out.join("sources"));
    let mut bytes = 0u64;
    for (subset, n) in opts.split() {
        let name = match subset {
            Subset::Sft => "sft.jsonl",
            Subset::Preference => "preference.jsonl",
            Subset::MultiTurn => "multi-turn.jsonl",
        };
        let mut lines = String::new();
        for i in 0..n {
            let sample = synth_sample(&opts, subset, i);
            bytes += sample
                .images
                .iter()
                .map(|im| im.bytes.len() as u64)
                .sum::<u64>();
            lines.push_str(&row(&sample, subset, i, &root, &sources)?.to_string());
            lines.push('\n');
        }
        put(&root.join(name), lines.as_bytes())?;
    }
    println!(
        "{} rows, {:.1} MB of images: --root {} --source-dir {}",
        a.rows,
        bytes as f64 / 1e6,
        root.display(),
        sources.display()
    );
    Ok(())
}
