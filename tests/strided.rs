//! Black-box tests of strided streams (`StreamRequest.step_stride` / `step_offset`, a
//! loader worker's share of a rank) over real gRPC on 127.0.0.1:0: the strided streams
//! interleaved are the plain stream, batch for batch and cursor for cursor, from step 0
//! or a cursor, with `max_batches` and with a finite curriculum.

mod common;

use common::*;
use editfeed::dataset::writer::ShardTarget;
use editfeed::transport::proto::v1 as pb;

fn dataset() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(
        dir.path(),
        &all_samples(&small_synth(24, 4)),
        ShardTarget::Samples(5),
    );
    dir
}

fn strided(mut req: pb::StreamRequest, stride: u32, offset: u32) -> pb::StreamRequest {
    req.step_stride = stride;
    req.step_offset = offset;
    req
}

/// The streams of `stride` workers, interleaved in step order (worker k's i-th batch
/// at position i * stride + k).
async fn interleaved(endpoint: &str, req: &pb::StreamRequest, stride: u32) -> Vec<pb::Batch> {
    let mut per_worker = Vec::new();
    for k in 0..stride {
        per_worker.push(
            fetch_all(endpoint, strided(req.clone(), stride, k))
                .await
                .unwrap(),
        );
    }
    let mut out = Vec::new();
    for i in 0.. {
        let mut any = false;
        for w in &per_worker {
            if let Some(b) = w.get(i) {
                out.push(b.clone());
                any = true;
            }
        }
        if !any {
            break;
        }
    }
    out
}

fn steps(batches: &[pb::Batch]) -> Vec<u64> {
    batches.iter().map(|b| b.step).collect()
}

fn cursors(batches: &[pb::Batch]) -> Vec<String> {
    batches.iter().map(|b| b.cursor.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strided_streams_interleaved_are_the_plain_stream() {
    let dir = dataset();
    let server = TestServer::start(&[("d", dir.path())], 2, 2).await;
    let whole = fetch_all(&server.endpoint, request("d", 7, 4, 2, 1, 24, 12))
        .await
        .unwrap();
    assert_eq!(steps(&whole), (0..12).collect::<Vec<_>>());
    for stride in [2u32, 3, 5] {
        // max_batches counts each worker's batches: ceil((12 - k) / stride) for worker k
        // gives 12 in all.
        let mut per_worker = Vec::new();
        for k in 0..stride {
            let n = (12 - k as u64).div_ceil(stride as u64);
            let req = strided(request("d", 7, 4, 2, 1, 24, n), stride, k);
            let got = fetch_all(&server.endpoint, req).await.unwrap();
            assert_eq!(
                steps(&got),
                (k as u64..12).step_by(stride as usize).collect::<Vec<_>>(),
                "worker {k} of {stride}"
            );
            per_worker.push(got);
        }
        let mut joined: Vec<pb::Batch> = per_worker.concat();
        joined.sort_by_key(|b| b.step);
        assert_eq!(digests(&joined), digests(&whole), "stride {stride}");
        // Each batch's cursor resumes the whole rank after it, as in the plain stream.
        assert_eq!(cursors(&joined), cursors(&whole), "stride {stride}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strided_streams_resume_from_a_cursor_and_end_with_the_curriculum() {
    let dir = dataset();
    let server = TestServer::start(&[("d", dir.path())], 2, 2).await;
    // A finite curriculum: 9 steps, over two subsets.
    let mut spec = editfeed::plan::StreamSpec::new(3, 4);
    spec.curriculum = vec![
        editfeed::plan::Phase {
            until_step: Some(4),
            weights: [("sft".to_string(), 1.0)].into_iter().collect(),
            ramp_steps: 0,
        },
        editfeed::plan::Phase {
            until_step: Some(9),
            weights: [("preference".to_string(), 1.0)].into_iter().collect(),
            ramp_steps: 0,
        },
    ];
    let mut req = request("d", 3, 4, 1, 0, 24, 0);
    req.spec = Some(editfeed::transport::convert::spec_to_wire(&spec));
    let whole = fetch_all(&server.endpoint, req.clone()).await.unwrap();
    assert_eq!(steps(&whole), (0..9).collect::<Vec<_>>());
    for stride in [2u32, 4] {
        let got = interleaved(&server.endpoint, &req, stride).await;
        assert_eq!(digests(&got), digests(&whole), "stride {stride}");
        assert_eq!(cursors(&got), cursors(&whole), "stride {stride}");
    }
    // From the cursor of step 2 (resume at step 3): stride 2 serves 3, 5, 7 and 4, 6, 8.
    let mut resumed = req.clone();
    resumed.cursor = whole[2].cursor.clone();
    let got = interleaved(&server.endpoint, &resumed, 2).await;
    assert_eq!(steps(&got), (3..9).collect::<Vec<_>>());
    assert_eq!(digests(&got), digests(&whole[3..]));
    // A cursor taken from a strided batch resumes the whole rank after that batch.
    let worker1 = fetch_all(&server.endpoint, strided(req.clone(), 3, 1))
        .await
        .unwrap();
    assert_eq!(steps(&worker1), vec![1, 4, 7]);
    resumed.cursor = worker1[1].cursor.clone();
    let plain = fetch_all(&server.endpoint, resumed).await.unwrap();
    assert_eq!(digests(&plain), digests(&whole[5..]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_skips_steps_without_changing_them() {
    let dir = dataset();
    let server = TestServer::start(&[("d", dir.path())], 1, 1).await;
    let whole = fetch_all(&server.endpoint, request("d", 1, 4, 1, 0, 24, 13))
        .await
        .unwrap();
    // Offset past the stride, from a cursor: the cursor's step 3, then 3 + 5, 3 + 7, ...
    let mut req = strided(request("d", 1, 4, 1, 0, 24, 3), 2, 5);
    req.cursor = whole[2].cursor.clone();
    let got = fetch_all(&server.endpoint, req).await.unwrap();
    assert_eq!(steps(&got), vec![8, 10, 12]);
    let expected: Vec<_> = [8, 10, 12].iter().map(|&i| whole[i].clone()).collect();
    assert_eq!(digests(&got), digests(&expected));
    assert_eq!(cursors(&got), cursors(&expected));
    server.stop().await;
}
