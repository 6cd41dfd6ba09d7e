"""What every peer pipeline shares: the command line, the consumer loop that times and
checks the batches, collation of per-sample images into the daemon's tensors, and the
peak resident set of the pipeline's process tree.

Each peer (``bench/peers/<name>.py``) builds an iterator of batches, each a dict of
numpy uint8 arrays named and shaped as the daemon's (``source``/``target``
``[B, H, W, 3]`` for sft; ``source``/``chosen``/``rejected`` for preference; ``images``
``[B, T+1, H, W, 3]`` zero-padded and ``turn_counts`` ``[B]`` for multi-turn), and hands
it to :func:`run`, which prints one JSON line: samples, seconds from the first batch to
the last, samples/s, the time to the first batch from the start of the process, and
the peak memory of the process and all its children (servers, workers) as the sum of
their proportional set sizes (PSS), sampled every 0.2 s: memory two processes share
(a shared-memory file, a library) counts once.

The dataset reading and the random resized crop are those of the Python reference
(``bench/python_reference.py``), imported from it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np

STARTED = time.perf_counter()
BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

import python_reference as ref  # noqa: E402,F401  (shared dataset reading and crop, used by the peers)

KINDS = ("sft", "preference", "multi_turn")
NAMES = {"sft": ["source", "target"], "preference": ["source", "chosen", "rejected"]}


def parser(doc: str) -> argparse.ArgumentParser:
    """The command line every peer takes (and its own flags added after)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="an editfeed dataset folder")
    p.add_argument("--subset", default="sft", choices=KINDS)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batches", type=int, default=20, help="timed batches after the first")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, help="where converted copies of the shards are kept")
    p.add_argument("--dump", type=Path, help="also save the first batch here (.npz), to look at")
    p.add_argument("--prepare", action="store_true", help="only convert the shards (if the peer needs to) and print the seconds it took")
    return p


def collate(subset: str, images: list[list[np.ndarray]], slots: int) -> dict[str, np.ndarray]:
    """Per-sample lists of [H, W, 3] uint8 images (in the daemon's slot order) as the
    daemon's batch tensors."""
    if subset != "multi_turn":
        return {name: np.stack([sample[j] for sample in images]) for j, name in enumerate(NAMES[subset])}
    h, w, _ = images[0][0].shape
    out = np.zeros((len(images), slots, h, w, 3), dtype=np.uint8)
    for i, sample in enumerate(images):
        out[i, : len(sample)] = sample
    return {"images": out, "turn_counts": np.array([len(s) - 1 for s in images], dtype=np.int32)}


def check(subset: str, arrays: dict[str, np.ndarray], batch: int, size: int, slots: int) -> None:
    """Fails unless the batch has the daemon's names, shapes and dtypes."""
    if subset == "multi_turn":
        want = {"images": (batch, slots, size, size, 3), "turn_counts": (batch,)}
    else:
        want = {name: (batch, size, size, 3) for name in NAMES[subset]}
    got = {name: tuple(a.shape) for name, a in arrays.items()}
    if got != want:
        raise SystemExit(f"batch tensors {got} are not the daemon's {want}")
    for name, a in arrays.items():
        if a.dtype != (np.int32 if name == "turn_counts" else np.uint8):
            raise SystemExit(f"batch tensor {name} is {a.dtype}, not the daemon's dtype")


def tree_pids(root: int) -> list[int]:
    """A process and all its descendants."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def pss_mib(pids: list[int]) -> float:
    """The proportional set sizes of the processes, summed, in MiB: memory shared between
    them (shared-memory files, libraries) counts once in all, split among its users."""
    total = 0.0
    for p in pids:
        try:
            m = re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{p}/smaps_rollup").read_text(), re.M)
        except OSError:
            continue
        total += int(m[1]) / 1024 if m else 0.0
    return total


class PeakPss:
    """Samples, on a thread, the summed PSS of the process trees under `roots()` every
    `interval` seconds; `peak` is the largest sum seen (the trees' peak, to within the
    interval)."""

    def __init__(self, roots, interval: float = 0.2) -> None:
        self.roots, self.interval, self.peak = roots, interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        pids = [p for root in self.roots() for p in tree_pids(root)]
        self.peak = max(self.peak, pss_mib(pids))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> "PeakPss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def run(args: argparse.Namespace, batches, slots: int, name: str, cleanup=None) -> None:
    """Consumes `args.batches + 1` batches of the iterator, checking each and reading
    one byte of every 4 KiB page of its arrays (as a copy to a GPU would), then prints
    the peer's figures as one JSON line."""
    it = iter(batches)
    try:
        with PeakPss(lambda: [os.getpid()]) as memory:
            first = next(it)
            first_batch = time.perf_counter() - STARTED
            check(args.subset, first, args.batch, args.size, slots)
            if args.dump:
                np.savez(args.dump, **first)
            clock = time.perf_counter()
            for _ in range(args.batches):
                arrays = next(it)
                check(args.subset, arrays, args.batch, args.size, slots)
                for a in arrays.values():
                    np.ascontiguousarray(a).reshape(-1).view("u1")[::4096].sum()
            seconds = time.perf_counter() - clock
    finally:
        if cleanup is not None:
            cleanup()
    samples = args.batches * args.batch
    print(
        json.dumps(
            {
                "peer": name,
                "subset": args.subset,
                "size": args.size,
                "workers": args.workers,
                "samples": samples,
                "seconds": round(seconds, 4),
                "samples_per_s": round(samples / seconds, 2),
                "first_batch_s": round(first_batch, 4),
                "peak_pss_mib": round(memory.peak, 1),
            }
        ),
        flush=True,
    )


def prepared(args: argparse.Namespace, convert) -> bool:
    """With --prepare, runs `convert()` (which makes the peer's copy of the shards
    unless it is there, and returns how many shards it converted) and prints the
    seconds it took; true when the caller should stop there."""
    if not args.prepare:
        return False
    clock = time.perf_counter()
    converted = convert() or 0
    print(json.dumps({"prepare_seconds": round(time.perf_counter() - clock, 3), "converted": converted}), flush=True)
    return True
