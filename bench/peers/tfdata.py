"""The tf.data service peer: the same architecture as editfeed, a gRPC data service in
front of the trainer.

``--prepare`` converts the subset's shards to TFRecord, tf.data's native format (one
``tf.train.Example`` per sample: ``src``, and ``edits`` holding the edit, the chosen
edit or the turns, ``rejected`` the rejected edits; timed apart and not counted). A
server process (a child of the consumer) runs a ``DispatchServer`` and one
``WorkerServer`` on loopback; the consumer defines the pipeline and reads it through
``tf.data.experimental.service.distribute``, so that every step runs on the worker:
``TFRecordDataset``, a parallel ``map`` (AUTOTUNE, not deterministic) that decodes,
crops, resizes and flips, ``batch`` and ``prefetch``. JPEGs are decoded with
``tf.image.decode_and_crop_jpeg`` (libjpeg-turbo's fused decode and crop), other images
with ``tf.io.decode_image`` then cropped; ``tf.image.resize`` is bicubic with
antialiasing, rounded back to uint8. The crop is ``python_reference.crop_box`` drawn in
the graph (ten attempts then the centred fallback), one box in relative coordinates of
the source and one flip for all images of a sample; the rejected edit is picked at
random; turns are zero-padded to the subset's most turns.

    python bench/peers/tfdata.py --data DATASET --cache DIR --subset sft --prepare
    python bench/peers/tfdata.py --data DATASET --cache DIR --subset sft --size 256 --batches 20
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import common
from common import ref

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

TRIES = 10


def records(args) -> tuple[list[Path], int]:
    """TFRecord copies of the subset's shards under --cache, written once; and how many
    were written now."""
    shards, _ = ref.subset_shards(args.data, args.subset)
    out_dir = args.cache / "tfrecord"
    out_dir.mkdir(parents=True, exist_ok=True)
    out, made = [], 0
    for shard in shards:
        path = out_dir / (shard.name.removesuffix(".tar.zst") + ".tfrecord")
        if not path.is_file():
            part = path.with_suffix(".part")
            with tf.io.TFRecordWriter(str(part)) as w:
                for sample in ref.read_samples(ref.shard_urls([shard])):
                    w.write(example(sample, args.subset).SerializeToString())
            part.rename(path)
            made += 1
        out.append(path)
    return out, made


def example(sample: dict, subset: str) -> tf.train.Example:
    names = {"sft": ["edit"], "preference": ["chosen"]}.get(subset) or [f"turn{t}" for t in range(1, 17)]
    edits = [b for n in names if (b := ref.member(sample, n)) is not None]
    rejected = [b for i in range(16) if (b := ref.member(sample, f"rejected{i}")) is not None]

    def feature(values: list[bytes]) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))

    return tf.train.Example(features=tf.train.Features(feature={"src": feature([ref.member(sample, "src")]), "edits": feature(edits), "rejected": feature(rejected)}))


def crop_box(h, w):
    """Relative (x0, y0, cw, ch) of the random resized crop to a square."""
    a_src = w / h
    lo, hi = ref.CROP_RATIO
    a_fb = tf.clip_by_value(a_src, lo, hi)
    cw_fb, ch_fb = tf.minimum(a_fb / a_src, 1.0), tf.minimum(a_src / a_fb, 1.0)
    s = tf.random.uniform([TRIES], *ref.CROP_SCALE)
    a = tf.exp(tf.random.uniform([TRIES], math.log(lo), math.log(hi)))
    cw, ch = tf.sqrt(s * a / a_src), tf.sqrt(s * a_src / a)
    ok = (cw <= 1.0) & (ch <= 1.0)
    i = tf.argmax(tf.cast(ok, tf.int32))
    fits = tf.reduce_any(ok)
    cw, ch = tf.where(fits, cw[i], cw_fb), tf.where(fits, ch[i], ch_fb)
    x0 = tf.where(fits, tf.random.uniform([]) * (1.0 - cw), (1.0 - cw) / 2)
    y0 = tf.where(fits, tf.random.uniform([]) * (1.0 - ch), (1.0 - ch) / 2)
    return x0, y0, cw, ch


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_hw(encoded):
    """Height and width from a PNG's IHDR (big-endian at bytes 16..24), without decoding."""
    b = tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, 16, 8), tf.uint8), tf.int32)
    width = b[0] * 16777216 + b[1] * 65536 + b[2] * 256 + b[3]
    height = b[4] * 16777216 + b[5] * 65536 + b[6] * 256 + b[7]
    return tf.stack([height, width])


