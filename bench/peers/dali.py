"""The DALI peer: NVIDIA DALI's CPU pipeline (``device_id=None``, one thread per core).

DALI cannot read zstd, so ``--prepare`` writes plain ``.tar`` copies of the subset's
shards (``zstd -dc``, timed apart and not counted). ``fn.readers.webdataset`` reads
them (DALI indexes them itself at start-up); each image is decoded with
``fn.decoders.image_slice``, DALI's fused decode and crop (libjpeg-turbo decodes only
the rows of the crop; PNG decodes whole, as everywhere), then ``fn.resize``
(bicubic, antialiased) to the square and ``fn.flip``. The crop box is drawn once per
sample in the graph, as ``python_reference.crop_box`` draws it (area [0.5, 1], aspect
[3/4, 4/3], ten attempts then the centred fallback, relative coordinates of the
source's shape from ``fn.peek_image_shape``), and the same box and flip go to every
image of the sample: ``fn.decoders.image_random_crop`` would draw a separate crop per
image, so it is not used. The batch is collated by DALI (``fn.stack`` for the turns
of multi-turn, zeros for missing turns under DALI conditionals).

One difference from the daemon: for preference DALI reads ``rejected0`` always where
the daemon picks one of the rejected edits at random (one rejected image is decoded
either way).

    python bench/peers/dali.py --data DATASET --cache DIR --prepare
    python bench/peers/dali.py --data DATASET --cache DIR --subset sft --size 256 --batches 20
"""

from __future__ import annotations

import math
import subprocess

import common
from common import ref
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali import math as dmath

def ext(name: str) -> str:
    return ";".join(f"{name}.{e}" for e in ref.IMAGE_EXTS)


def plain_tars(args) -> tuple[list, int]:
    """Plain-tar copies of the subset's shards under --cache, written once; and how
    many were written now."""
    shards, _ = ref.subset_shards(args.data, args.subset)
    out_dir = args.cache / "tar"
    out_dir.mkdir(parents=True, exist_ok=True)
    tars, made = [], 0
    for shard in shards:
        tar = out_dir / shard.name.removesuffix(".zst")
        if not tar.is_file():
            part = tar.with_suffix(".part")
            with open(part, "wb") as f:
                subprocess.run(["zstd", "-dc", str(shard)], stdout=f, check=True)
            part.rename(tar)
            made += 1
        tars.append(tar)
    return tars, made


def crop_box(shape, size: int):
    """(anchor, shape) of the random resized crop, relative, as [x, y] and [w, h]."""
    h, w = fn.cast(shape[0], dtype=types.FLOAT), fn.cast(shape[1], dtype=types.FLOAT)
    a_src = w / h
    lo, hi = ref.CROP_RATIO
    # The target is square, so the target aspect is 1.
    a_fb = dmath.clamp(a_src, lo, hi)
    cw, ch = dmath.min(a_fb / a_src, 1.0), dmath.min(a_src / a_fb, 1.0)
    x0, y0 = (1.0 - cw) * 0.5, (1.0 - ch) * 0.5
    tries = 10
    s = fn.random.uniform(range=list(ref.CROP_SCALE), shape=[tries])
    a = dmath.exp(fn.random.uniform(range=[math.log(lo), math.log(hi)], shape=[tries]))
    ux, uy = fn.random.uniform(range=[0.0, 1.0], shape=[tries]), fn.random.uniform(range=[0.0, 1.0], shape=[tries])
    cws, chs = dmath.sqrt(s * a / a_src), dmath.sqrt(s * a_src / a)
    ok = fn.cast((cws <= 1.0) & (chs <= 1.0), dtype=types.FLOAT)
    # The first attempt that fits wins: apply them last to first over the fallback.
    for i in reversed(range(tries)):
        k = ok[i]
        x0 = k * (ux[i] * (1.0 - cws[i])) + (1.0 - k) * x0
        y0 = k * (uy[i] * (1.0 - chs[i])) + (1.0 - k) * y0
        cw = k * cws[i] + (1.0 - k) * cw
        ch = k * chs[i] + (1.0 - k) * ch
    # Kept inside the image against rounding.
    return fn.stack(x0, y0), fn.stack(dmath.min(cw, 1.0 - x0), dmath.min(ch, 1.0 - y0))


def augment(encoded, anchor, shape, flip, size: int):
    img = fn.decoders.image_slice(encoded, anchor, shape, device="cpu", output_type=types.RGB)
    img = fn.resize(img, size=[size, size], interp_type=types.INTERP_CUBIC, antialias=True)
    return fn.flip(img, horizontal=flip)


def build(args, tars: list, slots: int):
    names = {"sft": ["src", "edit"], "preference": ["src", "chosen", "rejected0"]}.get(args.subset)
    if names is None:
        names = ["src"] + [f"turn{t}" for t in range(1, slots)]
    multi = args.subset == "multi_turn"

    @pipeline_def(batch_size=args.batch, num_threads=args.workers, device_id=None, seed=args.seed + 1, prefetch_queue_depth=2, enable_conditionals=multi)
    def pipe():
        members = fn.readers.webdataset(
            paths=[str(t) for t in tars], ext=[ext(n) for n in names], missing_component_behavior="empty",
            random_shuffle=False, name="reader",
        )
        anchor, shape = crop_box(fn.peek_image_shape(members[0]), args.size)
        flip = fn.random.coin_flip(probability=ref.HFLIP)
        if not multi:
            return tuple(augment(m, anchor, shape, flip, args.size) for m in members)
        images = [augment(members[0], anchor, shape, flip, args.size)]
        count = None
        for m in members[1:]:
            present = m.shape()[0] > 0
            if present:
                img = augment(m, anchor, shape, flip, args.size)
            else:
                img = fn.reshape(fn.zeros(shape=[args.size, args.size, 3], dtype=types.UINT8), layout="HWC")
            images.append(img)
            c = fn.cast(present, dtype=types.INT32)
            count = c if count is None else count + c
        return fn.stack(*images), fn.cast(count, dtype=types.INT32)

    return pipe()


def batches(p, subset: str):
    out_names = common.NAMES.get(subset, ["images", "turn_counts"])
    while True:
        outs = p.run()
        yield {name: o.as_array() for name, o in zip(out_names, outs)}


def main() -> None:
    p = common.parser(__doc__)
    args = p.parse_args()
    if args.cache is None:
        p.error("--cache is needed: DALI reads plain-tar copies of the shards")
    if common.prepared(args, lambda: plain_tars(args)[1]):
        return
    _, slots = ref.subset_shards(args.data, args.subset)
    pipe = build(args, plain_tars(args)[0], slots)
    pipe.build()
    common.run(args, batches(pipe, args.subset), slots, "dali")


if __name__ == "__main__":
    main()
