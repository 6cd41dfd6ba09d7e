"""The daemon's peak RSS under the adversarial mix: large batches times many streams.

Each row is a fresh daemon (``editfeed serve``, one worker per core) with a memory
budget (``max_inflight_bytes``; "off" is 64 GiB, more than the machine has) serving
``--streams`` concurrent ``editfeed fetch --global-batch 4096 --size 64`` streams of the
default mixed spec (sft, preference and multi-turn batches of 4096 samples, 96 to
288 MiB of tensors each), over a synthetic dataset with small images (``synth --scale
0.125``) so that the workers produce such batches quickly. Reported: the daemon's peak
and final RSS (VmHWM, VmRSS), the budget's peak charge and waits (``admin stats``),
the streams' samples/s and the wall time. Rounds are interleaved; medians.

    .venv/bin/python bench/memory_budget.py --bin target/release/editfeed
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from run import load_bench_client, rss_mib  # noqa: E402

OFF = 64 << 30
STATS = re.compile(r"memory: (\d+) of max_inflight_bytes (\d+) in flight, peak (\d+), (\d+) waits")


def parse_bytes(text: str) -> int:
    if text == "off":
        return OFF
    units = {"GiB": 1 << 30, "MiB": 1 << 20}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def one(bc, binary: str, data: Path, budget: int, streams: int, steps: int, batch: int, size: int) -> dict:
    os.environ["EDITFEED_MAX_INFLIGHT_BYTES"] = str(budget)
    proc, endpoint = bc.start_daemon(binary, {"bench": data}, 0)
    try:
        started = time.monotonic()
        runs = [
            subprocess.Popen(
                [binary, "fetch", "--endpoint", endpoint, "--dataset", "bench", "--global-batch", str(batch),
                 "--size", str(size), "--steps", str(steps), "--seed", str(i)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(streams)
        ]
        for r in runs:
            _, err = r.communicate()
            if r.returncode != 0:
                raise SystemExit(f"a fetch failed: {err.strip()}")
        wall = time.monotonic() - started
        peak, now = rss_mib(proc.pid)
        out = subprocess.run([binary, "admin", "--endpoint", proc.admin, "stats"], capture_output=True, text=True, check=True).stdout
        m = STATS.search(out)
        if not m:
            raise SystemExit(f"cannot read admin stats: {out}")
        return {
            "peak_mib": peak,
            "after_mib": now,
            "charged_peak_mib": int(m[3]) / (1 << 20),
            "waits": int(m[4]),
            "samples_per_s": streams * steps * batch / wall,
            "wall_s": wall,
        }
    finally:
        del os.environ["EDITFEED_MAX_INFLIGHT_BYTES"]
        proc.terminate()
        proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", default=str(ROOT / "target/release/editfeed"))
    p.add_argument("--data", type=Path, default=ROOT / "target/bench-data/adversarial")
    p.add_argument("--budgets", default="off,2GiB,1GiB", help="max_inflight_bytes values; off is 64 GiB")
    p.add_argument("--streams", default="1,4,8")
    p.add_argument("--steps", type=int, default=4, help="batches per stream")
    p.add_argument("--global-batch", type=int, default=4096)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    if not (args.data / "manifest.json").is_file():
        subprocess.run([args.bin, "synth", "--out", str(args.data), "--samples", "2000", "--scale", "0.125", "--overwrite"],
                       check=True, stdout=subprocess.DEVNULL)
    bc = load_bench_client()
    budgets = args.budgets.split(",")
    counts = [int(s) for s in args.streams.split(",")]
    results: dict[tuple[str, int], list[dict]] = {}
    for r in range(args.rounds):
        for streams in counts:
            for b in budgets:
                res = one(bc, args.bin, args.data, parse_bytes(b), streams, args.steps, args.global_batch, args.size)
                print(f"round {r + 1}: {streams} streams, budget {b}: {res}", file=sys.stderr, flush=True)
                results.setdefault((b, streams), []).append(res)
    med = lambda rows, k: statistics.median(x[k] for x in rows)  # noqa: E731
    print(f"\n{args.rounds} rounds, medians; fetch --global-batch {args.global_batch} --size {args.size} --steps {args.steps}, {os.cpu_count()} cores\n")
    print("| streams | max_inflight_bytes | daemon peak RSS | RSS after | peak charged | waits | samples/s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for streams in counts:
        for b in budgets:
            rows = results[(b, streams)]
            print(f"| {streams} | {b} | {med(rows, 'peak_mib'):.0f} MiB | {med(rows, 'after_mib'):.0f} MiB | "
                  f"{med(rows, 'charged_peak_mib'):.0f} MiB | {med(rows, 'waits'):.0f} | {med(rows, 'samples_per_s'):.0f} |")


if __name__ == "__main__":
    main()
