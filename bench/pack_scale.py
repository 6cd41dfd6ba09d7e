#!/usr/bin/env python3
"""Pack throughput with 1 and 2 threads, as published and with --transcode-edits qoi.

Writes a Pico-Banana root of synthetic samples at Pico-Banana's sizes once
(`editfeed bench pico-root`), then packs it with each configuration in interleaved
rounds, a fresh output each time, and prints medians: rows/s, input MB/s (image bytes
read), output MB/s (shard bytes written), the daemon's peak RSS, and the 2-thread to
1-thread ratio per round (median). Every run of a configuration must write the same
dataset version; the script checks it.

    bench/pack_scale.py --bin target/release/editfeed [--rows 600] [--rounds 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run_pack(binary: str, root: Path, out: Path, flags: list[str]) -> tuple[float, int]:
    """Runs one pack; returns (wall seconds, peak RSS in bytes)."""
    cmd = [binary, "pack", "pico-banana", "--root", str(root / "pico"),
           "--source-dir", str(root / "sources"), "--out", str(out), "--overwrite", *flags]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    if status != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{err}")
    return wall, usage.ru_maxrss * 1024


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/editfeed")
    ap.add_argument("--rows", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", default="target/bench-pack")
    args = ap.parse_args()
    work = Path(args.work)
    root = work / f"root-{args.rows}"
    if not (root / "pico" / "sft.jsonl").exists():
        subprocess.run([args.bin, "bench", "pico-root", "--out", str(root), "--rows", str(args.rows)], check=True)
    images = tree_bytes(root / "pico" / "images") + tree_bytes(root / "sources")
    configs = {
        "published, 1 thread": ["--threads", "1"],
        "published, 2 threads": ["--threads", "2"],
        "qoi, 1 thread": ["--threads", "1", "--transcode-edits", "qoi"],
        "qoi, 2 threads": ["--threads", "2", "--transcode-edits", "qoi"],
        "qoi, 2 threads, 64MiB budget": ["--threads", "2", "--transcode-edits", "qoi", "--max-inflight-bytes", "64MiB"],
    }
    results: dict[str, list[tuple[float, int, int, str]]] = {k: [] for k in configs}
    for r in range(args.rounds):
        for name, flags in configs.items():
            out = work / "out"
            wall, rss = run_pack(args.bin, root, out, flags)
            manifest = json.loads((out / "manifest.json").read_text())
            results[name].append((wall, rss, tree_bytes(out), manifest["version"]))
            print(f"round {r + 1}: {name}: {wall:.2f} s, peak RSS {rss / 2**20:.0f} MiB", file=sys.stderr)
    for name, runs in results.items():
        versions = {v for *_, v in runs}
        if len(versions) != 1 or (name.startswith("qoi") and versions != {results["qoi, 1 thread"][0][3]}):
            sys.exit(f"{name}: the runs wrote different datasets: {versions}")
    print(f"\n{args.rows} rows ({images / 1e6:.0f} MB of images), {args.rounds} rounds, medians\n")
    print("| configuration | rows/s | input MB/s | output MB/s | peak RSS |")
    print("| --- | --- | --- | --- | --- |")
    for name, runs in results.items():
        wall = statistics.median(w for w, *_ in runs)
        rss = statistics.median(r for _, r, *_ in runs)
        out = runs[0][2]
        print(f"| {name} | {args.rows / wall:.1f} | {images / wall / 1e6:.1f} | {out / wall / 1e6:.1f} | {rss / 2**20:.0f} MiB |")
    for kind in ("published", "qoi"):
        ratios = [one[0] / two[0] for one, two in zip(results[f"{kind}, 1 thread"], results[f"{kind}, 2 threads"])]
        print(f"\n{kind}: 2 threads / 1 thread = {statistics.median(ratios):.2f}x (per-round: {', '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
