//! `editfeed fetch`: the command-line trainer. Streams batches from a daemon and reports
//! throughput; `--hash` prints `step rank subset sha256` per batch (the digest defined in
//! `editfeed::transport::wire`) and, last, the cursor to resume from; `--contact-sheet` draws the
//! first batch.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use editfeed::plan::{CurriculumFile, Mode, StreamSpec};
use editfeed::transport::proto::v1 as pb;

/// Arguments of `editfeed fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The daemon: host:port (plaintext), http://host:port or https://host:port.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub endpoint: String,
    /// A registered dataset name.
    #[arg(long)]
    pub dataset: String,
    #[command(flatten)]
    pub stream: StreamArgs,
    /// This trainer's rank.
    #[arg(long, default_value_t = 0)]
    pub rank: u32,
    /// Batches to fetch (0 = until the curriculum ends).
    #[arg(long, default_value_t = 10)]
    pub steps: u64,
    /// Resume after the batch that carried this cursor.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Print one `step rank subset sha256` line per batch, then the cursor.
    #[arg(long)]
    pub hash: bool,
    /// Draw the first batch into this PNG.
    #[arg(long)]
    pub contact_sheet: Option<PathBuf>,
    /// PEM certificate(s) to trust for an https:// endpoint (a daemon with TLS).
    #[arg(long)]
    pub tls_ca: Option<String>,
    /// A shared-memory folder this host's daemon also sees (its `shm_dir`, e.g.
    /// /dev/shm): large tensors then come as files there instead of in the messages.
    #[arg(long)]
    pub shm_dir: Option<PathBuf>,
}

/// What decides a stream's bytes, shared by fetch and the demo.
#[derive(Debug, Args, Clone)]
pub struct StreamArgs {
    /// The stream's seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples per global step over all ranks.
    #[arg(long, default_value_t = 8)]
    pub global_batch: u32,
    /// Ranks in the job.
    #[arg(long, default_value_t = 1)]
    pub world_size: u32,
    /// Output side in pixels (square unless --height is given).
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// Output height in pixels.
    #[arg(long)]
    pub height: Option<u32>,
    /// A curriculum TOML file (phases, category weights, shuffle).
    #[arg(long)]
    pub curriculum: Option<PathBuf>,
    /// Send the encoded image bytes instead of pixels.
    #[arg(long)]
    pub encoded: bool,
    /// Turn the random resized crop off (resize whole images).
    #[arg(long)]
    pub no_crop: bool,
    /// Horizontal flip probability.
    #[arg(long)]
    pub hflip: Option<f64>,
    /// What to do with instructions that name a direction when flipping.
    #[arg(long, value_parser = ["skip", "swap", "ignore"])]
    pub flip_policy: Option<String>,
    /// One evaluation pass (spec mode `eval`): each selected sample once, no
    /// augmentation, the last batch of each subset padded with a `valid` mask; the
    /// stream ends after it. `--steps 0` fetches the whole pass.
    #[arg(long)]
    pub eval: bool,
    /// How whole images meet the output: stretch, center_crop (the eval default) or
    /// letterbox. Needs --no-crop in training.
    #[arg(long, value_parser = ["stretch", "center_crop", "letterbox"])]
    pub fit: Option<String>,
}

impl StreamArgs {
    /// The request these arguments describe.
    pub fn request(
        &self,
        dataset: &str,
        rank: u32,
        max_batches: u64,
        cursor: Option<String>,
    ) -> anyhow::Result<pb::StreamRequest> {
        let mut spec = StreamSpec::new(self.seed, self.global_batch);
        if let Some(path) = &self.curriculum {
            spec = CurriculumFile::read(path)?.into_spec(self.seed, self.global_batch)?;
        }
        if self.eval {
            spec.mode = Mode::Eval;
            spec.validate()?;
        }
        let fit = match self.fit.as_deref() {
            Some("stretch") => pb::Fit::Stretch,
            Some("center_crop") => pb::Fit::CenterCrop,
            Some("letterbox") => pb::Fit::Letterbox,
            _ => pb::Fit::Unspecified,
        };
        if spec.mode == Mode::Eval
            && (self.no_crop || self.hflip.is_some() || self.flip_policy.is_some())
        {
            anyhow::bail!("--no-crop, --hflip and --flip-policy are training options: an eval pass is not augmented (choose the resize with --fit)");
        }
        let flip_policy = match self.flip_policy.as_deref() {
            Some("swap") => pb::FlipPolicy::Swap,
            Some("ignore") => pb::FlipPolicy::Ignore,
            Some(_) => pb::FlipPolicy::Skip,
            None => pb::FlipPolicy::Unspecified,
        };
        let augment = (spec.mode == Mode::Train).then(|| pb::Augment {
            crop: self.no_crop.then_some(false),
            hflip: self.hflip,
            flip_policy: flip_policy as i32,
            ..Default::default()
        });
        Ok(pb::StreamRequest {
            dataset: dataset.to_string(),
            spec: Some(editfeed::transport::convert::spec_to_wire(&spec)),
            rank,
            world_size: self.world_size,
            cursor: cursor.unwrap_or_default(),
            output: Some(pb::OutputSpec {
                width: self.size,
                height: self.height.unwrap_or(0),
                format: if self.encoded {
                    pb::OutputFormat::Encoded
                } else {
                    pb::OutputFormat::Uint8Hwc
                } as i32,
                buckets: vec![],
                fit: fit as i32,
            }),
            augment,
            max_batches,
            job: String::new(),
            shm_probe: String::new(),
            ..Default::default()
        })
    }
}

