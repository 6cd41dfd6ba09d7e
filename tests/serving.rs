//! Black-box tests of the Loader service over real gRPC on 127.0.0.1:0: determinism
//! across worker counts, prefetch depths, world sizes and resumes; concurrency; client
//! disconnects; and the errors a bad request gets.

mod common;

use common::*;
use editfeed::dataset::writer::ShardTarget;
use editfeed::transport::proto::v1 as pb;
use tonic::Code;

fn dataset(samples: u64, seed: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(
        dir.path(),
        &all_samples(&small_synth(samples, seed)),
        ShardTarget::Samples(5),
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_hashes_do_not_depend_on_workers_or_prefetch() {
    let dir = dataset(30, 1);
    let mut runs = Vec::new();
    for (workers, prefetch) in [(1, 1), (2, 2), (8, 4)] {
        let server = TestServer::start(&[("d", dir.path())], workers, prefetch).await;
        let batches = fetch_all(&server.endpoint, request("d", 5, 4, 1, 0, 32, 12))
            .await
            .unwrap();
        assert_eq!(batches.len(), 12);
        runs.push(digests(&batches));
        server.stop().await;
    }
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[0], runs[2]);
    let subsets: std::collections::BTreeSet<_> = runs[0].iter().collect();
    assert!(subsets.len() > 1, "digests differ between batches");
}

/// One sample's share of a batch: its bytes in every tensor plus its metadata.
fn sample_view(b: &pb::Batch, i: usize) -> (Vec<Vec<u8>>, pb::SampleMeta) {
    let n = b.samples.len();
    let parts = b
        .tensors
        .iter()
        .map(|t| {
            let per = t.data.len() / n;
            t.data[i * per..(i + 1) * per].to_vec()
        })
        .collect();
    (parts, b.samples[i].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranks_concatenate_to_the_global_batch_for_any_world_size() {
    let dir = dataset(30, 2);
    let server = TestServer::start(&[("d", dir.path())], 2, 2).await;
    let steps = 6;
    let whole = fetch_all(&server.endpoint, request("d", 9, 4, 1, 0, 24, steps))
        .await
        .unwrap();
    for world in [2u32, 4] {
        let mut per_rank = Vec::new();
        for rank in 0..world {
            per_rank.push(
                fetch_all(&server.endpoint, request("d", 9, 4, world, rank, 24, steps))
                    .await
                    .unwrap(),
            );
        }
        for (s, global) in whole.iter().enumerate() {
            let mut joined = Vec::new();
            for rank in &per_rank {
                let b = &rank[s];
                assert_eq!(b.subset, global.subset);
                joined.extend((0..b.samples.len()).map(|i| sample_view(b, i)));
            }
            let expected: Vec<_> = (0..global.samples.len())
                .map(|i| sample_view(global, i))
                .collect();
            assert_eq!(joined.len(), expected.len());
            for (j, (got, want)) in joined.iter().zip(&expected).enumerate() {
                assert_eq!(got.1, want.1, "world {world} step {s} sample {j} metadata");
                assert!(
                    got.0 == want.0,
                    "world {world} step {s} sample {j} tensors differ"
                );
            }
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_stream_is_the_suffix_of_the_full_stream() {
    let dir = dataset(20, 3);
    let server = TestServer::start(&[("d", dir.path())], 2, 2).await;
    let full = fetch_all(&server.endpoint, request("d", 1, 4, 2, 1, 32, 10))
        .await
        .unwrap();
    let mut req = request("d", 1, 4, 2, 1, 32, 6);
    req.cursor = full[3].cursor.clone();
    let resumed = fetch_all(&server.endpoint, req).await.unwrap();
    assert_eq!(resumed[0].step, 4);
    assert_eq!(digests(&resumed), digests(&full[4..]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_streams_each_get_their_own_batches() {
    let dir = dataset(20, 4);
    let server = TestServer::start(&[("d", dir.path())], 2, 2).await;
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let endpoint = server.endpoint.clone();
        tasks.push(tokio::spawn(async move {
            let seed = i % 4;
            (
                seed,
                digests(
                    &fetch_all(&endpoint, request("d", seed, 2, 1, 0, 16, 5))
                        .await
                        .unwrap(),
                ),
            )
        }));
    }
    let mut by_seed: std::collections::BTreeMap<u64, Vec<Vec<String>>> = Default::default();
    for t in tasks {
        let (seed, d) = t.await.unwrap();
        assert_eq!(d.len(), 5);
        by_seed.entry(seed).or_default().push(d);
    }
    for runs in by_seed.values() {
        assert!(
            runs.windows(2).all(|w| w[0] == w[1]),
            "same seed, same batches"
        );
    }
    assert_ne!(by_seed[&0][0], by_seed[&1][0], "different seeds differ");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_frees_its_work() {
    let dir = dataset(20, 5);
    let server = TestServer::start(&[("d", dir.path())], 1, 4).await;
    let mut client = editfeed::transport::client::connect(&server.endpoint)
        .await
        .unwrap();
    let mut stream = client
        .stream(request("d", 0, 8, 1, 0, 48, 0))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    assert_eq!(
        server
            .state
            .streams
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    drop(stream);
    drop(client);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stats = server.state.pool.stats();
        let open = server
            .state
            .streams
            .load(std::sync::atomic::Ordering::SeqCst);
        if open == 0 && stats.streams == 0 && stats.queued == 0 && stats.busy == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "work not freed: {stats:?}, {open} streams"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_field() {
    let dir = dataset(10, 6);
    let server = TestServer::start(&[("d", dir.path())], 1, 1).await;
    let e = &server.endpoint;
    let check = |code: Code, needle: &'static str| {
        move |r: Result<Vec<pb::Batch>, tonic::Status>| {
            let s = r.expect_err("request should be refused");
            assert_eq!(s.code(), code, "{s:?}");
            assert!(
                s.message().contains(needle),
                "{needle:?} not in {:?}",
                s.message()
            );
        }
    };
    check(Code::NotFound, "\"nope\" is not registered")(
        fetch_all(e, request("nope", 0, 4, 1, 0, 32, 1)).await,
    );
    check(Code::InvalidArgument, "never a location")(
        fetch_all(e, request("/etc/passwd", 0, 4, 1, 0, 32, 1)).await,
    );
    check(Code::InvalidArgument, "world_size")(fetch_all(e, request("d", 0, 4, 3, 0, 32, 1)).await);
    check(Code::InvalidArgument, "rank")(fetch_all(e, request("d", 0, 4, 2, 2, 32, 1)).await);
    check(Code::InvalidArgument, "global_batch")(
        fetch_all(e, request("d", 0, 0, 1, 0, 32, 1)).await,
    );
    check(Code::InvalidArgument, "output.width")(
        fetch_all(e, request("d", 0, 4, 1, 0, 0, 1)).await,
    );
    check(Code::InvalidArgument, "output.width")(
        fetch_all(e, request("d", 0, 4, 1, 0, 100_000, 1)).await,
    );
    let mut bad_format = request("d", 0, 4, 1, 0, 32, 1);
    bad_format.output.as_mut().unwrap().format = 42;
    check(Code::InvalidArgument, "output.format")(fetch_all(e, bad_format).await);
    // A cursor from another spec is refused, naming the spec.
    let good = fetch_all(e, request("d", 0, 4, 1, 0, 32, 1)).await.unwrap();
    let mut foreign = request("d", 1, 4, 1, 0, 32, 1);
    foreign.cursor = good[0].cursor.clone();
    check(Code::InvalidArgument, "spec")(fetch_all(e, foreign).await);
    let mut garbage = request("d", 0, 4, 1, 0, 32, 1);
    garbage.cursor = "not-a-cursor".into();
    check(Code::InvalidArgument, "cursor")(fetch_all(e, garbage).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_sample_is_replaced_and_the_stream_goes_on() {
    let (dir, broken_key) = sft_dataset_with_broken_sample(2);
    let server = TestServer::start(&[("d", dir.path())], 2, 2).await;
    // One epoch of 6 samples in batches of 2: the broken one is somewhere in it.
    let run = || fetch_all(&server.endpoint, request("d", 3, 2, 1, 0, 16, 3));
    let batches = run().await.unwrap();
    assert_eq!(batches.len(), 3);
    let metas: Vec<_> = batches.iter().flat_map(|b| b.samples.clone()).collect();
    let replaced: Vec<_> = metas
        .iter()
        .filter(|m| !m.replaced_key.is_empty())
        .collect();
    assert_eq!(replaced.len(), 1, "{metas:?}");
    assert_eq!(replaced[0].replaced_key, broken_key);
    assert!(metas.iter().all(|m| m.key != broken_key));
    assert_eq!(
        digests(&batches),
        digests(&run().await.unwrap()),
        "the replacement is deterministic"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_subset_of_broken_samples_ends_in_data_loss_counting_what_was_tried() {
    use editfeed::dataset::sample::Role;
    use editfeed::dataset::Subset;
    let dir = tempfile::tempdir().unwrap();
    let mut samples: Vec<_> = all_samples(&small_synth(10, 7))
        .into_iter()
        .filter(|s| s.subset() == Subset::Sft)
        .collect();
    let n = samples.len();
    assert!(n > 1 && (n as u64) < editfeed::pipeline::prepare::MAX_REPLACEMENTS);
    for s in &mut samples {
        let img = s.images.iter_mut().find(|i| i.role == Role::Edit).unwrap();
        img.bytes = bytes::Bytes::from_static(b"\x89PNG\r\n\x1a\nthis is not a png");
    }
    write_dataset(dir.path(), &samples, ShardTarget::Samples(4));
    let server = TestServer::start(&[("d", dir.path())], 2, 2).await;
    let err = fetch_all(&server.endpoint, request("d", 3, 2, 1, 0, 16, 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    let want = format!("and the {} after it all failed", n - 1);
    assert!(
        err.message().contains(&want),
        "{want:?} not in {}",
        err.message()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_lists_datasets_and_encoded_output_passes_bytes_through() {
    let dir = dataset(10, 8);
    let server = TestServer::start(&[("d", dir.path())], 1, 1).await;
    let mut client = editfeed::transport::client::connect(&server.endpoint)
        .await
        .unwrap();
    let info = client
        .describe(pb::DescribeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.datasets.len(), 1);
    assert_eq!(
        info.datasets[0]
            .subsets
            .iter()
            .map(|s| s.samples)
            .sum::<u64>(),
        10
    );
    let mut req = request("d", 0, 2, 1, 0, 32, 2);
    req.output.as_mut().unwrap().format = pb::OutputFormat::Encoded as i32;
    let batches = fetch_all(&server.endpoint, req).await.unwrap();
    let ds = editfeed::dataset::Dataset::open(dir.path()).unwrap();
    for b in &batches {
        let enc = b.tensors.iter().find(|t| t.name == "encoded").unwrap();
        let offs: Vec<i64> = b
            .tensors
            .iter()
            .find(|t| t.name == "encoded_offsets")
            .unwrap()
            .data
            .chunks(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let subset = editfeed::dataset::Subset::from_name(&b.subset).unwrap();
        let sample = ds.read_sample(subset, b.samples[0].ordinal).unwrap();
        let src = &enc.data[offs[0] as usize..offs[1] as usize];
        assert_eq!(
            src,
            &sample.images[0].bytes[..],
            "source bytes pass through untouched"
        );
    }
    server.stop().await;
}

/// Writes sft samples whose source (400x300 JPEG) and edit (256x256 PNG) both carry a red
/// disc centred at the same relative position; half the instructions name a direction.
fn marker_dataset() -> tempfile::TempDir {
    use editfeed::codec::ImageFormat;
    use editfeed::dataset::sample::{Role, Sample, SampleImage, SampleMeta};
    use editfeed::dataset::Subset;
    use image::{ImageEncoder, Rgb, RgbImage};
    let draw = |w: u32, h: u32, cx: f32, cy: f32| {
        let mut img = RgbImage::from_pixel(w, h, Rgb([40, 90, 40]));
        let r = 0.06 * w.min(h) as f32;
        for (x, y, p) in img.enumerate_pixels_mut() {
            let (dx, dy) = (
                x as f32 + 0.5 - cx * w as f32,
                y as f32 + 0.5 - cy * h as f32,
            );
            if dx * dx + dy * dy < r * r {
                *p = Rgb([250, 10, 10]);
            }
        }
        img
    };
    let encode = |img: &RgbImage, jpeg: bool| {
        let mut out = Vec::new();
        if jpeg {
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
                .write_image(
                    img.as_raw(),
                    img.width(),
                    img.height(),
                    image::ExtendedColorType::Rgb8,
                )
                .unwrap();
        } else {
            image::codecs::png::PngEncoder::new(&mut out)
                .write_image(
                    img.as_raw(),
                    img.width(),
                    img.height(),
                    image::ExtendedColorType::Rgb8,
                )
                .unwrap();
        }
        bytes::Bytes::from(out)
    };
    let samples: Vec<Sample> = (0..16)
        .map(|i| {
            let (cx, cy) = (0.3 + 0.02 * i as f32, 0.6 - 0.01 * i as f32);
            let text = if i % 2 == 0 {
                "move the red disc to the left"
            } else {
                "make the disc brighter"
            };
            Sample {
                key: format!("{i:08}"),
                meta: SampleMeta {
                    subset: Some(Subset::Sft),
                    text: text.into(),
                    ..Default::default()
                },
                images: vec![
                    SampleImage {
                        role: Role::Source,
                        format: ImageFormat::Jpeg,
                        bytes: encode(&draw(400, 300, cx, cy), true),
                    },
                    SampleImage {
                        role: Role::Edit,
                        format: ImageFormat::Png,
                        bytes: encode(&draw(256, 256, cx, cy), false),
                    },
                ],
            }
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), &samples, ShardTarget::Samples(8));
    dir
}

/// The centroid of red pixels in one HWC image, and how many there are.
fn red_centroid(px: &[u8], w: usize) -> (f64, f64, usize) {
    let (mut sx, mut sy, mut n) = (0.0, 0.0, 0usize);
    for (i, p) in px.chunks_exact(3).enumerate() {
        if p[0] > 180 && p[1] < 90 && p[2] < 90 {
            sx += (i % w) as f64;
            sy += (i / w) as f64;
            n += 1;
        }
    }
    (sx / n.max(1) as f64, sy / n.max(1) as f64, n)
}

fn with_augment(mut req: pb::StreamRequest, augment: pb::Augment) -> pb::StreamRequest {
    req.augment = Some(augment);
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marker_stays_aligned_across_the_images_of_a_sample() {
    let dir = marker_dataset();
    let server = TestServer::start(&[("m", dir.path())], 2, 2).await;
    let augment = pb::Augment {
        hflip: Some(0.5),
        flip_policy: pb::FlipPolicy::Ignore as i32,
        ..Default::default()
    };
    let batches = fetch_all(
        &server.endpoint,
        with_augment(request("m", 11, 4, 1, 0, 64, 12), augment),
    )
    .await
    .unwrap();
    let (mut compared, mut flipped) = (0, 0);
    for b in &batches {
        let (src, tgt) = (&b.tensors[0], &b.tensors[1]);
        let img = 64 * 64 * 3;
        for i in 0..b.samples.len() {
            let a = red_centroid(&src.data[i * img..(i + 1) * img], 64);
            let t = red_centroid(&tgt.data[i * img..(i + 1) * img], 64);
            // Compare only markers wholly inside the crop in both images.
            if a.2 > 20 && t.2 > 20 && (a.2 as f64 / t.2 as f64 - 1.0).abs() < 0.5 {
                assert!(
                    (a.0 - t.0).abs() < 2.0 && (a.1 - t.1).abs() < 2.0,
                    "sample {} step {}: source marker at {a:?}, target at {t:?}",
                    b.samples[i].key,
                    b.step
                );
                compared += 1;
                flipped += b.samples[i].flipped as usize;
            }
        }
    }
    assert!(
        compared >= 10,
        "too few samples kept the marker: {compared}"
    );
    assert!(
        flipped > 0 && flipped < compared,
        "flips: {flipped} of {compared}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flip_policies_treat_direction_words_as_asked() {
    let dir = marker_dataset();
    let server = TestServer::start(&[("m", dir.path())], 2, 2).await;
    let run = |policy: pb::FlipPolicy| {
        let augment = pb::Augment {
            hflip: Some(1.0),
            flip_policy: policy as i32,
            ..Default::default()
        };
        fetch_all(
            &server.endpoint,
            with_augment(request("m", 2, 16, 1, 0, 32, 1), augment),
        )
    };
    let metas = |b: Vec<pb::Batch>| b.into_iter().flat_map(|b| b.samples).collect::<Vec<_>>();
    for m in metas(run(pb::FlipPolicy::Skip).await.unwrap()) {
        let directional = m.text.contains("left");
        assert_eq!(m.flipped, !directional, "skip: {m:?}");
    }
    for m in metas(run(pb::FlipPolicy::Swap).await.unwrap()) {
        assert!(m.flipped);
        assert!(!m.text.contains("left"), "swap rewrote left: {:?}", m.text);
        let original_directional =
            m.key.trim_start_matches('0').parse::<u32>().unwrap_or(0) % 2 == 0;
        assert_eq!(
            m.text.contains("to the right"),
            original_directional,
            "{m:?}"
        );
    }
    for m in metas(run(pb::FlipPolicy::Ignore).await.unwrap()) {
        assert!(m.flipped);
        assert!(
            !m.text.contains("to the right"),
            "ignore leaves the text: {:?}",
            m.text
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aspect_buckets_give_one_shape_per_step_on_every_rank() {
    let dir = dataset(20, 9);
    let server = TestServer::start(&[("d", dir.path())], 2, 2).await;
    let with_buckets = |world, rank| {
        let mut req = request("d", 4, 4, world, rank, 32, 8);
        req.output.as_mut().unwrap().buckets = vec![
            pb::Size {
                width: 48,
                height: 32,
            },
            pb::Size {
                width: 32,
                height: 48,
            },
        ];
        req
    };
    let whole = fetch_all(&server.endpoint, with_buckets(1, 0))
        .await
        .unwrap();
    let halves = [
        fetch_all(&server.endpoint, with_buckets(2, 0))
            .await
            .unwrap(),
        fetch_all(&server.endpoint, with_buckets(2, 1))
            .await
            .unwrap(),
    ];
    let mut shapes = std::collections::BTreeSet::new();
    for (s, b) in whole.iter().enumerate() {
        let hw = |b: &pb::Batch| {
            let shape = &b.tensors[0].shape;
            (shape[shape.len() - 3], shape[shape.len() - 2])
        };
        assert!(
            [(32, 48), (48, 32)].contains(&hw(b)),
            "{:?}",
            b.tensors[0].shape
        );
        assert_eq!(hw(&halves[0][s]), hw(b), "rank 0 of 2, step {s}");
        assert_eq!(hw(&halves[1][s]), hw(b), "rank 1 of 2, step {s}");
        shapes.insert(hw(b));
    }
    assert_eq!(shapes.len(), 2, "both buckets are drawn over 8 steps");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_prints_the_resume_cursor_when_the_stream_ends_with_an_error() {
    use editfeed::dataset::sample::Role;
    use editfeed::dataset::Subset;
    let dir = tempfile::tempdir().unwrap();
    // Good sft samples, then preference samples whose chosen image never decodes.
    let mut samples: Vec<_> = all_samples(&small_synth(20, 7))
        .into_iter()
        .filter(|s| s.subset() != Subset::MultiTurn)
        .collect();
    for s in samples
        .iter_mut()
        .filter(|s| s.subset() == Subset::Preference)
    {
        let img = s
            .images
            .iter_mut()
            .find(|i| i.role == Role::Chosen)
            .unwrap();
        img.bytes = bytes::Bytes::from_static(b"\x89PNG\r\n\x1a\nthis is not a png");
    }
    write_dataset(dir.path(), &samples, ShardTarget::Samples(4));
    let curriculum = dir.path().join("curriculum.toml");
    std::fs::write(
        &curriculum,
        "[[curriculum]]\nuntil_step = 1\nweights = { sft = 1.0 }\n\n\
         [[curriculum]]\nweights = { preference = 1.0 }\n",
    )
    .unwrap();
    let server = TestServer::start(&[("d", dir.path())], 2, 2).await;
    let endpoint = server.endpoint.clone();
    let out = tokio::task::spawn_blocking(move || {
        bin()
            .args(["fetch", "--endpoint", &endpoint, "--dataset", "d"])
            .args(["--seed", "1", "--global-batch", "2", "--steps", "3"])
            .args(["--size", "16", "--hash", "--curriculum"])
            .arg(&curriculum)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("DataLoss"), "{stderr}");
    // The one batch received (step 0) carried the cursor the error names.
    let cursor = stderr
        .split("--cursor ")
        .nth(1)
        .and_then(|t| t.split(": ").next())
        .unwrap_or_else(|| panic!("no resume cursor in {stderr}"));
    assert!(
        stdout.lines().next().unwrap().starts_with("0 0 sft"),
        "{stdout}"
    );
    assert!(
        cursor.starts_with("ef1:") && cursor.split(':').count() == 4,
        "{cursor}"
    );
    assert!(stderr.contains("after 1 batches"), "{stderr}");
    server.stop().await;
}
