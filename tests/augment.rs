//! Black-box tests of decode + paired augmentation: fixtures are made by code with the
//! `image` crate, nothing is checked in.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use editfeed::codec::{self, DecodeError, DecodeLimits, DecodePath, ImageFormat};
use editfeed::dataset::sample::{Role, SampleImage};
use editfeed::dataset::Subset;
use editfeed::pipeline::augment::{
    process, AugmentError, AugmentSpec, Augmented, FlipPolicy, SampleRng, Texts, FILTER,
};
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder, RgbImage};

// ---------------------------------------------------------------------------------------
// An allocator that records the largest single allocation of the current thread while a
// probe is armed, so the bomb test can show that nothing big was allocated.

struct Tracking;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // try_with: the allocator may run while thread locals are being torn down.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Runs `f` and returns its result and the largest single allocation it made.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    ARMED.with(|a| a.set(true));
    let out = f();
    ARMED.with(|a| a.set(false));
    (out, LARGEST.with(|l| l.get()))
}

// ---------------------------------------------------------------------------------------
// Fixtures.

const MARKER: (f64, f64) = (0.3, 0.6);

/// A flat grey image with a red ellipse centred at `MARKER` (relative), its semi-axes 5%
/// of the image's own width and height, so it has the same relative shape at any size.
fn marker_image(w: u32, h: u32) -> RgbImage {
    let (cx, cy) = (MARKER.0 * w as f64, MARKER.1 * h as f64);
    let (rx, ry) = (0.05 * w as f64, 0.05 * h as f64);
    RgbImage::from_fn(w, h, |x, y| {
        let dx = (x as f64 + 0.5 - cx) / rx;
        let dy = (y as f64 + 0.5 - cy) / ry;
        if dx * dx + dy * dy <= 1.0 {
            image::Rgb([230, 20, 20])
        } else {
            image::Rgb([120, 120, 120])
        }
    })
}

/// A photo-like image: smooth colour fields plus fine grain.
fn photo(w: u32, h: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f64 / w as f64, y as f64 / h as f64);
        let mut hsh = x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663) ^ seed;
        hsh = hsh.wrapping_mul(0x9E37_79B9);
        let grain = ((hsh >> 24) as f64 - 128.0) / 16.0;
        let c = |k: f64, p: f64| {
            let v = 128.0
                + 60.0 * (k * 6.3 * fx + p).sin() * (k * 4.1 * fy + 2.0 * p).cos()
                + 30.0 * ((fx + fy) * 9.0 * k + p).sin()
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
        ImageFormat::Qoi => image::codecs::qoi::QoiEncoder::new(&mut buf)
            .write_image(img.as_raw(), w, h, ExtendedColorType::Rgb8)
            .unwrap(),
        ImageFormat::Ppm => buf = editfeed::codec::ppm::write(w, h, img.as_raw()),
    }
    Bytes::from(buf)
}

fn sample_image(role: Role, format: ImageFormat, img: &RgbImage) -> SampleImage {
    SampleImage {
        role,
        format,
        bytes: encode(img, format),
    }
}

fn key(ordinal: u64) -> SampleRng {
    SampleRng {
        seed: 1234,
        subset: Subset::Preference,
        epoch: 0,
        ordinal,
    }
}

fn texts(text: &str) -> Texts {
    Texts {
        text: text.into(),
        summarized_text: None,
        turns: vec![],
    }
}

fn run(
    images: &[SampleImage],
    texts: &Texts,
    spec: &AugmentSpec,
    rng: SampleRng,
    target: (u32, u32),
) -> Result<(Augmented, Vec<u8>), AugmentError> {
    let refs: Vec<&SampleImage> = images.iter().collect();
    let mut out = vec![0u8; images.len() * target.0 as usize * target.1 as usize * 3];
    let aug = process(&refs, texts, spec, rng, target, &mut out)?;
    Ok((aug, out))
}

