"""The Python reference pipeline: what a PyTorch DataLoader with workers does over the
same shards, without torch.

One worker process per core, each reading its share of the shards with ``webdataset``
through ``pipe:zstd -dc`` URLs, decoding every image with Pillow, applying the same
random resized crop (the algorithm of ``src/pipeline/augment/crop.rs``: area in [0.5, 1],
aspect in [3/4, 4/3] of the target's, ten attempts then a centred fallback, one box in
relative coordinates for all images of a sample), resizing with the same kernel
(bicubic, Catmull-Rom, cropping through ``resize(box=...)`` without a copy), flipping
the small output, and collating whole batches into the same uint8 arrays as the
daemon's: ``source``/``target`` ``[B, H, W, 3]`` for sft, ``source``/``chosen``/
``rejected`` for preference, ``images`` ``[B, T+1, H, W, 3]`` and ``turn_counts`` for
multi-turn. Batches reach the main process through a bounded queue (two per worker,
DataLoader's default ``prefetch_factor``), as DataLoader's do.

    python bench/python_reference.py --data DATASET --subset sft --size 256 --batches 20

Prints one JSON line: samples, seconds from the first batch to the last, samples/s and
the time to the first batch. Random numbers differ from the daemon's (Python's own
generator), their distribution does not.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing as mp
import os
import random
import shlex
import time
from pathlib import Path

import numpy as np
from PIL import Image

CROP_SCALE = (0.5, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
HFLIP = 0.5
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def crop_box(rng: random.Random, ref_w: int, ref_h: int, tw: int, th: int) -> tuple[float, float, float, float]:
    """The random resized crop of augment.rs, in relative coordinates."""
    a_src, a_tgt = ref_w / ref_h, tw / th
    ln_lo, ln_hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    for _ in range(10):
        s = rng.uniform(*CROP_SCALE)
        a = a_tgt * math.exp(rng.uniform(ln_lo, ln_hi))
        cw, ch = math.sqrt(s * a / a_src), math.sqrt(s * a_src / a)
        if cw <= 1.0 and ch <= 1.0:
            x0, y0 = rng.random() * (1.0 - cw), rng.random() * (1.0 - ch)
            return x0, y0, min(x0 + cw, 1.0), min(y0 + ch, 1.0)
    a = min(max(a_src, a_tgt * CROP_RATIO[0]), a_tgt * CROP_RATIO[1])
    cw, ch = (a / a_src, 1.0) if a < a_src else ((1.0, a_src / a) if a > a_src else (1.0, 1.0))
    x0, y0 = (1.0 - cw) / 2, (1.0 - ch) / 2
    return x0, y0, x0 + cw, y0 + ch


def member(sample: dict, name: str) -> bytes | None:
    """The encoded image `name` (src, edit, chosen, rejected0, turn1, ...) of a sample,
    whichever image extension it has."""
    for ext in IMAGE_EXTS:
        if f"{name}.{ext}" in sample:
            return sample[f"{name}.{ext}"]
    return None


def images_of(sample: dict, subset: str, rng: random.Random) -> list[bytes]:
    """The encoded images a batch slot needs, in the daemon's slot order."""

    def field(name: str) -> bytes | None:
        return member(sample, name)

    out = [field("src")]
    if subset == "sft":
        out.append(field("edit"))
    elif subset == "preference":
        out.append(field("chosen"))
        rejected = [b for i in range(16) if (b := field(f"rejected{i}")) is not None]
        out.append(rejected[rng.randrange(len(rejected))])
    else:
        out += [b for i in range(1, 17) if (b := field(f"turn{i}")) is not None]
    return out


def augment(encoded: list[bytes], rng: random.Random, tw: int, th: int, out: np.ndarray) -> None:
    """Decodes the images and writes them, cropped, resized and maybe flipped, to out."""
    decoded = [Image.open(io.BytesIO(b)).convert("RGB") for b in encoded]
    x0, y0, x1, y1 = crop_box(rng, decoded[0].width, decoded[0].height, tw, th)
    flip = rng.random() < HFLIP
    for img, dst in zip(decoded, out):
        w, h = img.size
        small = img.resize((tw, th), Image.Resampling.BICUBIC, box=(x0 * w, y0 * h, x1 * w, y1 * h))
        if flip:
            small = small.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        dst[...] = np.asarray(small)


