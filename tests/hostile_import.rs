//! Black-box tests of the Pico-Banana importer against hostile metadata: paths that
//! leave the root (`..`, absolute, symlinks), one file under several spellings, FIFOs
//! and devices in place of images, oversized files and decompression bombs. Each bad
//! row must be skipped and reported with its file, line and reason, without the packer
//! reading what it names.

use std::path::{Path, PathBuf};

use editfeed::dataset::pico_banana::{import, ImportOptions, SourceOptions};
use editfeed::dataset::writer::{DatasetWriter, ShardTarget, WriteOptions};
use editfeed::dataset::{Dataset, Subset};
use image::{DynamicImage, RgbImage};

const ZOOM: &str = "Zoom in";

fn png(seed: u8) -> Vec<u8> {
    let img = DynamicImage::ImageRgb8(RgbImage::from_fn(16, 16, |x, y| {
        image::Rgb([x as u8 ^ seed, y as u8, seed])
    }));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn put(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn link(target: &Path, at: &Path) {
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, at).unwrap();
}

fn row(src: &str, output: &str, extra: &str) -> String {
    format!(
        r#"{{"open_image_input_url":"https://farm4.staticflickr.com/3/{src}_o.jpg","text":"zoom","output_image":"{output}","edit_type":"{ZOOM}"{extra}}}"#
    )
}

struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    sources: PathBuf,
    oi: PathBuf,
    map: PathBuf,
    /// A folder beside the root holding files no row may read.
    outside: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let f = Fixture {
            root: base.join("pico"),
            sources: base.join("sources"),
            oi: base.join("oi"),
            map: base.join("map.csv"),
            outside: base.join("outside"),
            base,
            _dir: dir,
        };
        for d in [&f.root, &f.sources, &f.oi, &f.outside] {
            std::fs::create_dir_all(d).unwrap();
        }
        put(&f.map, b"ImageID,OriginalURL\n");
        put(&f.outside.join("secret.png"), &png(99));
        f
    }

    fn jsonl(&self, name: &str, lines: &[String]) {
        put(&self.root.join(name), (lines.join("\n") + "\n").as_bytes());
    }

    fn options(&self) -> ImportOptions {
        ImportOptions {
            root: self.root.clone(),
            sources: SourceOptions {
                source_dir: Some(self.sources.clone()),
                source_map: Some(self.map.clone()),
                source_images: Some(self.oi.clone()),
            },
            ..Default::default()
        }
    }

    fn import(&self, opts: &ImportOptions) -> Vec<(String, u64, &'static str)> {
        let out = self.base.join(format!("ds-{}", rand_suffix()));
        let w = DatasetWriter::create(
            &out,
            WriteOptions {
                target: ShardTarget::Samples(8),
                level: 1,
                compress_literals: false,
                overwrite: false,
            },
        )
        .unwrap();
        let done = import(opts, w, &|_| {}).unwrap();
        // Nothing from outside the root reached the shards.
        let ds = Dataset::open(&out).unwrap();
        let secret = png(99);
        for subset in [Subset::Sft, Subset::Preference, Subset::MultiTurn] {
            for i in 0..ds.len(subset) {
                let s = ds.read_sample(subset, i).unwrap();
                assert!(s.images.iter().all(|im| im.bytes[..] != secret[..]));
            }
        }
        done.report
            .skipped
            .iter()
            .map(|s| (s.file.clone(), s.line, s.reason.name()))
            .collect()
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn paths_leaving_the_root_are_refused_and_spellings_of_one_file_are_duplicates() {
    let f = Fixture::new();
    put(&f.sources.join("a_o.jpg"), &png(1));
    put(&f.root.join("images/a.png"), &png(2));
    put(&f.root.join("images/b.png"), &png(3));
    put(&f.root.join("local/s.png"), &png(4));
    let secret = f.outside.join("secret.png");
    link(&secret, &f.root.join("images/out.png"));
    link(&secret, &f.root.join("local/out.png"));
    link(
        &f.root.join("images/a.png"),
        &f.root.join("images/alias.png"),
    );
    // A file of the source folder and one of the Open Images folder pointing out.
    link(&secret, &f.sources.join("evil_o.jpg"));
    link(&secret, &f.oi.join("ID9.jpg"));
    put(
        &f.map,
        b"ImageID,OriginalURL\nID9,https://farm4.staticflickr.com/3/mapped_o.jpg\n",
    );
    let abs_secret = secret.display().to_string();
    let abs_a = f.root.join("images/a.png").display().to_string();
    f.jsonl(
        "sft.jsonl",
        &[
            // 1: good.
            row("a", "images/a.png", ""),
            // 2-4: the output image leaves the root through .., an absolute path, a symlink.
            row("a", "../outside/secret.png", ""),
            row("a", &abs_secret, ""),
            row("a", "images/out.png", ""),
            // 5-7: the same file as line 1 under three other spellings.
            row("a", "./images/../images/a.png", ""),
            row("a", &abs_a, ""),
            row("a", "images/alias.png", ""),
            // 8-9: the source photo leaves the root through .. and a symlink.
            row(
                "a",
                "images/b.png",
                r#","local_input_image":"../outside/secret.png""#,
            ),
            row(
                "a",
                "images/b.png",
                r#","local_input_image":"local/out.png""#,
            ),
            // 10: the source folder's file is a symlink out of it.
            row("evil", "images/b.png", ""),
            // 11: the Open Images folder's file is a symlink out of it.
            row("mapped", "images/b.png", ""),
            // 12: a good row with a source inside the root.
            row("x", "images/b.png", r#","local_input_image":"local/s.png""#),
        ],
    );
    f.jsonl(
        "preference.jsonl",
        &[row(
            "a",
            "images/a.png",
            r#","rejected_images":["images/b.png","../outside/secret.png"]"#,
        )],
    );
    let sft = |line, reason| ("sft.jsonl".to_string(), line, reason);
    assert_eq!(
        f.import(&f.options()),
        vec![
            sft(2, "outside_root"),
            sft(3, "outside_root"),
            sft(4, "outside_root"),
            sft(5, "duplicate_output"),
            sft(6, "duplicate_output"),
            sft(7, "duplicate_output"),
            sft(8, "outside_root"),
            sft(9, "outside_root"),
            sft(10, "outside_root"),
            sft(11, "outside_root"),
            ("preference.jsonl".to_string(), 1, "outside_root"),
        ]
    );
}

#[test]
fn outside_paths_are_refused_whether_or_not_they_exist() {
    let f = Fixture::new();
    put(&f.sources.join("a_o.jpg"), &png(1));
    put(&f.root.join("images/a.png"), &png(2));
    f.jsonl(
        "sft.jsonl",
        &[
            row("a", "images/a.png", ""),
            row("a", "../outside/secret.png", ""),
            row("a", "../outside/absent.png", ""),
        ],
    );
    let got = f.import(&f.options());
    let reasons: Vec<_> = got.iter().map(|r| (r.1, r.2)).collect();
    assert_eq!(reasons, vec![(2, "outside_root"), (3, "outside_root")]);
}

/// Runs `f` on a thread and fails if it does not finish within `secs` seconds (a read
/// that blocks forever must fail the test, not hang it).
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("did not finish within {secs} s"))
}