def image_hw(encoded):
    """Height and width from the header (JPEG, PNG); other formats are decoded."""
    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.image.extract_jpeg_shape(encoded)[:2],
        lambda: tf.cond(
            tf.equal(tf.strings.substr(encoded, 0, 8), PNG_SIGNATURE),
            lambda: png_hw(encoded),
            lambda: tf.shape(tf.io.decode_image(encoded, channels=3, expand_animations=False))[:2],
        ),
    )


def augment(encoded, box, flip, size: int):
    x0, y0, cw, ch = box
    hw = tf.cast(image_hw(encoded), tf.float32)
    top, left = tf.cast(tf.round(y0 * hw[0]), tf.int32), tf.cast(tf.round(x0 * hw[1]), tf.int32)
    ph = tf.clip_by_value(tf.cast(tf.round(ch * hw[0]), tf.int32), 1, tf.cast(hw[0], tf.int32) - top)
    pw = tf.clip_by_value(tf.cast(tf.round(cw * hw[1]), tf.int32), 1, tf.cast(hw[1], tf.int32) - left)
    img = tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.image.decode_and_crop_jpeg(encoded, tf.stack([top, left, ph, pw]), channels=3),
        lambda: tf.image.crop_to_bounding_box(tf.io.decode_image(encoded, channels=3, expand_animations=False), top, left, ph, pw),
    )
    out = tf.image.resize(img, [size, size], method="bicubic", antialias=True)
    out = tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)
    return tf.where(flip, tf.reverse(out, axis=[1]), out)


def pipeline(files: list[Path], subset: str, size: int, batch: int, slots: int) -> tf.data.Dataset:
    spec = {"src": tf.io.FixedLenFeature([], tf.string), "edits": tf.io.VarLenFeature(tf.string), "rejected": tf.io.VarLenFeature(tf.string)}

    def sample(record):
        f = tf.io.parse_single_example(record, spec)
        src, edits, rejected = f["src"], tf.sparse.to_dense(f["edits"]), tf.sparse.to_dense(f["rejected"])
        hw = tf.cast(image_hw(src), tf.float32)
        box = crop_box(hw[0], hw[1])
        flip = tf.random.uniform([]) < ref.HFLIP
        source = augment(src, box, flip, size)
        if subset == "sft":
            return {"source": source, "target": augment(edits[0], box, flip, size)}
        if subset == "preference":
            pick = tf.random.uniform([], 0, tf.size(rejected), dtype=tf.int32)
            return {"source": source, "chosen": augment(edits[0], box, flip, size), "rejected": augment(rejected[pick], box, flip, size)}
        turns = tf.map_fn(lambda e: augment(e, box, flip, size), edits, fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
        t = tf.shape(turns)[0]
        images = tf.concat([source[None], tf.pad(turns, [[0, slots - 1 - t], [0, 0], [0, 0], [0, 0]])], axis=0)
        return {"images": tf.ensure_shape(images, [slots, size, size, 3]), "turn_counts": t}

    ds = tf.data.TFRecordDataset([str(f) for f in files]).repeat()
    ds = ds.map(sample, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    return ds.batch(batch, drop_remainder=True).prefetch(2)


def serve() -> None:
    """The server process: a dispatcher and one worker on loopback, until killed."""
    dispatcher = tf.data.experimental.service.DispatchServer(tf.data.experimental.service.DispatcherConfig(port=0))
    address = dispatcher.target.split("://")[1]
    worker = tf.data.experimental.service.WorkerServer(tf.data.experimental.service.WorkerConfig(dispatcher_address=address))
    print(dispatcher.target, flush=True)
    worker.join()


def main() -> None:
    if sys.argv[1:] == ["--serve"]:
        serve()
        return
    p = common.parser(__doc__)
    args = p.parse_args()
    if args.cache is None:
        p.error("--cache is needed: tf.data reads TFRecord copies of the shards")
    if common.prepared(args, lambda: records(args)[1]):
        return
    _, slots = ref.subset_shards(args.data, args.subset)
    files, _ = records(args)
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    target = server.stdout.readline().strip()
    if not target.startswith("grpc://"):
        server.kill()
        raise SystemExit(f"the tf.data service did not start: {target!r}")
    ds = pipeline(files, args.subset, args.size, args.batch, slots)
    ds = ds.apply(tf.data.experimental.service.distribute(processing_mode="parallel_epochs", service=target))

    def stop() -> None:
        server.kill()
        server.wait()

    common.run(args, ds.as_numpy_iterator(), slots, "tfdata", cleanup=stop)


if __name__ == "__main__":
    main()
