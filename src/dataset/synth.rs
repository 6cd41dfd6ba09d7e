//! A deterministic synthetic dataset in Pico-Banana's shape, for trying editfeed without
//! the real data and for tests and benchmarks. Images are real encodings: JPEG sources of
//! about 1024x768 and PNG edits in the published sizes, with textured, photo-like content
//! (multi-octave value noise, shapes and grain) so decoding costs what real data costs.
//! Every image of a sample shows one scene in relative coordinates, as real edits do.

use bytes::Bytes;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ImageEncoder, RgbImage};

use super::edit_types::EDIT_TYPES;
use super::sample::{Role, Sample, SampleImage, SampleMeta};
use super::Subset;
use crate::codec::ImageFormat;
use crate::rng::{Purpose, Rng};

/// Source photo sizes (width, height), as in Open Images.
const SOURCE_SIZES: [(u32, u32); 4] = [(1024, 768), (1024, 683), (768, 1024), (1024, 1024)];
/// Edited image sizes, as published.
const EDIT_SIZES: [(u32, u32); 7] = [
    (1024, 1024),
    (1184, 864),
    (1152, 896),
    (1248, 832),
    (864, 1184),
    (896, 1152),
    (832, 1248),
];

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// Samples over all subsets (split about 60% single-turn, 20% preference, 20%
    /// multi-turn, at least one each).
    pub samples: u64,
    /// The seed; the same seed gives byte-identical datasets.
    pub seed: u64,
    /// Multiplies every image side (1.0 = Pico-Banana's sizes); tests use small scales.
    pub scale: f32,
    /// JPEG quality of the sources.
    pub jpeg_quality: u8,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            samples: 120,
            seed: 0,
            scale: 1.0,
            jpeg_quality: 90,
        }
    }
}

impl SynthOptions {
    /// How many samples each subset gets.
    pub fn split(&self) -> [(Subset, u64); 3] {
        let n = self.samples.max(3);
        let pref = (n / 5).max(1);
        let multi = (n / 5).max(1);
        [
            (Subset::Sft, n - pref - multi),
            (Subset::Preference, pref),
            (Subset::MultiTurn, multi),
        ]
    }
}

/// Generates the sample of `subset` at `ordinal`; a pure function of the options.
pub fn synth_sample(opts: &SynthOptions, subset: Subset, ordinal: u64) -> Sample {
    let mut rng = Rng::keyed(opts.seed, subset.id() as u64, 0, ordinal, Purpose::Synth);
    let scene = Scene::random(&mut rng);
    let size = |(w, h): (u32, u32)| {
        (
            ((w as f32 * opts.scale) as u32).max(8),
            ((h as f32 * opts.scale) as u32).max(8),
        )
    };
    let src_size = size(SOURCE_SIZES[rng.below(SOURCE_SIZES.len() as u64) as usize]);
    let mut images = vec![SampleImage {
        role: Role::Source,
        format: ImageFormat::Jpeg,
        bytes: encode_jpeg(&scene.render(src_size, &[]), opts.jpeg_quality),
    }];
    let mut edit = |rng: &mut Rng, role: Role, edits: &[Edit]| {
        let sz = size(EDIT_SIZES[rng.below(EDIT_SIZES.len() as u64) as usize]);
        images.push(SampleImage {
            role,
            format: ImageFormat::Png,
            bytes: encode_png(&scene.render(sz, edits)),
        });
    };
    let (edit_type, category) = {
        let (name, cat, _) = EDIT_TYPES[rng.below(EDIT_TYPES.len() as u64) as usize];
        (name.to_string(), cat)
    };
    let mut meta = SampleMeta {
        subset: Some(subset),
        edit_type: Some(edit_type.clone()),
        category: Some(category),
        text: String::new(),
        summarized_text: None,
        turns: vec![],
        source_url: Some(format!(
            "https://example.invalid/synth/{}_{ordinal}_o.jpg",
            subset.name()
        )),
        origin: Some(format!("synth:{}:{ordinal}", subset.name())),
    };
    match subset {
        Subset::Sft | Subset::Preference => {
            let e = Edit::random(&mut rng);
            meta.text = instruction(&mut rng, &edit_type, &e, true);
            meta.summarized_text = Some(instruction(&mut rng, &edit_type, &e, false));
            let good = [e];
            if subset == Subset::Sft {
                edit(&mut rng, Role::Edit, &good);
            } else {
                edit(&mut rng, Role::Chosen, &good);
                let rejected = 1 + rng.below(2) as u8;
                for i in 0..rejected {
                    let bad = [Edit {
                        tint: [0.0; 3],
                        ..Edit::random(&mut rng)
                    }];
                    edit(&mut rng, Role::Rejected(i), &bad);
                }
            }
        }
        Subset::MultiTurn => {
            meta.edit_type = None;
            meta.category = None;
            let turns = 2 + rng.below(4) as u8;
            let mut edits = Vec::new();
            for t in 1..=turns {
                let e = Edit::random(&mut rng);
                let (name, _, _) = EDIT_TYPES[rng.below(EDIT_TYPES.len() as u64) as usize];
                meta.turns.push(instruction(&mut rng, name, &e, true));
                edits.push(e);
                edit(&mut rng, Role::Turn(t), &edits);
            }
            meta.text = meta.turns[0].clone();
        }
    }
    Sample {
        key: format!("{ordinal:08}"),
        meta,
        images,
    }
}

