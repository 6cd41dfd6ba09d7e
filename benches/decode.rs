//! Benchmark of the DECODE + AUGMENT stage: decoding a photo-like 1024x768 JPEG (q90) by
//! each available path (image's zune-jpeg; the DCT-domain decoder, jpeg-decoder or with
//! the `turbojpeg` feature libjpeg-turbo, at full, 1/2, 1/4 and 1/8 scale), a
//! 1024x1024 PNG (default and fast compression), the same pixels as QOI (the lossless
//! pack option) and a lossless WebP, resizing 1024x768 to 256 and 512 with three
//! kernels, and the whole `process` of a single-turn pair (JPEG source + PNG edit) at
//! 256x256 and 512x512 with `jpeg_dct_scaling` off and on. Also a
//! 3072x2304 JPEG, where a reduced decode has the most to save.
//!
//! Prints the median wall time per image, megapixels of SOURCE image per second, and
//! the CPU time per image (from /proc/self/stat, so it shows decoders that use extra
//! threads). Run with `cargo bench --bench decode`. A plain `main` (harness = false).
//! `EDITFEED_BENCH_FILTER=<substring>` runs only matching measurements.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use editfeed::codec::{self, DecodeLimits, DecodePath, Header, ImageFormat};
use editfeed::dataset::sample::{Role, SampleImage};
use editfeed::dataset::Subset;
use editfeed::pipeline::augment::{process, AugmentSpec, SampleRng, Texts, FILTER};
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, PngEncoder};
use image::codecs::qoi::QoiEncoder;
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder, RgbImage};

/// Time budget per measurement, and bounds on the iteration count.
const BUDGET: Duration = Duration::from_millis(1500);
const MIN_ITERS: usize = 15;
const MAX_ITERS: usize = 2000;

/// A photo-like image: smooth colour fields, some edges, and grain (which is what makes
/// real photos expensive to entropy-decode). `EDITFEED_BENCH_GRAIN` sets the grain
/// amplitude divisor (default 12; larger is smoother, 0 disables grain).
fn photo(w: u32, h: u32, seed: u32) -> RgbImage {
    let grain_div: f64 = std::env::var("EDITFEED_BENCH_GRAIN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12.0);
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f64 / w as f64, y as f64 / h as f64);
        let mut hsh = x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663) ^ seed;
        hsh = hsh.wrapping_mul(0x9E37_79B9);
        let grain = if grain_div > 0.0 {
            ((hsh >> 24) as f64 - 128.0) / grain_div
        } else {
            0.0
        };
        let edge = if (fx - 0.6).abs() < 0.15 && (fy - 0.4).abs() < 0.2 {
            40.0
        } else {
            0.0
        };
        let c = |k: f64, p: f64| {
            let v = 120.0
                + 55.0 * (k * 6.3 * fx + p).sin() * (k * 4.1 * fy + 2.0 * p).cos()
                + 25.0 * ((fx + fy) * 23.0 * k + p).sin()
                + edge
                + grain;
            v.clamp(0.0, 255.0) as u8
        };
        image::Rgb([c(1.0, 0.3), c(1.3, 1.7), c(0.7, 2.9)])
    })
}

fn encode(img: &RgbImage, format: ImageFormat) -> Bytes {
    let mut buf = Vec::new();
    let (w, h) = img.dimensions();
    match format {
        ImageFormat::Jpeg => JpegEncoder::new_with_quality(&mut buf, 90)
            .write_image(img.as_raw(), w, h, ExtendedColorType::Rgb8)
            .unwrap(),
        ImageFormat::Png => PngEncoder::new(&mut buf)
            .write_image(img.as_raw(), w, h, ExtendedColorType::Rgb8)
            .unwrap(),
        ImageFormat::Webp => WebPEncoder::new_lossless(&mut buf)
            .write_image(img.as_raw(), w, h, ExtendedColorType::Rgb8)
            .unwrap(),
        ImageFormat::Qoi => QoiEncoder::new(&mut buf)
            .write_image(img.as_raw(), w, h, ExtendedColorType::Rgb8)
            .unwrap(),
        ImageFormat::Ppm => buf = editfeed::codec::ppm::write(w, h, img.as_raw()),
    }
    Bytes::from(buf)
}