/// The centroid of red pixels (weighted by redness) of one HWC RGB image.
fn red_centroid(px: &[u8], w: u32) -> Option<(f64, f64)> {
    let (mut sx, mut sy, mut sw) = (0.0, 0.0, 0.0);
    for (i, p) in px.chunks_exact(3).enumerate() {
        let redness = (p[0] as f64 - (p[1] as f64 + p[2] as f64) / 2.0 - 30.0).max(0.0);
        if redness > 0.0 {
            let (x, y) = ((i as u32 % w) as f64 + 0.5, (i as u32 / w) as f64 + 0.5);
            sx += x * redness;
            sy += y * redness;
            sw += redness;
        }
    }
    (sw > 0.0).then(|| (sx / sw, sy / sw))
}

fn marker_sample() -> Vec<SampleImage> {
    vec![
        sample_image(Role::Source, ImageFormat::Jpeg, &marker_image(400, 300)),
        sample_image(Role::Chosen, ImageFormat::Png, &marker_image(256, 256)),
        sample_image(
            Role::Rejected(0),
            ImageFormat::Webp,
            &marker_image(320, 200),
        ),
        sample_image(Role::Rejected(1), ImageFormat::Ppm, &marker_image(300, 225)),
    ]
}

// ---------------------------------------------------------------------------------------
// Tests.