def subset_shards(data: Path, subset: str) -> tuple[list[Path], int]:
    """The subset's shard files in manifest order, and its batch slots per sample (2
    for sft, 3 for preference, 1 + the most turns for multi-turn)."""
    manifest = json.loads((data / "manifest.json").read_text())
    sub = manifest["subsets"][subset]
    slots = {"sft": 2, "preference": 3}.get(subset, 1 + sub.get("max_turns", 0))
    return [data / s["path"] for s in sub["shards"]], slots


def shard_urls(shards: list[Path]) -> list[str]:
    """webdataset URLs that read the zstd-compressed shards through `zstd -dc`."""
    return [f"pipe:zstd -dc < {shlex.quote(str(path))}" for path in shards]


def worker_shares(items: list, workers: int) -> list[list]:
    """Each worker's share of the shards, as webdataset's split_by_worker gives; with
    fewer shards than workers every worker reads all of them."""
    return [items[w::workers] or items for w in range(workers)]


def read_samples(urls: list[str]):
    """One pass over the samples of the shards (webdataset's dicts of member name
    suffix to bytes)."""
    # Imported here: webdataset imports torch when it is installed, which the peers
    # that share this module's crop and shard helpers must not pay for in memory.
    import webdataset as wds

    return wds.WebDataset(urls, shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False)


def sample_stream(urls: list[str]):
    """The samples of the shards, epoch after epoch, forever."""
    dataset = read_samples(urls)
    return (s for _epoch in iter(int, 1) for s in dataset)


def worker(urls: list[str], subset: str, size: int, batch: int, slots: int, seed: int, queue: mp.Queue) -> None:
    """Produces collated batches from its shards forever (the parent ends it)."""
    rng = random.Random(seed)
    names = ["source", "target"] if subset == "sft" else ["source", "chosen", "rejected"]
    pending: list[list[bytes]] = []
    for sample in sample_stream(urls):
        pending.append(images_of(sample, subset, rng))
        if len(pending) < batch:
            continue
        pixels = np.zeros((batch, slots, size, size, 3), dtype=np.uint8)
        for i, encoded in enumerate(pending):
            augment(encoded, rng, size, size, pixels[i, : len(encoded)])
        if subset == "multi_turn":
            arrays = {"images": pixels, "turn_counts": np.array([len(e) - 1 for e in pending], dtype=np.int32)}
        else:
            arrays = {name: np.ascontiguousarray(pixels[:, j]) for j, name in enumerate(names)}
        queue.put(arrays)
        pending = []


def main() -> None:
    """Runs the reference pipeline and prints its figures as JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="an editfeed dataset folder")
    p.add_argument("--subset", default="sft", choices=["sft", "preference", "multi_turn"])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batches", type=int, default=20, help="timed batches after the first")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    shards, slots = subset_shards(args.data, args.subset)
    shares = worker_shares(shard_urls(shards), args.workers)
    ctx = mp.get_context("fork")
    queue = ctx.Queue(maxsize=2 * args.workers)
    started = time.perf_counter()
    procs = [
        ctx.Process(target=worker, args=(shares[w], args.subset, args.size, args.batch, slots, args.seed + w, queue), daemon=True)
        for w in range(args.workers)
    ]
    for proc in procs:
        proc.start()
    try:
        first = queue.get()
        first_batch = time.perf_counter() - started
        assert all(a.dtype in (np.uint8, np.int32) for a in first.values())
        clock = time.perf_counter()
        for _ in range(args.batches):
            queue.get()
        seconds = time.perf_counter() - clock
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join()
    samples = args.batches * args.batch
    print(
        json.dumps(
            {
                "subset": args.subset,
                "size": args.size,
                "workers": args.workers,
                "samples": samples,
                "seconds": round(seconds, 4),
                "samples_per_s": round(samples / seconds, 2),
                "first_batch_s": round(first_batch, 4),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
