//! Black-box tests of `pack webdataset`: shards written by the tests with the `tar` and
//! `zstd` crates (plain `.tar`, single-frame `.tar.zst`, and editfeed's own multi-frame
//! shards) become datasets with the same keys and member bytes, in input order; foreign
//! field names are mapped and unmappable samples are reported with shard and key.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use editfeed::dataset::parallel::Parallelism;
use editfeed::dataset::sample::{Role, Sample, SampleMeta};
use editfeed::dataset::webdataset_import::{import_webdataset, WebDatasetError, WebDatasetOptions};
use editfeed::dataset::writer::{DatasetWriter, ShardTarget, WriteOptions};
use editfeed::dataset::{Category, Dataset, Subset};
use image::{DynamicImage, RgbImage};

type Members = Vec<(String, Vec<u8>)>;

fn encoded(seed: u8, format: image::ImageFormat) -> Vec<u8> {
    let img = DynamicImage::ImageRgb8(RgbImage::from_fn(32, 24, |x, y| {
        image::Rgb([x as u8 ^ seed, y as u8, seed])
    }));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn jpg(seed: u8) -> Vec<u8> {
    encoded(seed, image::ImageFormat::Jpeg)
}

fn png(seed: u8) -> Vec<u8> {
    encoded(seed, image::ImageFormat::Png)
}

fn members(list: &[(&str, Vec<u8>)]) -> Members {
    list.iter()
        .map(|(f, b)| (f.to_string(), b.clone()))
        .collect()
}

fn editfeed_json(subset: &str, text: &str) -> Vec<u8> {
    format!(r#"{{"subset":"{subset}","edit_type":"Zoom in","text":"{text}"}}"#).into_bytes()
}

/// An editfeed-shaped single-turn sample.
fn editfeed_sft(seed: u8) -> Members {
    members(&[
        ("json", editfeed_json("sft", &format!("edit {seed}"))),
        ("src.jpg", jpg(seed)),
        ("edit.png", png(seed + 100)),
    ])
}

/// A plain tar as other tools write it (with a directory entry, GNU headers).
fn tar_bytes(samples: &[(&str, Members)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_size(0);
    dir.set_mode(0o755);
    dir.set_cksum();
    b.append_data(&mut dir, "dir/", std::io::empty()).unwrap();
    for (key, members) in samples {
        for (field, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, format!("{key}.{field}"), &data[..])
                .unwrap();
        }
    }
    b.into_inner().unwrap()
}

fn write_tar(path: &Path, samples: &[(&str, Members)]) {
    std::fs::write(path, tar_bytes(samples)).unwrap();
}

/// A `.tar.zst` compressed as one zstd frame.
fn write_tar_zst(path: &Path, samples: &[(&str, Members)]) {
    let frame = zstd::bulk::compress(&tar_bytes(samples), 3).unwrap();
    std::fs::write(path, frame).unwrap();
}

fn writer(out: &Path) -> DatasetWriter {
    let opts = WriteOptions {
        target: ShardTarget::Samples(2),
        level: 3,
        compress_literals: false,
        overwrite: false,
    };
    DatasetWriter::create(out, opts).unwrap()
}

/// The paths of a written dataset's single-turn shards, in order.
fn sft_shards(root: &Path, manifest: &editfeed::dataset::Manifest) -> Vec<PathBuf> {
    manifest.subsets[&Subset::Sft]
        .shards
        .iter()
        .map(|s| root.join(&s.path))
        .collect()
}

fn options(shards: &[PathBuf], subset: Subset) -> WebDatasetOptions {
    WebDatasetOptions {
        shards: shards.to_vec(),
        subset,
        report: None,
        transcode_edits: None,
        parallel: Parallelism::threads(2),
    }
}

/// Every sample of a subset as (key, members).
fn read_back(out: &Path, subset: Subset) -> Vec<(String, Members)> {
    let ds = Dataset::open(out).unwrap();
    (0..ds.len(subset))
        .map(|i| {
            let raw = ds.read_raw(subset, i).unwrap();
            let m = raw
                .members
                .into_iter()
                .map(|(f, b)| (f, b.to_vec()))
                .collect();
            (raw.key, m)
        })
        .collect()
}

#[test]
fn plain_tar_and_single_frame_tar_zst_keep_keys_and_member_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let samples: Vec<(&str, Members)> = vec![
        ("000000", editfeed_sft(1)),
        ("000001", editfeed_sft(2)),
        ("dir/000002", editfeed_sft(3)),
    ];
    let tar = dir.path().join("in-000000.tar");
    let zst = dir.path().join("in-000000.tar.zst");
    write_tar(&tar, &samples);
    write_tar_zst(&zst, &samples);
    for (i, input) in [tar, zst].iter().enumerate() {
        let out = dir.path().join(format!("out{i}"));
        let bytes_seen = std::cell::Cell::new(0u64);
        let opts = options(std::slice::from_ref(input), Subset::Sft);
        let done = import_webdataset(&opts, writer(&out), &|n| {
            bytes_seen.set(bytes_seen.get() + n)
        })
        .unwrap();
        assert_eq!(bytes_seen.get(), std::fs::metadata(input).unwrap().len());
        assert_eq!((done.report.kept, done.report.mapped), (3, 0));
        assert!(done.report.skipped.is_empty());
        let back = read_back(&out, Subset::Sft);
        let want: Vec<(String, Members)> = samples
            .iter()
            .map(|(k, m)| (k.to_string(), m.clone()))
            .collect();
        assert_eq!(back, want, "{}", input.display());
        let ds = Dataset::open(&out).unwrap();
        let s = ds.read_sample(Subset::Sft, 0).unwrap();
        assert_eq!(s.meta.text, "edit 1");
        let cats = &ds.manifest().subsets[&Subset::Sft].shards[0].categories;
        assert_eq!(cats.as_bytes()[0], b'0' + Category::ScalePerspective.id());
    }
}

#[test]
fn foreign_fields_are_mapped_and_unmappable_samples_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (src, edit) = (jpg(7), png(8));
    let first = dir.path().join("a.tar");
    write_tar(
        &first,
        &[
            ("000000", editfeed_sft(1)),
            (
                "000001",
                members(&[
                    ("input.jpg", src.clone()),
                    ("output.png", edit.clone()),
                    ("txt", b"make the sky purple".to_vec()),
                    ("cls", b"4".to_vec()),
                ]),
            ),
            ("000002", members(&[("txt", b"only text".to_vec())])),
            (
                "000003",
                members(&[
                    ("jpg", src.clone()),
                    ("target.png", edit.clone()),
                    (
                        "json",
                        br#"{"instruction":"add a hat","edit_type":"Zoom in"}"#.to_vec(),
                    ),
                ]),
            ),
            (
                "000004",
                members(&[("jpg", src.clone()), ("edit.png", b"not a png".to_vec())]),
            ),
        ],
    );
    let second = dir.path().join("b.tar.zst");
    write_tar_zst(
        &second,
        &[
            ("000000", editfeed_sft(9)),
            ("000005", editfeed_sft(5)),
            (
                "000006",
                members(&[
                    ("json", editfeed_json("preference", "p")),
                    ("src.jpg", src.clone()),
                ]),
            ),
        ],
    );
    let out = dir.path().join("out");
    let done = import_webdataset(
        &options(&[first.clone(), second.clone()], Subset::Sft),
        writer(&out),
        &|_| {},
    )
    .unwrap();
    let r = &done.report;
    assert_eq!((r.kept, r.mapped), (2, 2));
    assert_eq!(r.dropped_fields.get("cls"), Some(&1));
    assert_eq!(r.dropped_fields.get("json"), Some(&1));
    let skipped: Vec<(String, &str, &str)> = r
        .skipped
        .iter()
        .map(|s| (s.shard.clone(), s.key.as_str(), s.reason.name()))
        .collect();
    let (a, b) = (first.display().to_string(), second.display().to_string());
    assert_eq!(
        skipped,
        vec![
            (a.clone(), "000002", "unmappable"),
            (a.clone(), "000004", "undecodable_image"),
            (b.clone(), "000000", "duplicate_key"),
            (b.clone(), "000006", "subset_mismatch"),
        ]
    );
    assert_eq!(
        r.shards.iter().map(|s| s.samples).collect::<Vec<_>>(),
        vec![5, 3]
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("import-report.json")).unwrap()).unwrap();
    assert_eq!(json["skipped"][0]["key"], "000002");
    assert_eq!(json["skipped"][0]["shard"], a.as_str());

    // Input order, mapped images byte-identical, text from txt or a foreign json.
    let ds = Dataset::open(&out).unwrap();
    let samples: Vec<Sample> = (0..ds.len(Subset::Sft))
        .map(|i| ds.read_sample(Subset::Sft, i).unwrap())
        .collect();
    let keys: Vec<&str> = samples.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys, ["000000", "000001", "000003", "000005"]);
    assert_eq!(samples[1].meta.text, "make the sky purple");
    assert_eq!(&samples[1].image(Role::Source).unwrap().bytes[..], &src[..]);
    assert_eq!(&samples[1].image(Role::Edit).unwrap().bytes[..], &edit[..]);
    assert_eq!(
        samples[2].meta,
        SampleMeta {
            subset: Some(Subset::Sft),
            edit_type: Some("Zoom in".into()),
            category: Some(Category::ScalePerspective),
            text: "add a hat".into(),
            ..Default::default()
        }
    );
    assert_eq!(samples[3].meta.text, "edit 5");
}