#[test]
fn paired_crop_puts_the_marker_at_the_same_place_in_every_image() {
    let images = marker_sample();
    let t = texts("add a red balloon");
    let mut checked = 0;
    let mut flips = 0;
    let mut reduced = 0;
    for (target, jpeg_dct_scaling) in [
        ((128u32, 128u32), true),
        ((160, 96), true),
        ((96, 128), false),
    ] {
        let (tw, th) = target;
        for ordinal in 0..40 {
            let spec = AugmentSpec {
                jpeg_dct_scaling,
                ..AugmentSpec::default()
            };
            let (aug, out) = run(&images, &t, &spec, key(ordinal), target).unwrap();
            let [x0, y0, x1, y1] = aug.crop;
            // The marker must be well inside the crop for its centroid to be whole.
            let margin = 0.06;
            if MARKER.0 - margin < x0
                || MARKER.0 + margin > x1
                || MARKER.1 - margin < y0
                || MARKER.1 + margin > y1
            {
                continue;
            }
            let mut ex = (MARKER.0 - x0) / (x1 - x0) * tw as f64;
            let ey = (MARKER.1 - y0) / (y1 - y0) * th as f64;
            if aug.flipped {
                ex = tw as f64 - ex;
                flips += 1;
            }
            let need = (
                (tw as f64 / (x1 - x0)).ceil() as u32,
                (th as f64 / (y1 - y0)).ceil() as u32,
            );
            let h = codec::probe(ImageFormat::Jpeg, &images[0].bytes).unwrap();
            if jpeg_dct_scaling && codec::choose_path(&h, Some(need)).reduction() > 1 {
                reduced += 1;
            }
            let per = (tw * th * 3) as usize;
            let centroids: Vec<(f64, f64)> = out
                .chunks_exact(per)
                .map(|img| red_centroid(img, tw).expect("marker visible"))
                .collect();
            for (i, &(cx, cy)) in centroids.iter().enumerate() {
                assert!(
                    (cx - ex).abs() < 2.0 && (cy - ey).abs() < 2.0,
                    "ordinal {ordinal} target {target:?} image {i}: centroid ({cx:.2}, {cy:.2}), \
                     expected ({ex:.2}, {ey:.2}), crop {:?} flipped {}",
                    aug.crop,
                    aug.flipped
                );
                let (c0x, c0y) = centroids[0];
                assert!(
                    (cx - c0x).abs() < 1.5 && (cy - c0y).abs() < 1.5,
                    "ordinal {ordinal}: images disagree: {centroids:?}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 45, "only {checked} crops kept the marker inside");
    assert!(flips >= 5 && flips < checked, "{flips} flips of {checked}");
    assert!(
        reduced >= 3,
        "reduced-scale decode was used {reduced} times"
    );
}

#[test]
fn same_key_same_bytes_and_another_ordinal_another_crop() {
    let images = marker_sample();
    let t = texts("add a red balloon");
    let spec = AugmentSpec {
        jitter: Some(Default::default()),
        ..Default::default()
    };
    let a = run(&images, &t, &spec, key(3), (96, 80)).unwrap();
    let b = run(&images, &t, &spec, key(3), (96, 80)).unwrap();
    assert_eq!(a.0, b.0);
    assert!(a.1 == b.1, "identical inputs gave different bytes");
    let c = run(&images, &t, &spec, key(4), (96, 80)).unwrap();
    assert_ne!(a.0.crop, c.0.crop);
    assert!(a.1 != c.1);
    // The same key on another thread gives the same bytes (thread-local scratch state
    // must not leak into results).
    let images2 = images.clone();
    let t2 = t.clone();
    let spec2 = spec.clone();
    let d = std::thread::spawn(move || run(&images2, &t2, &spec2, key(3), (96, 80)).unwrap())
        .join()
        .unwrap();
    assert!(a.1 == d.1);
}

#[test]
fn a_flip_mirrors_every_output_exactly() {
    let images = marker_sample();
    let t = texts("add a red balloon");
    let never = AugmentSpec {
        hflip: 0.0,
        ..Default::default()
    };
    let always = AugmentSpec {
        hflip: 1.0,
        ..Default::default()
    };
    let (a, plain) = run(&images, &t, &never, key(9), (64, 48)).unwrap();
    let (b, mirrored) = run(&images, &t, &always, key(9), (64, 48)).unwrap();
    assert!(!a.flipped && b.flipped);
    assert_eq!(a.crop, b.crop);
    for (p, m) in plain
        .chunks_exact(64 * 3)
        .zip(mirrored.chunks_exact(64 * 3))
    {
        let back: Vec<u8> = m.chunks_exact(3).rev().flatten().copied().collect();
        assert_eq!(p, &back[..]);
    }
}

#[test]
fn flip_policies_on_direction_words() {
    let img = photo(64, 48, 1);
    let images = vec![
        sample_image(Role::Source, ImageFormat::Png, &img),
        sample_image(Role::Edit, ImageFormat::Png, &img),
    ];
    let directional = Texts {
        text: "Move the lamp to the left".into(),
        summarized_text: Some("lamp to the left".into()),
        turns: vec![
            "Move the lamp to the left".into(),
            "Make the RIGHT wall blue".into(),
        ],
    };
    let neutral = texts("Make the sky pink and bright");
    let flips = |policy: FlipPolicy, t: &Texts| {
        let spec = AugmentSpec {
            flip_policy: policy,
            ..Default::default()
        };
        (0..200)
            .map(|o| run(&images, t, &spec, key(o), (16, 16)).unwrap().0)
            .collect::<Vec<_>>()
    };

    let skip = flips(FlipPolicy::Skip, &directional);
    assert!(skip.iter().all(|a| !a.flipped && a.texts == directional));
    let skip_neutral = flips(FlipPolicy::Skip, &neutral);
    let n = skip_neutral.iter().filter(|a| a.flipped).count();
    assert!(
        (70..=130).contains(&n),
        "{n} of 200 neutral samples flipped"
    );
    assert!(skip_neutral.iter().all(|a| a.texts == neutral));

    let swap = flips(FlipPolicy::Swap, &directional);
    let n = swap.iter().filter(|a| a.flipped).count();
    assert!((70..=130).contains(&n), "{n} of 200 flipped under swap");
    for a in &swap {
        if a.flipped {
            assert_eq!(a.texts.text, "Move the lamp to the right");
            assert_eq!(
                a.texts.summarized_text.as_deref(),
                Some("lamp to the right")
            );
            assert_eq!(
                a.texts.turns,
                ["Move the lamp to the right", "Make the LEFT wall blue"]
            );
        } else {
            assert_eq!(a.texts, directional);
        }
    }
    // The coin does not depend on the policy: the same samples flip.
    let neutral_flips: Vec<bool> = skip_neutral.iter().map(|a| a.flipped).collect();
    let swap_flips: Vec<bool> = swap.iter().map(|a| a.flipped).collect();
    assert_eq!(neutral_flips, swap_flips);

    let ignore = flips(FlipPolicy::Ignore, &directional);
    let ignore_flips: Vec<bool> = ignore.iter().map(|a| a.flipped).collect();
    assert_eq!(ignore_flips, swap_flips);
    assert!(ignore.iter().all(|a| a.texts == directional));
}

/// The standard CRC-32 of PNG chunks.
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
fn a_decompression_bomb_is_refused_from_its_header() {
    // A real 8x8 PNG whose IHDR is patched to declare 100000x100000, CRC fixed, so every
    // PNG reader would accept the header.
    let mut png = encode(&photo(8, 8, 2), ImageFormat::Png).to_vec();
    png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    let bomb = SampleImage {
        role: Role::Edit,
        format: ImageFormat::Png,
        bytes: Bytes::from(png.clone()),
    };
    let good = sample_image(Role::Source, ImageFormat::Png, &photo(32, 32, 3));

    let (result, largest) = largest_allocation(|| {
        run(
            &[good, bomb],
            &texts("x"),
            &AugmentSpec::default(),
            key(0),
            (16, 16),
        )
    });
    let err = result.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            &err,
            AugmentError::Decode {
                role: Role::Edit,
                source: DecodeError::TooLarge {
                    width: 100_000,
                    height: 100_000,
                    ..
                }
            }
        ),
        "{err:?}"
    );
    assert!(
        msg.contains("edit image") && msg.contains("100000x100000"),
        "{msg}"
    );
    assert!(largest < 1 << 20, "largest allocation {largest} bytes");

    // decode() directly refuses it the same way.
    let e = codec::decode(ImageFormat::Png, &png, None, &DecodeLimits::default()).unwrap_err();
    assert!(matches!(
        e,
        DecodeError::TooLarge {
            pixels: 10_000_000_000,
            ..
        }
    ));
}

fn specs_and_targets() -> Vec<((u32, u32), AugmentSpec)> {
    let scaled = AugmentSpec {
        jpeg_dct_scaling: true,
        ..AugmentSpec::default()
    };
    let full = AugmentSpec {
        jpeg_dct_scaling: false,
        ..AugmentSpec::default()
    };
    vec![((32, 24), full.clone()), ((8, 8), full), ((8, 8), scaled)]
}

#[test]
fn a_jpeg_with_recoverable_damage_decodes_on_every_path() {
    let clean = encode(&photo(256, 192, 7), ImageFormat::Jpeg);
    // Stray bytes before the scan marker: a warning to libjpeg, which goes on.
    let sos = clean
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .expect("a scan marker");
    let mut damaged = clean[..sos].to_vec();
    damaged.extend_from_slice(&[0x00, 0x01, 0x02]);
    damaged.extend_from_slice(&clean[sos..]);
    let header = codec::probe(ImageFormat::Jpeg, &damaged).unwrap();
    for path in [
        DecodePath::Full,
        DecodePath::JpegDct { reduction: 1 },
        DecodePath::JpegDct { reduction: 2 },
    ] {
        let want = codec::decode_path(&header, &clean, path, None).unwrap();
        assert_eq!(want.path, path);
        let got = codec::decode_path(&header, &damaged, path, None)
            .unwrap_or_else(|e| panic!("{path:?}: {e}"));
        if cfg!(feature = "turbojpeg") && path != DecodePath::Full {
            // libjpeg-turbo refuses it; the full-size decoder takes over.
            assert_eq!(got.path, DecodePath::Full, "{path:?}");
            let full = codec::decode_path(&header, &clean, DecodePath::Full, None).unwrap();
            assert!(got.pixels == full.pixels, "{path:?}");
        } else {
            assert_eq!(got.path, path);
            assert!(got.pixels == want.pixels, "{path:?}");
        }
    }
}

#[test]
fn a_cut_or_malformed_ppm_gives_an_error_naming_the_role_and_the_fault() {
    let source = sample_image(Role::Source, ImageFormat::Jpeg, &photo(64, 48, 4));
    let ppm = encode(&photo(40, 30, 5), ImageFormat::Ppm);
    let cases: [(&[u8], &str); 3] = [
        (
            &ppm[..ppm.len() - 7],
            "turn2 image: ppm header: raster of 40x30 needs 3600 bytes, 3593 are there",
        ),
        (
            b"P6\n40 30\n0\n",
            "turn2 image: ppm header: maximum value 0 is outside 1..=65535",
        ),
        (
            b"P6\n40",
            "turn2 image: ppm header: truncated after the width",
        ),
    ];
    for (bytes, want) in cases {
        let bad = SampleImage {
            role: Role::Turn(2),
            format: ImageFormat::Ppm,
            bytes: Bytes::copy_from_slice(bytes),
        };
        let err = run(
            &[source.clone(), bad],
            &texts("x"),
            &AugmentSpec::default(),
            key(1),
            (16, 16),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn a_corrupt_jpeg_gives_an_error_naming_the_role() {
    let source = sample_image(Role::Source, ImageFormat::Png, &photo(64, 48, 4));
    let jpeg = encode(&photo(64, 48, 5), ImageFormat::Jpeg);
    let sos = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .expect("a scan marker");
    let corruptions: Vec<(&str, Vec<u8>)> = vec![
        ("truncated in the headers", jpeg[..40].to_vec()),
        ("cut before the scan", jpeg[..sos].to_vec()),
        ("garbage after the start marker", {
            let mut v = vec![0xFF, 0xD8];
            v.extend(std::iter::repeat_n(0x42, 500));
            v
        }),
        ("not a jpeg at all", b"this is not an image".to_vec()),
    ];
    for (what, bytes) in corruptions {
        let bad = SampleImage {
            role: Role::Turn(2),
            format: ImageFormat::Jpeg,
            bytes: Bytes::from(bytes),
        };
        // Both decoders: (8, 8) with DCT scaling on takes the DCT path at reduced scale.
        for (target, spec) in specs_and_targets() {
            let err = run(
                &[source.clone(), bad.clone()],
                &texts("x"),
                &spec,
                key(1),
                target,
            )
            .expect_err(what);
            assert!(
                matches!(
                    err,
                    AugmentError::Decode {
                        role: Role::Turn(2),
                        ..
                    }
                ),
                "{what}: {err:?}"
            );
            assert!(
                err.to_string().starts_with("turn2 image: "),
                "{what}: {err}"
            );
        }
    }
    // Damage inside the entropy-coded data may or may not be detected (decoders conceal
    // errors), but must never panic.
    for k in 0..20 {
        let mut v = jpeg.to_vec();
        let at = sos + 20 + k * 37 % (v.len() - sos - 30);
        v[at] ^= 0x5A;
        v.truncate(v.len() - k * 3);
        let bad = SampleImage {
            role: Role::Edit,
            format: ImageFormat::Jpeg,
            bytes: Bytes::from(v),
        };
        for (target, spec) in specs_and_targets() {
            let _ = run(
                &[source.clone(), bad.clone()],
                &texts("x"),
                &spec,
                key(k as u64),
                target,
            );
        }
    }
}

#[test]
fn reduced_scale_jpeg_decode_is_chosen_for_small_targets_and_close_to_full() {
    let img = photo(1024, 768, 6);
    let bytes = encode(&img, ImageFormat::Jpeg);
    let header = codec::probe(ImageFormat::Jpeg, &bytes).unwrap();
    let spec = AugmentSpec {
        crop: false,
        hflip: 0.0,
        jpeg_dct_scaling: true,
        ..Default::default()
    };
    for (target, reduction) in [((128, 128), 4), ((256, 192), 4), ((384, 256), 2)] {
        // With crop off, the need is the target itself.
        assert_eq!(
            codec::choose_path(&header, Some(target)),
            DecodePath::JpegDct { reduction },
            "{target:?}"
        );
        let sample = [SampleImage {
            role: Role::Source,
            format: ImageFormat::Jpeg,
            bytes: bytes.clone(),
        }];
        let (_, out) = run(&sample, &texts("x"), &spec, key(0), target).unwrap();

        // The reference: a full decode resized the same way.
        let full = codec::decode_path(&header, &bytes, DecodePath::Full, None).unwrap();
        let mut reference = vec![0u8; out.len()];
        let src = ImageRef::new(full.width, full.height, &full.pixels, PixelType::U8x3).unwrap();
        let mut dst =
            Image::from_slice_u8(target.0, target.1, &mut reference, PixelType::U8x3).unwrap();
        Resizer::new()
            .resize(
                &src,
                &mut dst,
                &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FILTER)),
            )
            .unwrap();
        let mad = out
            .iter()
            .zip(&reference)
            .map(|(&a, &b)| (a as f64 - b as f64).abs())
            .sum::<f64>()
            / out.len() as f64;
        assert!(mad < 3.0, "{target:?}: mean absolute difference {mad:.3}");
        assert!(
            out != reference,
            "expected the reduced path to differ at least slightly"
        );
        // With the switch off the output is exactly the full decode's.
        let full_spec = AugmentSpec {
            jpeg_dct_scaling: false,
            ..spec.clone()
        };
        let (_, out_full) = run(&sample, &texts("x"), &full_spec, key(0), target).unwrap();
        assert!(
            out_full == reference,
            "{target:?}: default path is not the full decode"
        );
    }
    // A large target is decoded at full scale.
    assert_eq!(codec::choose_path(&header, Some((600, 400))).reduction(), 1);
}

#[test]
fn greyscale_and_alpha_images_decode_to_rgb() {
    let grey = image::GrayImage::from_fn(40, 30, |x, _| image::Luma([(x * 6) as u8]));
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(grey.as_raw(), 40, 30, ExtendedColorType::L8)
        .unwrap();
    let d = codec::decode(ImageFormat::Png, &png, None, &DecodeLimits::default()).unwrap();
    assert_eq!((d.width, d.height, d.pixels.len()), (40, 30, 40 * 30 * 3));
    assert_eq!(&d.pixels[3 * 5..3 * 6], &[30, 30, 30]);
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, 95)
        .write_image(grey.as_raw(), 40, 30, ExtendedColorType::L8)
        .unwrap();
    for need in [None, Some((10, 10))] {
        let d = codec::decode(ImageFormat::Jpeg, &jpeg, need, &DecodeLimits::default()).unwrap();
        assert!(d
            .pixels
            .chunks_exact(3)
            .all(|p| p[0] == p[1] && p[1] == p[2]));
    }
    let rgba = image::RgbaImage::from_fn(20, 10, |_, _| image::Rgba([10, 20, 30, 0]));
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(rgba.as_raw(), 20, 10, ExtendedColorType::Rgba8)
        .unwrap();
    // A .jpg member that is really a PNG is decoded by what its bytes say.
    let d = codec::decode(ImageFormat::Jpeg, &png, None, &DecodeLimits::default()).unwrap();
    assert_eq!(d.header.format, ImageFormat::Png);
    assert_eq!(&d.pixels[..3], &[10, 20, 30]);
}

#[test]
fn bad_targets_and_buffers_are_refused() {
    let images = marker_sample();
    let refs: Vec<&SampleImage> = images.iter().collect();
    let spec = AugmentSpec::default();
    let mut out = vec![0u8; 10];
    let e = process(&refs, &texts("x"), &spec, key(0), (0, 8), &mut out).unwrap_err();
    assert!(matches!(e, AugmentError::Target { .. }));
    let e = process(&refs, &texts("x"), &spec, key(0), (4, 4), &mut out).unwrap_err();
    assert_eq!(
        e.to_string(),
        "output buffer holds 10 bytes, 4 images at the target size need 192"
    );
    let e = process(&[], &texts("x"), &spec, key(0), (4, 4), &mut out).unwrap_err();
    assert!(matches!(e, AugmentError::NoImages));
    let bad = AugmentSpec {
        crop_scale: [0.9, 0.2],
        ..spec
    };
    let mut out = vec![0u8; 192];
    let e = process(&refs, &texts("x"), &bad, key(0), (4, 4), &mut out).unwrap_err();
    assert!(e.to_string().starts_with("augment.crop_scale: "), "{e}");
}

/// JPEGs of `img` with every chroma subsampling libjpeg-turbo names, baseline and
/// progressive, and greyscale.
fn jpeg_variants(img: &RgbImage) -> Vec<(String, Bytes)> {
    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
    let (w, h) = (img.width() as u16, img.height() as u16);
    let grey: Vec<u8> = img
        .pixels()
        .map(|p| ((p[0] as u32 * 77 + p[1] as u32 * 150 + p[2] as u32 * 29) >> 8) as u8)
        .collect();
    let mut out = Vec::new();
    let factors = [
        ("444", SamplingFactor::R_4_4_4),
        ("422", SamplingFactor::R_4_2_2),
        ("420", SamplingFactor::R_4_2_0),
        ("440", SamplingFactor::R_4_4_0),
        ("411", SamplingFactor::R_4_1_1),
    ];
    for (name, factor) in factors {
        for progressive in [false, true] {
            let mut buf = Vec::new();
            let mut e = Encoder::new(&mut buf, 90);
            e.set_sampling_factor(factor);
            e.set_progressive(progressive);
            e.encode(img.as_raw(), w, h, ColorType::Rgb).unwrap();
            out.push((
                format!("{name} progressive={progressive}"),
                Bytes::from(buf),
            ));
        }
    }
    let mut buf = Vec::new();
    Encoder::new(&mut buf, 90)
        .encode(&grey, w, h, ColorType::Luma)
        .unwrap();
    out.push(("grey".into(), Bytes::from(buf)));
    out
}

/// PNGs of `img`: palette, 8-bit RGB and RGBA (decoded row by row down to the crop),
/// and greyscale and 16-bit RGB (decoded whole).
fn png_variants(img: &RgbImage) -> Vec<(String, Bytes)> {
    let (w, h) = img.dimensions();
    let rgba: Vec<u8> = img
        .pixels()
        .flat_map(|p| [p[0], p[1], p[2], p[0] ^ 0x5A])
        .collect();
    let grey: Vec<u8> = img.pixels().map(|p| p[1]).collect();
    let rgb16: Vec<u8> = img.as_raw().iter().flat_map(|&v| [v, v ^ 0x33]).collect();
    let encode = |data: &[u8], color| {
        let mut buf = Vec::new();
        PngEncoder::new(&mut buf)
            .write_image(data, w, h, color)
            .unwrap();
        Bytes::from(buf)
    };
    let mut palette = Vec::new();
    {
        let mut e = png::Encoder::new(&mut palette, w, h);
        e.set_color(png::ColorType::Indexed);
        e.set_depth(png::BitDepth::Eight);
        e.set_palette(
            (0..=255u8)
                .flat_map(|i| [i, 255 - i, i.wrapping_mul(7)])
                .collect::<Vec<_>>(),
        );
        let indices: Vec<u8> = img.pixels().map(|p| p[0]).collect();
        e.write_header()
            .unwrap()
            .write_image_data(&indices)
            .unwrap();
    }
    vec![
        ("png palette".into(), Bytes::from(palette)),
        (
            "png rgb8".into(),
            encode(img.as_raw(), ExtendedColorType::Rgb8),
        ),
        ("png rgba8".into(), encode(&rgba, ExtendedColorType::Rgba8)),
        ("png l8".into(), encode(&grey, ExtendedColorType::L8)),
        ("png rgb16".into(), encode(&rgb16, ExtendedColorType::Rgb16)),
    ]
}

#[test]
fn decoding_only_what_the_resize_reads_gives_the_bytes_of_a_whole_decode() {
    use editfeed::pipeline::augment::{crop_box, resize_crop, resize_reads};
    use editfeed::rng::{Purpose, Rng};
    let spec = AugmentSpec {
        crop_scale: [0.08, 1.0],
        ..AugmentSpec::default()
    };
    // Decodes expected to skip work, and how many did.
    let (mut expected, mut partial) = (0, 0);
    for (size, seed) in [((640, 480), 1), ((333, 517), 2)] {
        let img = photo(size.0, size.1, seed);
        let pngs = png_variants(&img);
        for (name, bytes) in jpeg_variants(&img).into_iter().chain(pngs) {
            let header = codec::probe(ImageFormat::Jpeg, &bytes).unwrap();
            let row_by_row = ["png rgb8", "png rgba8", "png palette"].contains(&name.as_str());
            for (i, target) in [(64, 64), (512, 512), (300, 200)].into_iter().enumerate() {
                for ordinal in 0..2u64 {
                    let mut rng = Rng::keyed(seed as u64, 0, i as u64, ordinal, Purpose::Crop);
                    let crop = crop_box(&spec, size, target, &mut rng);
                    let [x0, y0, x1, y1] = crop;
                    let need = (
                        (target.0 as f64 / (x1 - x0)).ceil() as u32,
                        (target.1 as f64 / (y1 - y0)).ceil() as u32,
                    );
                    let path = codec::choose_path(&header, Some(need));
                    let read = resize_reads(crop, &header, path, target);
                    let whole = codec::decode_path(&header, &bytes, path, None).unwrap();
                    let part = codec::decode_path(&header, &bytes, path, Some(read)).unwrap();
                    let out = |d: &codec::Decoded| {
                        let mut out = vec![0u8; target.0 as usize * target.1 as usize * 3];
                        resize_crop(d, crop, target, &mut out).unwrap();
                        out
                    };
                    let what = format!("{name} {size:?} -> {target:?} {path:?} crop {crop:?}");
                    let want = out(&whole);
                    assert!(out(&part) == want, "{what}: the output differs");
                    // The resize reads nothing outside `read`.
                    let mut masked = whole.clone();
                    let row = masked.width as usize * 3;
                    let (x0, x1) = (read.x0 as usize * 3, read.x1 as usize * 3);
                    for (y, line) in masked.pixels.to_mut().chunks_exact_mut(row).enumerate() {
                        if (read.y0..read.y1).contains(&(y as u32)) {
                            line[..x0].fill(0);
                            line[x1..].fill(0);
                        } else {
                            line.fill(0);
                        }
                    }
                    assert!(
                        out(&masked) == want,
                        "{what}: the resize reads outside {read:?}"
                    );
                    let turbo = cfg!(feature = "turbojpeg") && path != DecodePath::Full;
                    if turbo || row_by_row {
                        expected += 1;
                        partial += usize::from(part.pixels != whole.pixels);
                    } else {
                        assert!(part.pixels == whole.pixels, "{what}");
                    }
                }
            }
        }
    }
    // Most crops skip part of the image.
    assert!(
        partial * 2 > expected,
        "{partial} of {expected} decodes were partial"
    );
}

#[test]
fn a_png_cut_short_decodes_for_regions_above_the_cut_only() {
    use editfeed::codec::Region;
    let (w, h) = (320, 240);
    let bytes = encode(&photo(w, h, 5), ImageFormat::Png);
    let cut = bytes.slice(..bytes.len() * 6 / 10);
    let header = codec::probe(ImageFormat::Png, &cut).unwrap();
    let whole = codec::decode_path(&header, &bytes, DecodePath::Full, None).unwrap();
    let rows = |y1| Region {
        x0: 0,
        y0: 0,
        x1: w,
        y1,
    };
    let top = codec::decode_path(&header, &cut, DecodePath::Full, Some(rows(40))).unwrap();
    let n = (w * 40 * 3) as usize;
    assert!(top.pixels[..n] == whole.pixels[..n]);
    for read in [None, Some(rows(h - 1))] {
        let e = codec::decode_path(&header, &cut, DecodePath::Full, read).unwrap_err();
        assert!(
            e.to_string().starts_with("png decode with "),
            "{read:?}: {e}"
        );
    }
}