/// A scene: value noise octaves and a palette, defined over relative coordinates.
struct Scene {
    grids: Vec<(usize, Vec<f32>)>,
    palette: [[f32; 3]; 3],
    grain: u64,
}

/// One edit drawn on a scene: a disc at a relative position and a colour tint.
#[derive(Debug, Clone, Copy)]
struct Edit {
    cx: f32,
    cy: f32,
    r: f32,
    color: [f32; 3],
    tint: [f32; 3],
}

impl Edit {
    fn random(rng: &mut Rng) -> Edit {
        let mut c = || rng.next_f64() as f32;
        Edit {
            cx: 0.15 + 0.7 * c(),
            cy: 0.15 + 0.7 * c(),
            r: 0.05 + 0.12 * c(),
            color: [255.0 * c(), 255.0 * c(), 255.0 * c()],
            tint: [40.0 * (c() - 0.5), 40.0 * (c() - 0.5), 40.0 * (c() - 0.5)],
        }
    }
}

impl Scene {
    fn random(rng: &mut Rng) -> Scene {
        let grids = [4usize, 9, 19, 41]
            .iter()
            .map(|&g| {
                (
                    g,
                    (0..(g + 1) * (g + 1))
                        .map(|_| rng.next_f64() as f32)
                        .collect(),
                )
            })
            .collect();
        let mut col = || {
            [
                255.0 * rng.next_f64() as f32,
                255.0 * rng.next_f64() as f32,
                255.0 * rng.next_f64() as f32,
            ]
        };
        let palette = [col(), col(), col()];
        Scene {
            grids,
            palette,
            grain: rng.next_u64(),
        }
    }

    fn noise(&self, u: f32, v: f32) -> f32 {
        let mut total = 0.0;
        let mut amp = 0.55;
        for (g, vals) in &self.grids {
            let (x, y) = (u * *g as f32, v * *g as f32);
            let (x0, y0) = ((x as usize).min(g - 1), (y as usize).min(g - 1));
            let (fx, fy) = (x - x0 as f32, y - y0 as f32);
            let at = |i: usize, j: usize| vals[j * (g + 1) + i];
            let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1, y0) * fx;
            let bot = at(x0, y0 + 1) * (1.0 - fx) + at(x0 + 1, y0 + 1) * fx;
            total += amp * (top * (1.0 - fy) + bot * fy);
            amp *= 0.5;
        }
        total
    }

    fn render(&self, (w, h): (u32, u32), edits: &[Edit]) -> RgbImage {
        let mut img = RgbImage::new(w, h);
        let tint = edits.iter().fold([0.0f32; 3], |t, e| {
            [t[0] + e.tint[0], t[1] + e.tint[1], t[2] + e.tint[2]]
        });
        for (x, y, px) in img.enumerate_pixels_mut() {
            let (u, v) = ((x as f32 + 0.5) / w as f32, (y as f32 + 0.5) / h as f32);
            let n = self.noise(u, v).clamp(0.0, 1.0);
            let (a, b) = if n < 0.5 { (0, 1) } else { (1, 2) };
            let t = (n * 2.0).fract();
            let grain =
                (crate::rng::mix64(self.grain ^ ((y as u64) << 32 | x as u64)) & 15) as f32 - 7.5;
            let mut rgb = [0.0f32; 3];
            for c in 0..3 {
                rgb[c] = self.palette[a][c] * (1.0 - t) + self.palette[b][c] * t + grain + tint[c];
            }
            for e in edits {
                let (dx, dy) = (u - e.cx, (v - e.cy) * h as f32 / w as f32);
                if dx * dx + dy * dy < e.r * e.r {
                    rgb = e.color;
                }
            }
            *px = image::Rgb(rgb.map(|c| c.clamp(0.0, 255.0) as u8));
        }
        img
    }
}