fn mkfifo(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn fifos_devices_and_oversized_files_are_skipped_without_blocking_or_reading() {
    let f = Fixture::new();
    put(&f.sources.join("a_o.jpg"), &png(1));
    put(&f.root.join("images/a.png"), &png(2));
    mkfifo(&f.root.join("images/fifo.png"));
    mkfifo(&f.sources.join("fifo_o.jpg"));
    put(&f.root.join("images/c.png"), &png(3));
    // Larger than the limit below, but sparse: nothing is allocated on disk.
    let big = std::fs::File::create(f.root.join("images/big.png")).unwrap();
    big.set_len((1 << 20) + 1).unwrap();
    f.jsonl(
        "sft.jsonl",
        &[
            row("a", "images/a.png", ""),
            row("a", "images/fifo.png", ""),
            row("fifo", "images/c.png", ""),
            row("a", "images/big.png", ""),
            row("a", "images", ""),
        ],
    );
    let mut opts = f.options();
    opts.images.max_image_bytes = 1 << 20;
    let got = within(20, move || {
        let got = f.import(&opts);
        drop(f);
        got
    });
    let reasons: Vec<_> = got.iter().map(|r| (r.1, r.2)).collect();
    assert_eq!(
        reasons,
        vec![
            (2, "not_a_file"),
            (3, "not_a_file"),
            (4, "image_too_large"),
            (5, "not_a_file")
        ]
    );
}

#[test]
fn a_device_is_refused_by_type_not_read_until_memory_runs_out() {
    // `--source-dir /dev` and a URL ending in /zero make the source photo /dev/zero.
    let f = Fixture::new();
    put(&f.root.join("images/a.png"), &png(2));
    put(&f.root.join("images/b.png"), &png(3));
    f.jsonl(
        "sft.jsonl",
        &[
            row("a", "images/a.png", ""),
            r#"{"open_image_input_url":"https://example.com/zero","text":"zoom","output_image":"images/a.png","edit_type":"Zoom in"}"#.to_string(),
            row("a", "images/b.png", r#","local_input_image":"images/a.png""#),
        ],
    );
    let mut opts = f.options();
    opts.sources.source_dir = Some(PathBuf::from("/dev"));
    opts.sources.source_map = None;
    opts.sources.source_images = None;
    let got = within(20, move || {
        let got = f.import(&opts);
        drop(f);
        got
    });
    let reasons: Vec<_> = got.iter().map(|r| (r.1, r.2)).collect();
    assert_eq!(reasons, vec![(1, "unresolved_source"), (2, "not_a_file")]);
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_decompression_bomb_is_skipped_at_pack_time_without_a_transcode() {
    // A real PNG whose IHDR is patched to declare 100000x100000, CRC fixed.
    let mut bomb = png(5);
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let f = Fixture::new();
    put(&f.sources.join("a_o.jpg"), &png(1));
    put(&f.root.join("images/a.png"), &png(2));
    put(&f.root.join("images/bomb.png"), &bomb);
    f.jsonl(
        "sft.jsonl",
        &[
            row("a", "images/a.png", ""),
            row("a", "images/bomb.png", ""),
        ],
    );
    let got = f.import(&f.options());
    let reasons: Vec<_> = got.iter().map(|r| (r.1, r.2)).collect();
    assert_eq!(reasons, vec![(2, "image_too_large")]);
}
