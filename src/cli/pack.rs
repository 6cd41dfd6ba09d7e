//! `editfeed pack`: builds a servable dataset from Pico-Banana-400K
//! (`pack pico-banana`) or from existing WebDataset shards (`pack webdataset`). Each is
//! a thin layer over the library importer: parse flags, show a progress bar, print the
//! summary to stdout.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use editfeed::codec::TranscodeTarget;
use editfeed::dataset::parts::Part;
use editfeed::dataset::pico_banana::{
    self, ImageOptions, ImportError, ImportOptions, SourceOptions,
};
use editfeed::dataset::transcode::DEFAULT_PIXEL_LIMIT;
use editfeed::dataset::webdataset_import::{self, WebDatasetError, WebDatasetOptions};
use editfeed::dataset::writer::DatasetWriter;
use editfeed::dataset::Subset;

use super::progress::bar;
use super::WriteArgs;

/// Skipped rows shown in the printed summary (the report file has them all).
const SHOWN_SKIPS: usize = 10;

/// What to pack from.
#[derive(Debug, Subcommand)]
pub enum PackCommand {
    /// Import Pico-Banana-400K as published: sft.jsonl, preference.jsonl,
    /// multi-turn.jsonl and the images/ tree under --root, plus downloaded source photos.
    PicoBanana(PicoBananaArgs),
    /// Make existing WebDataset shards (.tar or .tar.zst) servable.
    Webdataset(WebDatasetArgs),
}

/// Flags of `pack pico-banana`.
#[derive(Debug, Args)]
pub struct PicoBananaArgs {
    /// The folder holding the metadata files and the edited images at the relative
    /// paths they name.
    #[arg(long)]
    pub root: PathBuf,
    /// A folder of source photos named like the last segment of their URL
    /// (`..._o.jpg`); tried after local_input_image and --source-map.
    #[arg(long)]
    pub source_dir: Option<PathBuf>,
    /// A CSV mapping source URLs to Open Images ids (columns OriginalURL and ImageID,
    /// e.g. image_ids_and_rotation.csv); needs --source-images.
    #[arg(long, requires = "source_images")]
    pub source_map: Option<PathBuf>,
    /// The folder of `<ImageID>.jpg` files for --source-map.
    #[arg(long, requires = "source_map")]
    pub source_images: Option<PathBuf>,
    /// Re-encode edited images: jpeg:QUALITY, png, webp (lossless), qoi (lossless,
    /// decodes several times faster than PNG) or ppm (the served RGB pixels stored raw:
    /// about 1.5x PNG's size, no decoding). Default: stored exactly as published.
    #[arg(long, value_name = "FORMAT")]
    pub transcode_edits: Option<TranscodeTarget>,
    /// Shrink every image of a sample so its longer side is at most PX (keeps the
    /// aspect ratio, never enlarges).
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_side: Option<u32>,
    /// Skip (as image_too_large) image files larger than SIZE bytes (e.g. 64MiB),
    /// checked before reading.
    #[arg(long, value_name = "SIZE", value_parser = editfeed::units::parse_bytes, default_value = "64MiB")]
    pub max_image_bytes: u64,
    /// Skip (as image_too_large) images whose header declares more than N pixels
    /// (default: the daemon's max_decode_pixels default), checked from the header
    /// whether or not the image is transcoded.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PIXEL_LIMIT, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_decode_pixels: u64,
    /// Where to write the JSON report of skipped rows (default: <out>/import-report.json).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Import only the first N rows of each metadata file.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Pack only the I-th (from 0) of N contiguous ranges of the rows into --out, with a
    /// part.json record instead of a manifest; `editfeed manifest merge` joins the parts.
    #[arg(long, value_name = "I/N")]
    pub part: Option<Part>,
    /// Go on from the shards an interrupted run of this same pack left in --out (their
    /// checksums are checked) instead of starting again.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub write: WriteArgs,
}

/// Flags of `pack webdataset`.
#[derive(Debug, Args)]
pub struct WebDatasetArgs {
    /// The input shards, imported in this order.
    #[arg(required = true, value_name = "SHARDS")]
    pub shards: Vec<PathBuf>,
    /// The subset the samples belong to: sft, preference or multi_turn.
    #[arg(long, value_parser = parse_subset)]
    pub subset: Subset,
    /// Where to write the JSON report of skipped samples (default:
    /// <out>/import-report.json).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Re-encode every image but the source: jpeg:QUALITY, png, webp (lossless), qoi
    /// (lossless, decodes several times faster than PNG) or ppm (the served RGB pixels
    /// stored raw: larger, no decoding). Default: bytes kept as stored.
    #[arg(long, value_name = "FORMAT")]
    pub transcode_edits: Option<TranscodeTarget>,
    #[command(flatten)]
    pub write: WriteArgs,
}

