//! Black-box tests of the Pico-Banana importer over fixtures in the published schema,
//! written by the tests into a temporary folder: all three subsets, the multi-turn order
//! trap, both preference forms, one bad row of each kind, the three ways of finding
//! source photos, transcoding, read-back and the `pack pico-banana` command.

use std::path::{Path, PathBuf};

use editfeed::codec::{ImageFormat, TranscodeTarget};
use editfeed::dataset::pico_banana::{
    import, ImageOptions, ImportError, ImportOptions, SourceOptions, SourceWay,
};
use editfeed::dataset::sample::{Role, Sample, SampleMeta};
use editfeed::dataset::transcode::probe;
use editfeed::dataset::writer::{DatasetWriter, ShardTarget, WriteOptions};
use editfeed::dataset::{Category, Dataset, Subset};
use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, RgbImage};

const ZOOM: &str = "Zoom in";
const GRAIN: &str = "Add film grain or vintage filter";

fn pixels(w: u32, h: u32, seed: u8) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([x as u8 ^ seed, y as u8, seed.wrapping_mul(37)])
    }))
}

/// A 64x48 JPEG source photo, distinct per seed.
fn jpeg(seed: u8) -> Vec<u8> {
    let mut out = Vec::new();
    pixels(64, 48, seed)
        .write_with_encoder(JpegEncoder::new_with_quality(&mut out, 85))
        .unwrap();
    out
}

/// A 64x64 PNG edit, distinct per seed.
fn png(seed: u8) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    pixels(64, 64, seed)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

fn put(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn url(name: &str) -> String {
    format!("https://farm4.staticflickr.com/3/{name}_o.jpg")
}

fn sft_row(src: &str, text: &str, output: &str, edit_type: &str, extra: &str) -> String {
    format!(
        r#"{{"open_image_input_url":"{}","text":"{text}","summarized_text":"short {text}","output_image":"{output}","edit_type":"{edit_type}"{extra}}}"#,
        url(src)
    )
}

/// The fixture: a Pico-Banana root, a source folder, an Open Images map and its images.
struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    source_dir: PathBuf,
    map: PathBuf,
    map_images: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let f = Fixture {
            root: base.join("pico"),
            source_dir: base.join("sources"),
            map: base.join("image_ids_and_rotation.csv"),
            map_images: base.join("openimages"),
            base,
            _dir: dir,
        };
        std::fs::create_dir_all(&f.root).unwrap();
        std::fs::create_dir_all(&f.source_dir).unwrap();
        std::fs::create_dir_all(&f.map_images).unwrap();
        put(&f.map, b"ImageID,OriginalURL\n");
        f
    }

    fn edit(&self, rel: &str, seed: u8) -> Vec<u8> {
        let bytes = png(seed);
        put(&self.root.join(rel), &bytes);
        bytes
    }

    fn source_in_dir(&self, name: &str, seed: u8) -> Vec<u8> {
        let bytes = jpeg(seed);
        put(&self.source_dir.join(format!("{name}_o.jpg")), &bytes);
        bytes
    }

    fn source_in_map(&self, id: &str, seed: u8) -> Vec<u8> {
        let bytes = jpeg(seed);
        put(&self.map_images.join(format!("{id}.jpg")), &bytes);
        bytes
    }

    fn jsonl(&self, name: &str, lines: &[String]) {
        put(&self.root.join(name), (lines.join("\n") + "\n").as_bytes());
    }

    fn options(&self) -> ImportOptions {
        ImportOptions {
            root: self.root.clone(),
            sources: SourceOptions {
                source_dir: Some(self.source_dir.clone()),
                source_map: Some(self.map.clone()),
                source_images: Some(self.map_images.clone()),
            },
            ..Default::default()
        }
    }

    fn out(&self, name: &str) -> PathBuf {
        self.base.join(name)
    }
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

fn all_samples(ds: &Dataset, subset: Subset) -> Vec<Sample> {
    (0..ds.len(subset))
        .map(|i| ds.read_sample(subset, i).unwrap())
        .collect()
}

/// What the full fixture holds, for checking the import.
struct Expected {
    sft_sources: Vec<Vec<u8>>,
    sft_edits: Vec<Vec<u8>>,
    pref_chosen: Vec<Vec<u8>>,
    pref_rejected: Vec<Vec<Vec<u8>>>,
    turns: Vec<Vec<u8>>,
}