fn encode_jpeg(img: &RgbImage, quality: u8) -> Bytes {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .expect("encoding to memory cannot fail");
    Bytes::from(out)
}

fn encode_png(img: &RgbImage) -> Bytes {
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .expect("encoding to memory cannot fail");
    Bytes::from(out)
}

const PLACES: [&str; 8] = [
    "on the left",
    "on the right",
    "in the centre",
    "near the top",
    "at the bottom",
    "in the upper left corner",
    "in the lower right corner",
    "beside the path",
];
const THINGS: [&str; 8] = [
    "a red balloon",
    "a wooden bench",
    "a small dog",
    "a street lamp",
    "a potted plant",
    "a blue umbrella",
    "a bicycle",
    "a stack of books",
];
const MOODS: [&str; 6] = [
    "warm golden-hour",
    "cool blue",
    "soft overcast",
    "vivid",
    "muted vintage",
    "crisp winter",
];

/// A varied instruction for an edit type; some name a direction, so flip policies have
/// something to act on.
fn instruction(rng: &mut Rng, edit_type: &str, e: &Edit, long: bool) -> String {
    let pick = |rng: &mut Rng, xs: &[&'static str]| xs[rng.below(xs.len() as u64) as usize];
    let place = if e.cx < 0.4 {
        "on the left"
    } else if e.cx > 0.6 {
        "on the right"
    } else {
        pick(rng, &PLACES)
    };
    let thing = pick(rng, &THINGS);
    let mood = pick(rng, &MOODS);
    let short = edit_type
        .split(" (")
        .next()
        .unwrap_or(edit_type)
        .to_lowercase();
    if long {
        format!("{short}: place {thing} {place} and give the whole photo a {mood} look, keeping the rest of the scene unchanged")
    } else {
        format!("{short}, {thing} {place}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_deterministic_and_fit_the_schema() {
        let opts = SynthOptions {
            samples: 10,
            seed: 3,
            scale: 0.1,
            jpeg_quality: 80,
        };
        for subset in Subset::ALL {
            let a = synth_sample(&opts, subset, 4);
            assert_eq!(a, synth_sample(&opts, subset, 4));
            a.check().unwrap();
            assert_ne!(a, synth_sample(&opts, subset, 5));
            for img in &a.images {
                assert_eq!(ImageFormat::sniff(&img.bytes), Some(img.format));
                image::load_from_memory(&img.bytes).unwrap();
            }
        }
        let other_seed = SynthOptions {
            seed: 4,
            ..opts.clone()
        };
        assert_ne!(
            synth_sample(&opts, Subset::Sft, 0),
            synth_sample(&other_seed, Subset::Sft, 0)
        );
    }

    #[test]
    fn full_scale_sizes_match_the_publication() {
        let opts = SynthOptions::default();
        let s = synth_sample(&opts, Subset::Sft, 0);
        let src = image::load_from_memory(&s.image(Role::Source).unwrap().bytes).unwrap();
        assert!(SOURCE_SIZES.contains(&(src.width(), src.height())));
        let edit = image::load_from_memory(&s.image(Role::Edit).unwrap().bytes).unwrap();
        assert!(EDIT_SIZES.contains(&(edit.width(), edit.height())));
    }
}