#[test]
fn editfeed_shards_reimport_with_the_same_content_hash() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let mut w = writer(&first);
    for i in 0..5u8 {
        let m = editfeed_sft(i);
        let sample = Sample::from_members(
            &format!("{i:08}"),
            m.into_iter().map(|(f, b)| (f, Bytes::from(b))).collect(),
        )
        .unwrap();
        w.add(&sample).unwrap();
    }
    let original = w.finish().unwrap();
    let shards = sft_shards(&first, &original);
    assert_eq!(shards.len(), 3, "multi-frame shards, several of them");
    let second = dir.path().join("second");
    let opts = WebDatasetOptions {
        shards,
        subset: Subset::Sft,
        report: Some(dir.path().join("r.json")),
        transcode_edits: None,
        parallel: Parallelism::threads(2),
    };
    let done = import_webdataset(&opts, writer(&second), &|_| {}).unwrap();
    assert_eq!(done.manifest.version, original.version);
    assert_eq!(
        done.manifest.subsets[&Subset::Sft].content_sha256,
        original.subsets[&Subset::Sft].content_sha256
    );
    assert!(dir.path().join("r.json").exists());
    assert!(!second.join("import-report.json").exists());
}

#[test]
fn a_corrupt_input_stops_the_import_without_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.tar");
    write_tar(&good, &[("000000", editfeed_sft(1))]);
    let bad = dir.path().join("bad.tar.zst");
    let mut frame = zstd::bulk::compress(&tar_bytes(&[("000001", editfeed_sft(2))]), 3).unwrap();
    frame.truncate(frame.len() / 2);
    std::fs::write(&bad, frame).unwrap();
    let out = dir.path().join("out");
    let err = import_webdataset(
        &options(&[good.clone(), bad], Subset::Sft),
        writer(&out),
        &|_| {},
    )
    .unwrap_err();
    assert!(matches!(err, WebDatasetError::Shard(_)), "{err}");
    assert!(!out.join("manifest.json").exists());
    let err = import_webdataset(
        &options(&[good, dir.path().join("missing.tar")], Subset::Sft),
        writer(&dir.path().join("out2")),
        &|_| {},
    )
    .unwrap_err();
    assert!(matches!(err, WebDatasetError::Open { .. }), "{err}");
}

