//! Test support: a Pico-Banana-400K root written by code, in the published layout (the
//! three JSONL files, PNG edits under `images/`, JPEG sources in a download folder and
//! an Open Images folder with its URL -> ImageID map), with a few bad rows of the kinds
//! the importer must skip (an unresolvable source, a duplicate output, an undecodable
//! edit, a missing rejected image).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use image::{ImageEncoder, RgbImage};

/// Where the fixture is.
pub struct Pico {
    /// The root with the metadata files and `images/`.
    pub root: PathBuf,
    /// Sources named like their URLs (`--source-dir`).
    pub sources: PathBuf,
    /// The URL -> ImageID map (`--source-map`).
    pub map: PathBuf,
    /// `<ImageID>.jpg` files (`--source-images`).
    pub open_images: PathBuf,
    /// Rows written per file (sft, preference, multi-turn).
    pub rows: [usize; 3],
}

fn pixels(w: u32, h: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = x.wrapping_mul(31) ^ y.wrapping_mul(17) ^ seed.wrapping_mul(2654435761);
        image::Rgb([v as u8, (v >> 8) as u8, (x + y + seed) as u8])
    })
}

fn put(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn jpeg(side: u32, seed: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let img = pixels(side, side * 3 / 4, seed);
    JpegEncoder::new_with_quality(&mut out, 85)
        .write_image(
            &img,
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

fn png(side: u32, seed: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    pixels(side, side, seed)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

fn url(name: &str) -> String {
    format!("https://farm4.staticflickr.com/3/{name}_o.jpg")
}

/// Writes a fixture of `rows` rows per file under `dir`, with images whose longer side
/// is `side` pixels. Every seventh source is found through the Open Images map, the
/// others in the download folder.
pub fn write_pico(dir: &Path, rows: [usize; 3], side: u32) -> Pico {
    let p = Pico {
        root: dir.join("pico"),
        sources: dir.join("sources"),
        map: dir.join("image_ids_and_rotation.csv"),
        open_images: dir.join("openimages"),
        rows,
    };
    std::fs::create_dir_all(&p.sources).unwrap();
    std::fs::create_dir_all(&p.open_images).unwrap();
    let mut map = String::from("ImageID,OriginalURL\n");
    let mut seed = 0u32;
    let mut source = |i: usize, tag: &str| -> String {
        seed += 1;
        let name = format!("{tag}{i}");
        let bytes = jpeg(side, seed);
        if i % 7 == 3 {
            let id = format!("ID{tag}{i:04}");
            put(&p.open_images.join(format!("{id}.jpg")), &bytes);
            map.push_str(&format!("{id},{}\n", url(&name)));
        } else {
            put(&p.sources.join(format!("{name}_o.jpg")), &bytes);
        }
        url(&name)
    };
    let mut edit_seed = 1000u32;
    let mut edit = |rel: &str| {
        edit_seed += 1;
        put(&p.root.join(rel), &png(side, edit_seed));
    };
    let edit_types = [
        "Zoom in",
        "Add a new object to the scene",
        "Remove an existing object",
    ];
    let mut sft = Vec::new();
    for i in 0..rows[0] {
        let src = match i {
            5 => url("never-downloaded"),
            _ => source(i, "s"),
        };
        let out = match i {
            9 => "images/sft/3.png".to_string(),
            _ => format!("images/sft/{i}.png"),
        };
        match i {
            9 => {}
            13 => put(&p.root.join(&out), b"not a png"),
            _ => edit(&out),
        }
        sft.push(format!(
            r#"{{"open_image_input_url":"{src}","text":"make it {i}","summarized_text":"short {i}","output_image":"{out}","edit_type":"{}"}}"#,
            edit_types[i % 3]
        ));
        if i == 4 {
            sft.push(String::new());
        }
    }
    let mut pref = Vec::new();
    for i in 0..rows[1] {
        let src = source(i, "p");
        let (chosen, r0, r1) = (
            format!("images/pref/{i}.png"),
            format!("images/pref/{i}_r0.png"),
            format!("images/pref/{i}_r1.png"),
        );
        edit(&chosen);
        edit(&r0);
        if i != 2 {
            edit(&r1);
        }
        pref.push(format!(
            r#"{{"open_image_input_url":"{src}","text":"pref {i}","summarized_text":"p {i}","output_image":"{chosen}","rejected_images":["{r0}","{r1}"],"edit_type":"{}"}}"#,
            edit_types[(i + 1) % 3]
        ));
    }
    let mut multi = Vec::new();
    for i in 0..rows[2] {
        let src = source(i, "m");
        let turns = 2 + i % 3;
        let mut files = vec![format!(r#"{{"id":"original_input_image","url":"{src}"}}"#)];
        let mut prompts = Vec::new();
        for t in 1..=turns {
            let rel = format!("images/multi-turn/{i}_0_turn{t}.png");
            edit(&rel);
            let id = if t == turns {
                "final_image".to_string()
            } else {
                format!("edit_turn{t}")
            };
            files.push(format!(r#"{{"id":"{id}","url":"{rel}"}}"#));
            prompts.push(format!("\"turn {t} of {i}\""));
        }
        files.reverse();
        multi.push(format!(
            r#"{{"files":[{}],"metadata_edit_turn_prompts":[{}]}}"#,
            files.join(","),
            prompts.join(",")
        ));
    }
    for (name, lines) in [
        ("sft.jsonl", sft),
        ("preference.jsonl", pref),
        ("multi-turn.jsonl", multi),
    ] {
        put(&p.root.join(name), (lines.join("\n") + "\n").as_bytes());
    }
    put(&p.map, map.as_bytes());
    p
}

impl Pico {
    /// The `pack pico-banana` flags naming the fixture's folders.
    pub fn args(&self) -> Vec<String> {
        let s = |p: &Path| p.display().to_string();
        vec![
            "pack".into(),
            "pico-banana".into(),
            "--root".into(),
            s(&self.root),
            "--source-dir".into(),
            s(&self.sources),
            "--source-map".into(),
            s(&self.map),
            "--source-images".into(),
            s(&self.open_images),
        ]
    }
}

/// Every file of a dataset folder (shards, indexes, manifest, report) by relative path,
/// for byte-for-byte comparison.
pub fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}