pub(crate) fn parse_subset(s: &str) -> Result<Subset, String> {
    Subset::from_name(s)
        .ok_or_else(|| format!("unknown subset {s:?}: expected sft, preference or multi_turn"))
}

/// Runs `editfeed pack`.
pub fn run(cmd: PackCommand) -> anyhow::Result<()> {
    match cmd {
        PackCommand::PicoBanana(a) => pico(a),
        PackCommand::Webdataset(a) => webdataset(a),
    }
}

fn pico(a: PicoBananaArgs) -> anyhow::Result<()> {
    let opts = ImportOptions {
        root: a.root,
        sources: SourceOptions {
            source_dir: a.source_dir,
            source_map: a.source_map,
            source_images: a.source_images,
        },
        images: ImageOptions {
            transcode_edits: a.transcode_edits,
            max_side: a.max_side,
            pixel_limit: a.max_decode_pixels,
            max_image_bytes: a.max_image_bytes,
        },
        limit: a.limit,
        report: a.report,
        parallel: a.write.parallelism(),
        part: a.part,
        resume: a.resume,
    };
    opts.validate()?;
    let total = pico_banana::count_rows(&opts.root, opts.limit)?;
    let total = opts.part.map_or(total, |p| {
        let r = p.range(total);
        r.end - r.start
    });
    let mut write_opts = a.write.options();
    // Resuming writes over the shards it does not keep.
    write_opts.overwrite |= opts.resume;
    let writer = DatasetWriter::create(&a.write.out, write_opts)
        .with_context(|| format!("cannot write a dataset in {}", a.write.out.display()))?
        .with_splits(a.write.splits()?);
    let pb = bar(total, "rows");
    if opts.part.is_some() {
        let result = pico_banana::import_part(&opts, writer, &|n| pb.inc(n));
        pb.finish_and_clear();
        let done = result?;
        print!(
            "{}",
            done.report.summary(SHOWN_SKIPS, Some(&done.report_path))
        );
        println!(
            "part {}/{} (rows {}..{} of {}) written to {}; merge the parts with `editfeed manifest merge`",
            done.record.part,
            done.record.parts,
            done.record.rows.start,
            done.record.rows.end,
            done.record.total_rows,
            a.write.out.display()
        );
        return Ok(());
    }
    let result = pico_banana::import(&opts, writer, &|n| pb.inc(n));
    pb.finish_and_clear();
    match result {
        Ok(done) => {
            let summary = done.report.summary(SHOWN_SKIPS, Some(&done.report_path));
            written(summary, Some((&done.manifest.version, &a.write.out)));
            Ok(())
        }
        Err(ImportError::NothingImported {
            report,
            report_path,
            skipped,
        }) => {
            written(report.summary(SHOWN_SKIPS, Some(&report_path)), None);
            anyhow::bail!("no row was imported ({skipped} skipped); no dataset written")
        }
        Err(e) => Err(e.into()),
    }
}

fn webdataset(a: WebDatasetArgs) -> anyhow::Result<()> {
    let opts = WebDatasetOptions {
        shards: a.shards,
        subset: a.subset,
        report: a.report,
        transcode_edits: a.transcode_edits,
        parallel: a.write.parallelism(),
    };
    let writer = DatasetWriter::create(&a.write.out, a.write.options())
        .with_context(|| format!("cannot write a dataset in {}", a.write.out.display()))?
        .with_splits(a.write.splits()?);
    let pb = bar(webdataset_import::input_bytes(&opts.shards), "input bytes");
    let result = webdataset_import::import_webdataset(&opts, writer, &|n| pb.inc(n));
    pb.finish_and_clear();
    match result {
        Ok(done) => {
            let summary = done.report.summary(SHOWN_SKIPS, Some(&done.report_path));
            written(summary, Some((&done.manifest.version, &a.write.out)));
            Ok(())
        }
        Err(WebDatasetError::NothingImported {
            report,
            report_path,
            skipped,
        }) => {
            written(report.summary(SHOWN_SKIPS, Some(&report_path)), None);
            anyhow::bail!("no sample was imported ({skipped} skipped); no dataset written")
        }
        Err(e) => Err(e.into()),
    }
}

/// Prints an import's summary and, when it wrote a dataset, its version and place.
fn written(summary: String, dataset: Option<(&str, &std::path::Path)>) {
    print!("{summary}");
    if let Some((version, out)) = dataset {
        println!("dataset {version} written to {}", out.display());
    }
}