#[test]
fn the_pack_command_imports_webdataset_shards() {
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("a.tar");
    let zst = dir.path().join("b.tar.zst");
    let pref = |seed: u8| {
        members(&[
            ("json", editfeed_json("preference", "prefer")),
            ("src.jpg", jpg(seed)),
            ("chosen.png", png(seed + 1)),
            ("rejected0.png", png(seed + 2)),
        ])
    };
    write_tar(&tar, &[("p0", pref(1)), ("p1", pref(2))]);
    write_tar_zst(
        &zst,
        &[("p2", pref(3)), ("p3", members(&[("txt", b"x".to_vec())]))],
    );
    let out = dir.path().join("out");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_editfeed"))
        .args(["pack", "webdataset"])
        .arg(&tar)
        .arg(&zst)
        .args(["--subset", "preference", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("samples written to preference: 3"),
        "{stdout}"
    );
    assert!(stdout.contains("p3: unmappable"), "{stdout}");
    let back = read_back(&out, Subset::Preference);
    let want: Vec<(String, Members)> = vec![
        ("p0".into(), pref(1)),
        ("p1".into(), pref(2)),
        ("p2".into(), pref(3)),
    ];
    assert_eq!(back, want);

    let usage = std::process::Command::new(env!("CARGO_BIN_EXE_editfeed"))
        .args(["pack", "webdataset", "--subset", "video", "--out"])
        .arg(dir.path().join("o2"))
        .arg(&tar)
        .output()
        .unwrap();
    assert!(!usage.status.success());
}

/// Packing with `--transcode-edits qoi` or `ppm` keeps what is served: the sources keep
/// their bytes, every edit becomes QOI or PPM, and the augmented pixels the daemon would
/// serve are identical.
fn transcode_serves_the_same_pixels(target: editfeed::codec::TranscodeTarget) {
    use editfeed::codec::ImageFormat;
    use editfeed::dataset::synth::{synth_sample, SynthOptions};
    use editfeed::pipeline::augment::{process, AugmentSpec, SampleRng, Texts};

    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("png");
    let mut w = writer(&first);
    let opts = SynthOptions {
        scale: 0.2,
        ..Default::default()
    };
    for i in 0..4 {
        w.add(&synth_sample(&opts, Subset::Sft, i)).unwrap();
    }
    let original = w.finish().unwrap();
    let shards = sft_shards(&first, &original);
    let second = dir.path().join("packed");
    let mut o = options(&shards, Subset::Sft);
    o.transcode_edits = Some(target);
    let done = import_webdataset(&o, writer(&second), &|_| {}).unwrap();
    assert_eq!(done.manifest.total_samples(), 4);
    let (png, packed) = (
        Dataset::open(&first).unwrap(),
        Dataset::open(&second).unwrap(),
    );
    for i in 0..4 {
        let (a, b) = (
            png.read_sample(Subset::Sft, i).unwrap(),
            packed.read_sample(Subset::Sft, i).unwrap(),
        );
        assert_eq!(a.key, b.key);
        assert_eq!(a.meta, b.meta);
        assert_eq!(a.image(Role::Source), b.image(Role::Source));
        let (ea, eb) = (a.image(Role::Edit).unwrap(), b.image(Role::Edit).unwrap());
        assert_eq!((ea.format, eb.format), (ImageFormat::Png, target.format()));
        assert_ne!(ea.bytes, eb.bytes);
        let pixels = |s: &Sample| {
            let images: Vec<_> = s.images.iter().collect();
            let mut out = vec![0u8; images.len() * 64 * 48 * 3];
            let rng = SampleRng {
                seed: 7,
                subset: Subset::Sft,
                epoch: 0,
                ordinal: i,
            };
            let spec = AugmentSpec::default();
            process(
                &images,
                &Texts::from_meta(&s.meta),
                &spec,
                rng,
                (64, 48),
                &mut out,
            )
            .unwrap();
            out
        };
        let (pa, pb) = (pixels(&a), pixels(&b));
        assert!(pa.iter().any(|&v| v != pa[0]));
        assert!(
            pa == pb,
            "sample {i}: the {target} pack serves other pixels"
        );
    }
}

#[test]
fn qoi_transcode_serves_the_same_pixels() {
    transcode_serves_the_same_pixels(editfeed::codec::TranscodeTarget::Qoi);
}

#[test]
fn ppm_transcode_serves_the_same_pixels() {
    transcode_serves_the_same_pixels(editfeed::codec::TranscodeTarget::Ppm);
}

#[test]
fn a_fifo_or_device_given_as_a_shard_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("in.tar");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let out = dir.path().join("out");
    let (tx, rx) = std::sync::mpsc::channel();
    let shards = [fifo, PathBuf::from("/dev/zero")];
    std::thread::spawn(move || {
        let errors: Vec<String> = shards
            .iter()
            .enumerate()
            .map(|(i, shard)| {
                let opts = options(std::slice::from_ref(shard), Subset::Sft);
                let w = writer(&out.join(i.to_string()));
                match import_webdataset(&opts, w, &|_| {}) {
                    Err(e @ WebDatasetError::NotAFile(_)) => e.to_string(),
                    other => format!("unexpected: {:?}", other.map(|_| ())),
                }
            })
            .collect();
        let _ = tx.send(errors);
    });
    let errors = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the import blocked on a fifo");
    assert!(
        errors[0].contains("in.tar is a fifo, not a regular file"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("/dev/zero is a character device"),
        "{errors:?}"
    );
}