/// Writes all three metadata files with good rows and one bad row of each kind.
fn full_fixture(f: &Fixture) -> Expected {
    // Source photos: a, b and the multi-turn one in the folder; c through the map.
    let local_a = jpeg(1);
    put(&f.root.join("local/a.jpg"), &local_a);
    let b = f.source_in_dir("b", 2);
    let c = f.source_in_map("c0ffee0000000001", 3);
    let m = f.source_in_dir("m", 4);
    put(
        &f.map,
        format!(
            "ImageID,Subset,OriginalURL,OriginalLandingURL,License,Title\n\
             c0ffee0000000001,train,{},https://flickr/c,CC BY 2.0,\"Title, with a comma\"\n",
            url("c")
        )
        .as_bytes(),
    );
    let e1 = f.edit("images/positive-edit/1.png", 11);
    let e2 = f.edit("images/positive-edit/2.png", 12);
    let e3 = f.edit("images/positive-edit/ab12cd_retry2.png", 13);
    put(
        &f.root.join("images/positive-edit/bad.png"),
        b"this is not a png",
    );
    f.jsonl(
        "sft.jsonl",
        &[
            // 1: good, source from local_input_image.
            sft_row("a", "zoom in", "images/positive-edit/1.png", ZOOM, r#","local_input_image":"local/a.jpg""#),
            // 2: good, source from the source folder.
            sft_row("b", "add grain", "images/positive-edit/2.png", GRAIN, ""),
            // 3: malformed json.
            r#"{"open_image_input_url": "https://x/y_o.jpg", "text": "#.to_string(),
            // 4: missing required field (text).
            format!(r#"{{"open_image_input_url":"{}","output_image":"images/positive-edit/2.png","edit_type":"{ZOOM}"}}"#, url("b")),
            // 5: wrong type.
            sft_row("b", "x", "images/positive-edit/2.png", ZOOM, "").replace(r#""text":"x""#, r#""text":7"#),
            // 6: edited image missing.
            sft_row("b", "zoom", "images/positive-edit/missing.png", ZOOM, ""),
            // 7: local_input_image names a missing file, nothing else finds the source.
            sft_row("gone", "zoom", "images/positive-edit/7.png", ZOOM, r#","local_input_image":"local/gone.jpg""#),
            // 8: dead / unmapped source.
            sft_row("dead", "zoom", "images/positive-edit/8.png", ZOOM, ""),
            // 9: duplicate output path (line 1 has it).
            sft_row("b", "zoom again", "images/positive-edit/1.png", ZOOM, ""),
            // 10: unknown edit type.
            sft_row("b", "zoom", "images/positive-edit/2.png", "Make it pop", ""),
            // 11: blank line, not a row.
            String::new(),
            // 12: undecodable edit.
            sft_row("b", "zoom", "images/positive-edit/bad.png", ZOOM, ""),
            // 13: good, source through the Open Images map, retry file name.
            sft_row("c", "vintage look", "images/positive-edit/ab12cd_retry2.png", GRAIN, ""),
        ],
    );
    let chosen: Vec<Vec<u8>> = (1..=3)
        .map(|i| f.edit(&format!("images/positive-edit/p{i}.png"), 20 + i))
        .collect();
    let r10 = f.edit("images/negative-edit/1_0.png", 30);
    let r11 = f.edit("images/negative-edit/1_1.png", 31);
    let r20 = f.edit("images/negative-edit/2_0.png", 32);
    let r30 = f.edit("images/negative-edit/3_0.png", 33);
    f.jsonl(
        "preference.jsonl",
        &[
            sft_row("b", "pref one", "images/positive-edit/p1.png", ZOOM, r#","rejected_images":["images/negative-edit/1_0.png","images/negative-edit/1_1.png"]"#),
            sft_row("b", "pref two", "images/positive-edit/p2.png", ZOOM, r#","rejected_images":"images/negative-edit/2_0.png""#),
            sft_row("c", "pref three", "images/positive-edit/p3.png", GRAIN, r#","rejected_image":"images/negative-edit/3_0.png""#),
            sft_row("b", "pref none", "images/positive-edit/p1.png", ZOOM, r#","rejected_images":[]"#),
        ],
    );
    let turns: Vec<Vec<u8>> = (1..=3)
        .map(|t| f.edit(&format!("images/multi-turn/12_0_turn{t}.png"), 40 + t))
        .collect();
    f.edit("images/multi-turn/13_0_turn1.png", 50);
    f.edit("images/multi-turn/13_0_turn3.png", 51);
    let src = format!(r#"{{"id":"original_input_image","url":"{}"}}"#, url("m"));
    f.jsonl(
        "multi-turn.jsonl",
        &[
            // The order trap: the list is shuffled and the final image is turn 3.
            format!(
                r#"{{"files":[{{"id":"final_image","url":"images/multi-turn/12_0_turn3.png"}},{src},{{"id":"edit_turn2","url":"images/multi-turn/12_0_turn2.png"}},{{"id":"edit_turn1","url":"images/multi-turn/12_0_turn1.png"}}],"metadata_edit_turn_prompts":["first","second","third"]}}"#
            ),
            // Turns 1 and 3: not consecutive.
            format!(
                r#"{{"files":[{src},{{"id":"edit_turn1","url":"images/multi-turn/13_0_turn1.png"}},{{"id":"final_image","url":"images/multi-turn/13_0_turn3.png"}}],"metadata_edit_turn_prompts":["a","b"]}}"#
            ),
            // Two turns, three prompts.
            format!(
                r#"{{"files":[{src},{{"id":"edit_turn1","url":"images/multi-turn/12_0_turn1.png"}},{{"id":"final_image","url":"images/multi-turn/12_0_turn2.png"}}],"metadata_edit_turn_prompts":["a","b","c"]}}"#
            ),
        ],
    );
    Expected {
        sft_sources: vec![local_a, b.clone(), c.clone()],
        sft_edits: vec![e1, e2, e3],
        pref_chosen: chosen,
        pref_rejected: vec![vec![r10, r11], vec![r20], vec![r30]],
        turns: [m].into_iter().chain(turns).collect(),
    }
}

#[test]
fn imports_every_subset_and_reports_each_bad_row() {
    let f = Fixture::new();
    let want = full_fixture(&f);
    let out = f.out("ds");
    let seen = std::cell::Cell::new(0u64);
    let done = import(&f.options(), writer(&out), &|n| seen.set(seen.get() + n)).unwrap();
    let report = &done.report;
    assert_eq!(seen.get(), 12 + 4 + 3, "progress counts every row");
    assert!(report.files.iter().all(|m| m.found));

    let skipped: Vec<(&str, u64, &str)> = report
        .skipped
        .iter()
        .map(|s| (s.file.as_str(), s.line, s.reason.name()))
        .collect();
    assert_eq!(
        skipped,
        vec![
            ("sft.jsonl", 3, "bad_json"),
            ("sft.jsonl", 4, "missing_field"),
            ("sft.jsonl", 5, "bad_field"),
            ("sft.jsonl", 6, "missing_edit_file"),
            ("sft.jsonl", 7, "missing_source_file"),
            ("sft.jsonl", 8, "unresolved_source"),
            ("sft.jsonl", 9, "duplicate_output"),
            ("sft.jsonl", 10, "unknown_edit_type"),
            ("sft.jsonl", 12, "undecodable_image"),
            ("preference.jsonl", 4, "no_rejected_images"),
            ("multi-turn.jsonl", 2, "bad_turns"),
            ("multi-turn.jsonl", 3, "prompt_count_mismatch"),
        ]
    );
    let dup = report.skipped[6].reason.to_string();
    assert!(dup.contains("already used by line 1"), "{dup}");
    assert!(report.skipped[3].reason.to_string().contains("missing.png"));
    assert_eq!(
        report.written,
        [
            (Subset::Sft, 3),
            (Subset::Preference, 3),
            (Subset::MultiTurn, 1)
        ]
        .into()
    );
    assert_eq!(report.sources[&SourceWay::LocalInputImage], 1);
    assert_eq!(report.sources[&SourceWay::SourceMap], 2);
    assert_eq!(report.sources[&SourceWay::SourceDir], 4);

    // The report file lists every skipped row with file, line, reason and detail.
    assert_eq!(done.report_path, out.join("import-report.json"));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&done.report_path).unwrap()).unwrap();
    assert_eq!(json["skipped"].as_array().unwrap().len(), 12);
    assert_eq!(json["skipped"][8]["line"], 12);
    assert_eq!(json["skipped"][8]["reason"], "undecodable_image");
    assert_eq!(json["skipped_by_reason"]["duplicate_output"], 1);
    let summary = report.summary(3, None);
    assert!(summary.contains("sft.jsonl:3: bad_json"), "{summary}");
    assert!(summary.contains("prompt_count_mismatch: 1"), "{summary}");

    // Read back: good rows in file order, bytes identical to the fixture files.
    let ds = Dataset::open(&out).unwrap();
    let sft = all_samples(&ds, Subset::Sft);
    // A key is the row's ordinal among the non-blank rows of its file (line 13 is the
    // twelfth row): the skipped rows' numbers go unused.
    assert_eq!(
        sft.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(),
        ["00000000", "00000001", "00000011"]
    );
    let origins: Vec<_> = sft.iter().map(|s| s.meta.origin.clone().unwrap()).collect();
    assert_eq!(origins, ["sft.jsonl:1", "sft.jsonl:2", "sft.jsonl:13"]);
    for (i, s) in sft.iter().enumerate() {
        let src = s.image(Role::Source).unwrap();
        assert_eq!(
            (src.format, &src.bytes[..]),
            (ImageFormat::Jpeg, &want.sft_sources[i][..])
        );
        let edit = s.image(Role::Edit).unwrap();
        assert_eq!(
            (edit.format, &edit.bytes[..]),
            (ImageFormat::Png, &want.sft_edits[i][..])
        );
    }
    assert_eq!(
        sft[0].meta,
        SampleMeta {
            subset: Some(Subset::Sft),
            edit_type: Some(ZOOM.into()),
            category: Some(Category::ScalePerspective),
            text: "zoom in".into(),
            summarized_text: Some("short zoom in".into()),
            turns: vec![],
            source_url: Some(url("a")),
            origin: Some("sft.jsonl:1".into()),
        }
    );
    assert_eq!(sft[2].meta.category, Some(Category::PixelPhotometric));

    let pref = all_samples(&ds, Subset::Preference);
    assert_eq!(pref.len(), 3);
    for (i, s) in pref.iter().enumerate() {
        assert_eq!(s.key, format!("{i:08}"));
        assert_eq!(
            &s.image(Role::Chosen).unwrap().bytes[..],
            &want.pref_chosen[i][..]
        );
        let rejected: Vec<&[u8]> = s.rejected().iter().map(|r| &r.bytes[..]).collect();
        let expected: Vec<&[u8]> = want.pref_rejected[i].iter().map(|r| &r[..]).collect();
        assert_eq!(rejected, expected, "preference row {}", i + 1);
    }

    let multi = all_samples(&ds, Subset::MultiTurn);
    assert_eq!(multi.len(), 1);
    let m = &multi[0];
    assert_eq!(m.meta.turns, ["first", "second", "third"]);
    assert_eq!(m.meta.text, "first");
    assert_eq!(m.meta.edit_type, None);
    assert_eq!(m.meta.origin.as_deref(), Some("multi-turn.jsonl:1"));
    assert_eq!(
        &m.image(Role::Source).unwrap().bytes[..],
        &want.turns[0][..]
    );
    let turns: Vec<(Role, &[u8])> = m.turns().iter().map(|t| (t.role, &t.bytes[..])).collect();
    assert_eq!(
        turns,
        vec![
            (Role::Turn(1), &want.turns[1][..]),
            (Role::Turn(2), &want.turns[2][..]),
            (Role::Turn(3), &want.turns[3][..]),
        ]
    );
}

#[test]
fn each_source_resolution_way_is_tried_in_order() {
    let f = Fixture::new();
    let local = jpeg(1);
    // The publisher's script writes absolute paths into the Open Images folder, which
    // the user named with --source-images, so they are allowed.
    let local_path = f.map_images.join("local.jpg");
    put(&local_path, &local);
    let m1 = f.source_in_map("id1", 2);
    f.source_in_dir("one", 3);
    let m2 = f.source_in_map("id2", 4);
    f.source_in_dir("two", 5);
    let d3 = f.source_in_dir("three", 6);
    let m4 = f.source_in_map("id4", 7);
    // Quoted fields, extra columns, and an http:// spelling of an https:// row URL.
    put(
        &f.map,
        format!(
            "\"ImageID\",\"OriginalURL\",\"Title\"\n\"id1\",\"{}\",\"a, b\"\nid2,{},x\nid4,{},\"say \"\"hi\"\"\"\n",
            url("one"),
            url("two"),
            url("four").replace("https://", "http://")
        )
        .as_bytes(),
    );
    let edits: Vec<Vec<u8>> = (1..=4)
        .map(|i| f.edit(&format!("images/e{i}.png"), i))
        .collect();
    let abs = format!(r#","local_input_image":"{}""#, local_path.display());
    f.jsonl(
        "sft.jsonl",
        &[
            sft_row("one", "a", "images/e1.png", ZOOM, &abs),
            sft_row(
                "two",
                "b",
                "images/e2.png",
                ZOOM,
                r#","local_input_image":"not/here.jpg""#,
            ),
            sft_row("three", "c", "images/e3.png", ZOOM, ""),
            sft_row("four", "d", "images/e4.png", ZOOM, ""),
        ],
    );
    let out = f.out("ds");
    let done = import(&f.options(), writer(&out), &|_| {}).unwrap();
    assert!(done.report.skipped.is_empty(), "{:?}", done.report.skipped);
    assert_eq!(
        done.report.sources,
        [
            (SourceWay::LocalInputImage, 1),
            (SourceWay::SourceMap, 2),
            (SourceWay::SourceDir, 1)
        ]
        .into()
    );
    let ds = Dataset::open(&out).unwrap();
    let got: Vec<Vec<u8>> = all_samples(&ds, Subset::Sft)
        .iter()
        .map(|s| s.image(Role::Source).unwrap().bytes.to_vec())
        .collect();
    assert_eq!(
        got,
        vec![local, m2, d3, m4],
        "local wins, then the map, then the folder"
    );
    assert_ne!(got[0], m1);
    let edits_back: Vec<Vec<u8>> = all_samples(&ds, Subset::Sft)
        .iter()
        .map(|s| s.image(Role::Edit).unwrap().bytes.to_vec())
        .collect();
    assert_eq!(edits_back, edits);

    // Only the source folder: the mapped-only row is then unresolved, and the absolute
    // local_input_image is outside every folder named.
    let mut only_dir = f.options();
    only_dir.sources.source_map = None;
    only_dir.sources.source_images = None;
    let done = import(&only_dir, writer(&f.out("ds2")), &|_| {}).unwrap();
    let reasons: Vec<_> = done
        .report
        .skipped
        .iter()
        .map(|s| (s.line, s.reason.name()))
        .collect();
    assert_eq!(reasons, vec![(1, "outside_root"), (4, "unresolved_source")]);
    assert_eq!(done.report.written[&Subset::Sft], 2);
}

#[test]
fn transcode_and_max_side_give_decodable_images_of_the_asked_format_and_size() {
    let f = Fixture::new();
    f.source_in_dir("a", 1);
    let edit = f.edit("images/e.png", 2);
    f.edit("images/r.png", 3);
    f.jsonl(
        "sft.jsonl",
        &[sft_row("a", "zoom", "images/e.png", ZOOM, "")],
    );
    f.jsonl(
        "preference.jsonl",
        &[sft_row(
            "a",
            "zoom",
            "images/e.png",
            ZOOM,
            r#","rejected_images":["images/r.png"]"#,
        )],
    );
    let cases = [
        (
            Some(TranscodeTarget::Jpeg { quality: 80 }),
            Some(32),
            ImageFormat::Jpeg,
            (32, 24),
            (32, 32),
        ),
        (
            Some(TranscodeTarget::WebpLossless),
            None,
            ImageFormat::Webp,
            (64, 48),
            (64, 64),
        ),
        (
            Some(TranscodeTarget::Ppm),
            Some(48),
            ImageFormat::Ppm,
            (48, 36),
            (48, 48),
        ),
        (None, Some(16), ImageFormat::Png, (16, 12), (16, 16)),
    ];
    for (i, (target, max_side, format, src_size, edit_size)) in cases.into_iter().enumerate() {
        let mut opts = f.options();
        opts.images = ImageOptions {
            transcode_edits: target,
            max_side,
            ..Default::default()
        };
        let out = f.out(&format!("ds{i}"));
        import(&opts, writer(&out), &|_| {}).unwrap();
        let ds = Dataset::open(&out).unwrap();
        for s in all_samples(&ds, Subset::Sft)
            .iter()
            .chain(&all_samples(&ds, Subset::Preference))
        {
            for img in &s.images {
                let decoded = image::load_from_memory(&img.bytes).unwrap();
                let size = (decoded.width(), decoded.height());
                if img.role == Role::Source {
                    assert_eq!(img.format, ImageFormat::Jpeg, "sources keep their format");
                    assert_eq!(size, src_size, "case {i}");
                } else {
                    assert_eq!(img.format, format, "case {i} {:?}", img.role);
                    assert_eq!(probe(&img.bytes).unwrap().format, format);
                    assert_eq!(size, edit_size, "case {i} {:?}", img.role);
                }
            }
        }
        if target == Some(TranscodeTarget::WebpLossless) {
            let s = ds.read_sample(Subset::Sft, 0).unwrap();
            assert_ne!(&s.image(Role::Edit).unwrap().bytes[..], &edit[..]);
            let lossless = image::load_from_memory(&s.image(Role::Edit).unwrap().bytes).unwrap();
            assert_eq!(
                lossless.to_rgb8(),
                image::load_from_memory(&edit).unwrap().to_rgb8()
            );
        }
    }
}

#[test]
fn limit_takes_the_first_rows_of_each_file() {
    let f = Fixture::new();
    full_fixture(&f);
    let mut opts = f.options();
    opts.limit = Some(2);
    let done = import(&opts, writer(&f.out("ds")), &|_| {}).unwrap();
    assert_eq!(
        done.report.written,
        [
            (Subset::Sft, 2),
            (Subset::Preference, 2),
            (Subset::MultiTurn, 1)
        ]
        .into()
    );
    let lines: Vec<_> = done
        .report
        .skipped
        .iter()
        .map(|s| (s.file.as_str(), s.line))
        .collect();
    assert_eq!(lines, vec![("multi-turn.jsonl", 2)]);
    assert!(done.report.files.iter().all(|m| m.rows == 2));
}

#[test]
fn absent_files_are_reported_and_fatal_problems_are_errors() {
    let f = Fixture::new();
    f.source_in_dir("a", 1);
    f.edit("images/e.png", 2);
    f.jsonl(
        "sft.jsonl",
        &[sft_row("a", "zoom", "images/e.png", ZOOM, "")],
    );
    let done = import(&f.options(), writer(&f.out("ds")), &|_| {}).unwrap();
    let found: Vec<_> = done
        .report
        .files
        .iter()
        .map(|m| (m.subset, m.found))
        .collect();
    assert_eq!(
        found,
        vec![
            (Subset::Sft, true),
            (Subset::Preference, false),
            (Subset::MultiTurn, false)
        ]
    );
    assert!(done.report.summary(5, None).contains("absent"));

    // Only bad rows: an error, the report is written, no manifest.
    f.jsonl("sft.jsonl", &["{".to_string()]);
    let out = f.out("bad");
    let err = import(&f.options(), writer(&out), &|_| {}).unwrap_err();
    assert!(
        matches!(err, ImportError::NothingImported { skipped: 1, .. }),
        "{err}"
    );
    assert!(out.join("import-report.json").exists());
    assert!(!out.join("manifest.json").exists());

    let mut missing = f.options();
    missing.root = f.base.join("nope");
    let err = import(&missing, writer(&f.out("x")), &|_| {}).unwrap_err();
    assert!(matches!(err, ImportError::Root { .. }), "{err}");
    let empty = f.base.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    missing.root = empty;
    let err = import(&missing, writer(&f.out("y")), &|_| {}).unwrap_err();
    assert!(matches!(err, ImportError::NoMetadata { .. }), "{err}");
}

#[test]
fn an_interrupted_pack_leaves_no_manifest() {
    let f = Fixture::new();
    let out = f.out("ds");
    let sample = Sample {
        key: "00000000".into(),
        meta: SampleMeta {
            subset: Some(Subset::Sft),
            text: "t".into(),
            ..Default::default()
        },
        images: vec![
            editfeed::dataset::sample::SampleImage {
                role: Role::Source,
                format: ImageFormat::Jpeg,
                bytes: jpeg(1).into(),
            },
            editfeed::dataset::sample::SampleImage {
                role: Role::Edit,
                format: ImageFormat::Png,
                bytes: png(2).into(),
            },
        ],
    };
    let mut w = writer(&out);
    w.add(&sample).unwrap();
    drop(w);
    assert!(!out.join("manifest.json").exists());
    assert!(Dataset::open(&out).is_err());

    // Overwriting a finished dataset removes its manifest before anything is written.
    let mut w = writer(&out);
    w.add(&sample).unwrap();
    w.finish().unwrap();
    assert!(out.join("manifest.json").exists());
    let opts = WriteOptions {
        target: ShardTarget::Samples(2),
        level: 3,
        compress_literals: false,
        overwrite: true,
    };
    let mut w = DatasetWriter::create(&out, opts).unwrap();
    w.add(&sample).unwrap();
    drop(w);
    assert!(!out.join("manifest.json").exists());
}

#[test]
fn the_pack_command_imports_and_prints_a_summary() {
    let f = Fixture::new();
    full_fixture(&f);
    let out = f.out("ds");
    let report = f.out("report.json");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_editfeed"))
        .args(["pack", "pico-banana", "--root"])
        .arg(&f.root)
        .arg("--source-dir")
        .arg(&f.source_dir)
        .arg("--source-map")
        .arg(&f.map)
        .arg("--source-images")
        .arg(&f.map_images)
        .arg("--report")
        .arg(&report)
        .arg("--out")
        .arg(&out)
        .args(["--shard-samples", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for needle in [
        "samples written: 7",
        "sft: 3",
        "preference: 3",
        "multi_turn: 1",
        "rows skipped: 12",
        "duplicate_output: 1",
        "sft.jsonl:3: bad_json",
    ] {
        assert!(stdout.contains(needle), "{needle:?} not in:\n{stdout}");
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["skipped"].as_array().unwrap().len(), 12);
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.len(Subset::Sft), 3);
    assert_eq!(ds.manifest().subsets[&Subset::Sft].shards.len(), 2);

    // A second run refuses to overwrite, and a bad --transcode-edits is a usage error.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_editfeed"))
        .args(["pack", "pico-banana", "--root"])
        .arg(&f.root)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!again.status.success());
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_editfeed"))
        .args(["pack", "pico-banana", "--transcode-edits", "gif", "--root"])
        .arg(&f.root)
        .arg("--out")
        .arg(f.out("other"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("gif"));
}

/// A 256 KiB tmpfs, filled up, unmounted when dropped; `None` where this process may
/// not mount one (not root, or no CAP_SYS_ADMIN).
struct FullDisk {
    dir: tempfile::TempDir,
}

impl FullDisk {
    fn mount() -> Option<FullDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            return None;
        }
        let mut fill = std::fs::File::create(dir.path().join("fill")).unwrap();
        let chunk = vec![0u8; 4096];
        while std::io::Write::write_all(&mut fill, &chunk).is_ok() {}
        Some(FullDisk { dir })
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn packing_into_a_full_disk_names_the_shard_write_first_and_each_cause_once() {
    let Some(disk) = FullDisk::mount() else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let f = Fixture::new();
    full_fixture(&f);
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_editfeed"))
        .args(["pack", "pico-banana", "--root"])
        .arg(&f.root)
        .arg("--source-dir")
        .arg(&f.source_dir)
        .arg("--out")
        .arg(disk.dir.path().join("ds"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in:\n{stderr}"));
    let full = std::io::Error::from_raw_os_error(28).to_string();
    // The shard's failure, then the report's: two causes, each printed once.
    let shard = error
        .find(".tar.zst")
        .unwrap_or_else(|| panic!("no shard named: {error}"));
    let report = error
        .find("the import report could not be written either")
        .unwrap_or_else(|| panic!("the report's failure is not named: {error}"));
    assert!(shard < report, "{error}");
    assert_eq!(error.matches(&full).count(), 2, "{error}");
    assert!(!disk.dir.path().join("ds/manifest.json").exists());
}