/// CPU time (user + system) of the whole process, in clock ticks (usually 10 ms).
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; fields resume after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Runs `f` repeatedly and prints the median wall time, source megapixels per second
/// and CPU time per call.
fn bench(name: &str, source_pixels: u64, mut f: impl FnMut()) -> Option<Duration> {
    // `EDITFEED_BENCH_FILTER=process` runs only the measurements whose name matches.
    if let Ok(filter) = std::env::var("EDITFEED_BENCH_FILTER") {
        if !name.contains(&filter) {
            return None;
        }
    }
    f(); // warm up caches and thread-local buffers
    let mut times = Vec::new();
    let start = Instant::now();
    let cpu0 = cpu_ticks();
    while times.len() < MIN_ITERS || (start.elapsed() < BUDGET && times.len() < MAX_ITERS) {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    let cpu = match (cpu0, cpu_ticks()) {
        (Some(a), Some(b)) => {
            // Linux reports in USER_HZ, which is 100 on every mainstream configuration.
            let per = (b - a) as f64 * 10.0 / times.len() as f64;
            format!("{per:8.2} ms cpu")
        }
        _ => "      ? ms cpu".to_string(),
    };
    times.sort();
    let median = times[times.len() / 2];
    let ms = median.as_secs_f64() * 1e3;
    let mps = source_pixels as f64 / 1e6 / median.as_secs_f64();
    println!(
        "{name:<44} {ms:8.3} ms  {mps:8.1} MP/s  {cpu}  ({} runs)",
        times.len()
    );
    Some(median)
}

fn header(bytes: &[u8], format: ImageFormat) -> Header {
    let h = codec::probe(format, bytes).unwrap();
    codec::check_limits(&h, &DecodeLimits::default()).unwrap();
    h
}

fn main() {
    let src = photo(1024, 768, 1);
    let edit = photo(1024, 1024, 2);
    let jpeg = encode(&src, ImageFormat::Jpeg);
    let png = encode(&edit, ImageFormat::Png);
    let webp = encode(&edit, ImageFormat::Webp);
    let qoi = encode(&edit, ImageFormat::Qoi);
    let ppm = encode(&edit, ImageFormat::Ppm);
    // `editfeed synth` writes its PNGs with fast compression.
    let mut png_fast = Vec::new();
    PngEncoder::new_with_quality(
        &mut png_fast,
        CompressionType::Fast,
        image::codecs::png::FilterType::Adaptive,
    )
    .write_image(
        edit.as_raw(),
        edit.width(),
        edit.height(),
        ExtendedColorType::Rgb8,
    )
    .unwrap();
    println!(
        "fixtures: qoi 1024x1024 {} KiB, ppm 1024x1024 {} KiB, png (fast compression) 1024x1024 {} KiB",
        qoi.len() / 1024,
        ppm.len() / 1024,
        png_fast.len() / 1024
    );
    println!(
        "fixtures: jpeg 1024x768 q90 {} KiB, png 1024x1024 {} KiB, webp lossless 1024x1024 {} KiB",
        jpeg.len() / 1024,
        png.len() / 1024,
        webp.len() / 1024
    );
    let hj = header(&jpeg, ImageFormat::Jpeg);
    let hp = header(&png, ImageFormat::Png);
    let hw = header(&webp, ImageFormat::Webp);
    let hq = header(&qoi, ImageFormat::Qoi);
    let hm = header(&ppm, ImageFormat::Ppm);
    let hf = header(&png_fast, ImageFormat::Png);
    let (pj, pp) = (hj.pixels(), hp.pixels());

    println!("\n-- decode (wall time per image, single caller thread)");
    bench("jpeg 1024x768 full, image (zune-jpeg)", pj, || {
        black_box(codec::decode_path(&hj, &jpeg, DecodePath::Full, None).unwrap());
    });
    for reduction in [1, 2, 4, 8] {
        bench(
            &format!("jpeg 1024x768 1/{reduction}, {}", codec::JPEG_DCT_DECODER),
            pj,
            || {
                black_box(
                    codec::decode_path(&hj, &jpeg, DecodePath::JpegDct { reduction }, None)
                        .unwrap(),
                );
            },
        );
    }
    // A camera-sized source, where a reduced decode has the most to save.
    let big = encode(&photo(3072, 2304, 3), ImageFormat::Jpeg);
    let hb = header(&big, ImageFormat::Jpeg);
    bench(
        "jpeg 3072x2304 full, image (zune-jpeg)",
        hb.pixels(),
        || {
            black_box(codec::decode_path(&hb, &big, DecodePath::Full, None).unwrap());
        },
    );
    for reduction in [4, 8] {
        bench(
            &format!("jpeg 3072x2304 1/{reduction}, {}", codec::JPEG_DCT_DECODER),
            hb.pixels(),
            || {
                black_box(
                    codec::decode_path(&hb, &big, DecodePath::JpegDct { reduction }, None).unwrap(),
                );
            },
        );
    }
    bench("png 1024x1024, image (png)", pp, || {
        black_box(codec::decode_path(&hp, &png, DecodePath::Full, None).unwrap());
    });
    bench("png 1024x1024 fast compression, image (png)", pp, || {
        black_box(codec::decode_path(&hf, &png_fast, DecodePath::Full, None).unwrap());
    });
    bench("qoi 1024x1024, image (qoi)", pp, || {
        black_box(codec::decode_path(&hq, &qoi, DecodePath::Full, None).unwrap());
    });
    bench("ppm 1024x1024, raster read in place", pp, || {
        black_box(codec::decode_path(&hm, &ppm, DecodePath::Full, None).unwrap());
    });
    bench("webp lossless 1024x1024, image (image-webp)", pp, || {
        black_box(codec::decode_path(&hw, &webp, DecodePath::Full, None).unwrap());
    });

    println!("\n-- resize 1024x768 RGB8 (fast_image_resize convolution)");
    let pixels = src.as_raw();
    let mut resizer = Resizer::new();
    for (fname, filter) in [
        ("bilinear", FilterType::Bilinear),
        ("catmullrom", FilterType::CatmullRom),
        ("lanczos3", FilterType::Lanczos3),
    ] {
        for side in [256u32, 512] {
            let mut out = vec![0u8; (side * side * 3) as usize];
            bench(
                &format!(
                    "resize -> {side}x{side} {fname}{}",
                    if filter == FILTER { " (chosen)" } else { "" }
                ),
                pj,
                || {
                    let s = ImageRef::new(1024, 768, pixels, PixelType::U8x3).unwrap();
                    let mut d =
                        Image::from_slice_u8(side, side, &mut out, PixelType::U8x3).unwrap();
                    let o = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter));
                    resizer.resize(&s, &mut d, &o).unwrap();
                    black_box(&out);
                },
            );
        }
    }

    println!("\n-- process: single-turn pair (jpeg 1024x768 + png 1024x1024), random crops");
    let images = [
        SampleImage {
            role: Role::Source,
            format: ImageFormat::Jpeg,
            bytes: jpeg.clone(),
        },
        SampleImage {
            role: Role::Edit,
            format: ImageFormat::Png,
            bytes: png.clone(),
        },
    ];
    let refs: Vec<&SampleImage> = images.iter().collect();
    let texts = Texts {
        text: "Move the lamp to the left".into(),
        summarized_text: None,
        turns: vec![],
    };
    for (label, jpeg_dct_scaling) in [("full decode", false), ("jpeg_dct_scaling", true)] {
        let spec = AugmentSpec {
            jpeg_dct_scaling,
            ..AugmentSpec::default()
        };
        for side in [256u32, 512] {
            let mut out = vec![0u8; 2 * (side * side * 3) as usize];
            let mut ordinal = 0u64;
            bench(
                &format!("process pair -> {side}x{side} ({label})"),
                pj + pp,
                || {
                    let rng = SampleRng {
                        seed: 7,
                        subset: Subset::Sft,
                        epoch: 0,
                        ordinal,
                    };
                    ordinal += 1;
                    black_box(process(&refs, &texts, &spec, rng, (side, side), &mut out).unwrap());
                },
            );
        }
    }
}