/// Totals of a fetch.
#[derive(Debug, Default, Clone)]
pub struct FetchReport {
    /// Batches received.
    pub batches: u64,
    /// Samples received.
    pub samples: u64,
    /// Tensor bytes received.
    pub bytes: u64,
    /// Seconds from request to last batch.
    pub seconds: f64,
    /// Seconds from request to first batch.
    pub first_batch_seconds: f64,
    /// The cursor after the last batch.
    pub cursor: String,
}

/// Streams a request, calling `on_batch` for each batch; returns the totals. With
/// `shm_dir`, tensors the daemon sends as files of that folder are read from there.
pub async fn stream(
    endpoint: &str,
    opts: &editfeed::transport::client::ConnectOptions,
    mut req: pb::StreamRequest,
    shm_dir: Option<&std::path::Path>,
    mut on_batch: impl FnMut(&pb::Batch) -> anyhow::Result<()>,
) -> anyhow::Result<FetchReport> {
    let mut client = editfeed::transport::client::connect_with(endpoint, opts).await?;
    let _probe = match shm_dir {
        Some(dir) => {
            let probe = editfeed::transport::shared_memory::Probe::create(dir).map_err(|e| {
                anyhow::anyhow!("--shm-dir {}: cannot create a file: {e}", dir.display())
            })?;
            req.shm_probe = probe.name().to_string();
            Some(probe)
        }
        None => None,
    };
    let started = Instant::now();
    let mut stream = client.stream(req).await.map_err(status_error)?.into_inner();
    let mut report = FetchReport::default();
    loop {
        let next = stream.message().await.map_err(|s| {
            let e = status_error(s);
            // The server's message says to resume from the last cursor: say which.
            match report.cursor.as_str() {
                "" => e,
                cursor => e.context(format!(
                    "the stream ended after {} batches; resume with --cursor {cursor}",
                    report.batches
                )),
            }
        })?;
        let Some(mut batch) = next else { break };
        if let Some(dir) = shm_dir {
            tokio::task::block_in_place(|| {
                editfeed::transport::shared_memory::take_files(&mut batch, dir)
            })?;
        }
        if report.batches == 0 {
            report.first_batch_seconds = started.elapsed().as_secs_f64();
        }
        report.batches += 1;
        report.samples += batch.samples.len() as u64;
        report.bytes += batch
            .tensors
            .iter()
            .map(|t| t.data.len() as u64)
            .sum::<u64>();
        report.cursor = batch.cursor.clone();
        on_batch(&batch)?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("server said {:?}: {}", s.code(), s.message())
}

/// Runs `editfeed fetch`.
pub fn run(args: FetchArgs) -> anyhow::Result<()> {
    let req = args
        .stream
        .request(&args.dataset, args.rank, args.steps, args.cursor.clone())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let pb = if args.hash {
        indicatif::ProgressBar::hidden()
    } else {
        super::progress::bar(args.steps, "fetch")
    };
    let mut first = true;
    let opts =
        editfeed::transport::client::ConnectOptions::from_files(args.tls_ca.as_deref(), None)?;
    let shm_dir = args.shm_dir.as_deref();
    let report = rt.block_on(stream(&args.endpoint, &opts, req, shm_dir, |batch| {
        if args.hash {
            println!(
                "{} {} {} {}",
                batch.step,
                batch.rank,
                batch.subset,
                editfeed::transport::wire::batch_digest(batch)
            );
        }
        if first {
            first = false;
            if let Some(path) = &args.contact_sheet {
                super::contact_sheet::write(batch, path)?;
                eprintln!("contact sheet: {}", path.display());
            }
        }
        pb.inc(1);
        Ok(())
    }))?;
    pb.finish_and_clear();
    eprintln!(
        "{} batches, {} samples in {:.2} s: {:.1} samples/s, {:.1} MB/s; first batch after {:.3} s",
        report.batches,
        report.samples,
        report.seconds,
        report.samples as f64 / report.seconds.max(1e-9),
        report.bytes as f64 / 1e6 / report.seconds.max(1e-9),
        report.first_batch_seconds
    );
    if args.hash {
        println!("{}", report.cursor);
    }
    Ok(())
}
