"""editfeed against the Python reference pipeline, side by side in one run.

Run through ``bench/run`` (which builds the release binary and the virtual environment
first). Everything is measured on the same machine in one run, in interleaved rounds,
and reported as medians and ratios:

- the datasets: ``editfeed synth`` at Pico-Banana's sizes (JPEG sources of about
  1024x768, PNG edits of about 1 MP, photo-like content) written with the default
  options, and the same samples in editfeed's best lossless pack: ``pack webdataset
  --transcode-edits ppm --level -100`` (edits as the raw RGB pixels the daemon serves,
  which its workers read in place; frames stored nearly raw);
- the floor: ``editfeed bench floor``, decode + crop + resize alone, in process, on one
  thread and on all cores;
- through one daemon (``editfeed serve``, one worker per core): end to end into
  ``editfeed fetch``, end to end into the Python client (``editfeed.Client``, numpy
  arrays built for every batch), and transport alone (``fetch --encoded``);
- the Python reference (``bench/python_reference.py``): webdataset + Pillow + numpy, one
  worker process per core;
- single-turn, preference and multi-turn at 256 and 512 px;
- the daemon's peak RSS with 1 and with 16 concurrent streams, and with 16 that take
  their tensors through shared memory;
- the time to the first batch on a 400K-sample manifest, at step 0 and resumed at step
  10^6;
- the peers (``bench/peer_runs.py``, ``--peers``): tf.data service, DALI on CPU,
  torchvision's DataLoader and SPDL beside editfeed, each a consumer process of its own,
  samples/s, editfeed's ratio to each, peak RSS and time to the first batch.

Throughputs are steady-state rates: the clock starts at the first batch of each run, so
process start-up and the pipeline's warm-up are not counted for anyone.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import editfeed  # noqa: E402  (the installed client package, with its generated stubs)
import peer_runs  # noqa: E402  (bench/peer_runs.py)


def load_bench_client():
    """clients/python/bench_client.py, for its daemon start-up."""
    spec = importlib.util.spec_from_file_location("bench_client", ROOT / "clients/python/bench_client.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


KINDS = ("sft", "preference", "multi_turn")
# Timed batches (after the first) per run, by kind: the slower kinds get fewer.
BATCHES = {"sft": 16, "preference": 10, "multi_turn": 6}
SLOTS = {"sft": 2, "preference": 3}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, **kw)


def curriculum(tmp: Path, kind: str) -> Path:
    path = tmp / f"{kind}.toml"
    path.write_text(f"[[curriculum]]\nweights = {{ {kind} = 1.0 }}\n")
    return path


# editfeed's best lossless pack option: edits stored as the raw RGB pixels the daemon
# serves (PPM, read in place by the resizer), frames at a zstd fast level that finds
# almost no matches in raw pixels, so that they decode at memory speed.
BEST_PACK = ["--transcode-edits", "ppm", "--level", "-100"]
# Bumped when the writer's defaults change, so that cached datasets are rewritten.
WRITER = "literals-off-min-match-6"


def made(out: Path, recipe: list, log_line: str, cmd: list) -> bool:
    """Runs `cmd` to make the dataset `out` unless it was made by the same recipe; true
    when it ran. The recipe is kept in `out/recipe.json`."""
    want = json.dumps([WRITER, *map(str, recipe)])
    mark = out / "recipe.json"
    if (out / "manifest.json").is_file() and mark.is_file() and mark.read_text() == want:
        return False
    log(log_line)
    sh(cmd)
    mark.write_text(want)
    return True


def make_datasets(binary: str, data: Path, samples: int, published_only: bool = False) -> dict[str, Path]:
    """The published-format dataset and its best packs, made once per sample count."""
    pub = data / f"published-{samples}"
    per_shard = max(4, samples // 10)
    fresh = made(pub, [samples, per_shard], f"writing {samples} synthetic samples at Pico-Banana's sizes to {pub}",
                 [binary, "synth", "--out", pub, "--samples", samples, "--shard-samples", per_shard, "--overwrite"])
    out = {"published": pub}
    if published_only:
        return out
    for kind in KINDS:
        best = data / f"best-{samples}-{kind}"
        manifest = json.loads((pub / "manifest.json").read_text())
        shards = [pub / sh["path"] for sh in manifest["subsets"][kind]["shards"]]
        if fresh:
            (best / "recipe.json").unlink(missing_ok=True)
        made(best, [kind, *BEST_PACK], f"packing the {kind} shards with {' '.join(BEST_PACK)} into {best}",
             [binary, "pack", "webdataset", *shards, "--subset", kind, "--out", best, *BEST_PACK, "--shard-samples", per_shard, "--overwrite"])
        out[f"best-{kind}"] = best
    big = data / f"replicated-{samples}"
    if fresh:
        (big / "recipe.json").unlink(missing_ok=True)
    made(big, [400_000], f"writing a 400K-sample manifest over hard links into {big}",
         [binary, "bench", "replicate", "--data", pub, "--out", big, "--samples", 400_000])
    out["large"] = big
    return out


FETCH_REPORT = re.compile(
    r"(\d+) batches, (\d+) samples in ([0-9.]+) s: [0-9.]+ samples/s, ([0-9.]+) MB/s; first batch after ([0-9.]+) s"
)


def fetch(binary: str, endpoint: str, dataset: str, kind: str, size: int, batches: int, cur: Path, *extra: str) -> dict:
    """One `editfeed fetch` run; steady-state rates from its own report."""
    p = sh([binary, "fetch", "--endpoint", endpoint, "--dataset", dataset, "--curriculum", cur, "--size", size, "--steps", batches + 1, *extra])
    m = FETCH_REPORT.search(p.stderr)
    if not m:
        raise SystemExit(f"cannot read fetch's report: {p.stderr}")
    n, samples, secs, mbs, first = int(m[1]), int(m[2]), float(m[3]), float(m[4]), float(m[5])
    steady = max(secs - first, 1e-9)
    per_batch = samples / n
    return {
        "samples_per_s": (samples - per_batch) / steady,
        # fetch's MB/s is over its whole run; the batches after the first, over theirs.
        "mb_per_s": mbs * secs * (n - 1) / n / steady,
        "first_batch_s": first,
        "stdout": p.stdout,
    }


def python_client(client: editfeed.Client, dataset: str, kind: str, size: int, batches: int, cur: Path) -> float:
    """One Python client run: samples/s from the first batch to the last, every batch's
    arrays built and checked, and one byte of every 4 KiB page of them read (so that
    arrays mapped from shared memory are paged in, as a trainer's copy to its GPU
    would)."""
    n = 0
    clock = None
    for batch in client.stream(dataset, cur, seed=0, size=size, global_batch=8, max_batches=batches + 1):
        arrays = batch.tensors
        first = arrays["images" if kind == "multi_turn" else "source"]
        assert first.shape[0] == 8 and first.shape[-3:] == (size, size, 3), first.shape
        for array in arrays.values():
            array.reshape(-1).view("u1")[::4096].sum()
        if clock is None:
            clock = time.perf_counter()
        else:
            n += len(batch)
    return n / (time.perf_counter() - clock)


def reference(python: str, data: Path, kind: str, size: int, batches: int) -> float:
    p = sh([python, ROOT / "bench/python_reference.py", "--data", data, "--subset", kind, "--size", size, "--batches", batches])
    return json.loads(p.stdout.splitlines()[-1])["samples_per_s"]


def floor(binary: str, data: Path, kind: str, size: int, threads: int, samples: int) -> float:
    p = sh([binary, "bench", "floor", "--data", data, "--subset", kind, "--size", size, "--threads", threads, "--samples", samples])
    return json.loads(p.stdout)["samples_per_s"]


def rss_mib(pid: int) -> tuple[float, float]:
    """(peak, current) resident set of a process, in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    get = lambda key: int(re.search(rf"^{key}:\s+(\d+) kB", status, re.M)[1]) / 1024  # noqa: E731
    return get("VmHWM"), get("VmRSS")


def memory(bc, binary: str, pub: Path, cur: Path, streams: int, batches: int, shm: bool = False) -> tuple[float, float]:
    """Peak RSS of a fresh daemon serving `streams` concurrent 512 px sft streams.

    With `shm`, the streams take their tensors as files of /dev/shm, which the daemon
    keeps mapped (they count in its RSS, up to its `shm_max_bytes`).
    """
    proc, endpoint = bc.start_daemon(binary, {"bench": pub}, 0)
    shm_args = ["--shm-dir", "/dev/shm"] if shm else []
    try:
        runs = [
            subprocess.Popen(
                [binary, "fetch", "--endpoint", endpoint, "--dataset", "bench", "--curriculum", str(cur), "--size", "512", "--steps", str(batches), "--seed", str(i), *shm_args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i in range(streams)
        ]
        for r in runs:
            if r.wait() != 0:
                raise SystemExit("a fetch of the memory measurement failed")
        return rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait()


# Peers whose 16 copies fit in this machine's memory (one tf.data service copy, with its
# server, or one torchvision DataLoader, with its workers, takes over a GiB).
MANY_PEERS = ("spdl", "dali")


def sixteen_streams(bc, binary: str, pub: Path, peers) -> dict[str, float | str]:
    """The total peak RSS of 16 streams of 512 px sft: one editfeed daemon (shared memory)
    and 16 consumers, against 16 copies of each peer in MANY_PEERS."""
    os.environ["EDITFEED_SHM_DIR"] = "/dev/shm"
    try:
        proc, endpoint = bc.start_daemon(binary, {"bench": pub}, 0)
    finally:
        del os.environ["EDITFEED_SHM_DIR"]
    try:
        total = peers.many("editfeed", pub, 16, 6, ["--endpoint", endpoint], also=[proc.pid])
        daemon = rss_mib(proc.pid)[0]
    finally:
        proc.terminate()
        proc.wait()
    out: dict[str, float | str] = {"editfeed": total, "editfeed daemon alone (peak RSS)": daemon}
    for name in peers.names:
        if name not in MANY_PEERS:
            out[name] = "not run 16 times: one copy takes over a GiB (see its one-stream figure)"
            continue
        try:
            out[name] = peers.many(name, pub, 16, 4)
        except RuntimeError as e:
            out[name] = f"could not run ({e})"
    return out


# A filtered single-turn stream: two categories out, a bound on instruction length.
FILTERED = '[[curriculum]]\nweights = { sft = 1.0 }\n[select]\nexclude_categories = ["stylistic", "text_symbol"]\nmax_instruction_words = 40\n'


def start_times(binary: str, endpoint: str, cur: Path, rounds: int) -> dict:
    """Time to the first batch on the 400K-sample manifest, at step 0, at 10^6, and at
    step 0 of a filtered stream (the selection is applied to all 400K records)."""
    at0, resumed, filtered = [], [], []
    filtered_cur = cur.with_name("filtered.toml")
    filtered_cur.write_text(FILTERED)
    for i in range(rounds):
        # A new seed each time, so no batch was prepared before.
        seed = ["--seed", str(100 + i), "--hash"]
        r = fetch(binary, endpoint, "large", "sft", 256, 0, cur, *seed)
        at0.append(r["first_batch_s"])
        tag, _step, spec, ds = r["stdout"].split()[-1].split(":")
        far = f"{tag}:1000000:{spec}:{ds}"
        r = fetch(binary, endpoint, "large", "sft", 256, 0, cur, *seed, "--cursor", far)
        resumed.append(r["first_batch_s"])
        filtered.append(fetch(binary, endpoint, "large", "sft", 256, 0, filtered_cur, *seed)["first_batch_s"])
    return {
        "step0": statistics.median(at0),
        "step1e6": statistics.median(resumed),
        "filtered": statistics.median(filtered),
        "all0": at0,
        "all1e6": resumed,
        "all_filtered": filtered,
    }


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", default=str(ROOT / "target/release/editfeed"))
    p.add_argument("--data", type=Path, default=ROOT / "target/bench-data/reference")
    p.add_argument("--samples", type=int, default=120, help="synthetic samples (60% sft, 20% each other kind)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sizes", default="256,512")
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--quick", action="store_true", help="one round, half the batches, no 16-stream memory run")
    p.add_argument("--peers", default=",".join(peer_runs.PEERS), help="the peers to run beside editfeed, comma-separated, or none")
    p.add_argument("--peers-only", action="store_true", help="only the peer table (editfeed through its Python client and the peers)")
    p.add_argument("--json", type=Path, help="also write every measurement here")
    p.add_argument("--report", type=Path, help="only print the tables of a run saved with --json")
    args = p.parse_args()
    if args.report:
        saved = json.loads(args.report.read_text())
        # Runs saved before the best pack was named kept it under "qoi" (QOI edits, level -1).
        results = {re.sub(r"-qoi/", "-best/", k): v for k, v in saved.get("results", {}).items()}
        best_pack = saved.get("best_pack", ["--transcode-edits", "qoi", "--level", "-1"])
        if saved.get("start"):
            print_tables(results, saved["kinds"], saved["sizes"], saved["cores"], saved["start"], saved["memory"], saved["samples"], saved["rounds"], best_pack)
        if saved.get("peers"):
            peer_runs.print_table(saved["peers"], saved["kinds"], saved["sizes"])
        return
    if args.quick:
        args.rounds = 1
        for k in BATCHES:
            BATCHES[k] = max(3, BATCHES[k] // 2)
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = args.kinds.split(",")
    cores = os.cpu_count() or 1
    python = sys.executable
    bc = load_bench_client()
    ds = make_datasets(args.bin, args.data, args.samples)
    pub = ds["published"]
    results: dict[str, list[float]] = {}
    peers = peer_runs.Peers(peer_runs.parse_peers(args.peers), args.bin, args.data / "peers")
    peers.prepare(pub, kinds)
    if args.peers_only:
        for r in range(args.rounds):
            log(f"round {r + 1} of {args.rounds}")
            for kind in kinds:
                for size in sizes:
                    log(f"  {kind}/{size}: {peers.measure(pub, kind, size, BATCHES[kind], ds[f'best-{kind}'], r)}")
        peer_runs.print_table(peers.saved(), kinds, sizes)
        if args.json:
            args.json.write_text(json.dumps({"peers": peers.saved(), "kinds": kinds, "sizes": sizes, "cores": cores, "samples": args.samples, "rounds": args.rounds}, indent=1))
        return

    def add(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        curs = {k: curriculum(tmp, k) for k in KINDS}
        daemons = {"bench": pub, "large": ds["large"], **{f"best-{k}": ds[f"best-{k}"] for k in KINDS}}
        proc, endpoint = bc.start_daemon(args.bin, daemons, 0)
        client = editfeed.Client(endpoint)
        client.describe()
        try:
            for r in range(args.rounds):
                log(f"round {r + 1} of {args.rounds}")
                for kind in kinds:
                    for size in sizes:
                        n = BATCHES[kind]
                        key = f"{kind}/{size}"
                        best = f"best-{kind}"
                        add(f"floor1/{key}", floor(args.bin, pub, kind, size, 1, 8 * n // 2))
                        add(f"floorN/{key}", floor(args.bin, pub, kind, size, cores, 8 * n))
                        add(f"floorN-best/{key}", floor(args.bin, ds[best], kind, size, cores, 8 * n))
                        add(f"fetch/{key}", fetch(args.bin, endpoint, "bench", kind, size, n, curs[kind])["samples_per_s"])
                        add(f"python/{key}", python_client(client, "bench", kind, size, n, curs[kind]))
                        add(f"fetch-best/{key}", fetch(args.bin, endpoint, best, kind, size, n, curs[kind])["samples_per_s"])
                        add(f"python-best/{key}", python_client(client, best, kind, size, n, curs[kind]))
                        add(f"reference/{key}", reference(python, pub, kind, size, n))
                        log(
                            f"  {key}: floor {results[f'floorN/{key}'][-1]:.1f}, fetch {results[f'fetch/{key}'][-1]:.1f}, "
                            f"python {results[f'python/{key}'][-1]:.1f}, python best pack {results[f'python-best/{key}'][-1]:.1f}, "
                            f"reference {results[f'reference/{key}'][-1]:.1f} samples/s"
                        )
                        if peers.names:
                            log(f"  {key} peers: {peers.measure(pub, kind, size, n, ds[best], r)}")
                # Transport: the stored bytes passed through, global batch 32.
                t = fetch(args.bin, endpoint, "bench", "sft", 256, 20, curs["sft"], "--encoded", "--global-batch", "32")
                add("transport/MBps", t["mb_per_s"])
                add("transport/samples", t["samples_per_s"])
                log(f"  transport: {t['mb_per_s']:.0f} MB/s")
            start = start_times(args.bin, endpoint, curs["sft"], max(3, args.rounds))
        finally:
            client.close()
            proc.terminate()
            proc.wait()
        mem = {"1": memory(bc, args.bin, pub, curs["sft"], 1, 12)}
        many: dict[str, float | str] = {}
        if not args.quick:
            mem["16"] = memory(bc, args.bin, pub, curs["sft"], 16, 12)
            mem["16 shm"] = memory(bc, args.bin, pub, curs["sft"], 16, 12, shm=True)
            if peers.names:
                many = sixteen_streams(bc, args.bin, pub, peers)

    print_tables(results, kinds, sizes, cores, start, mem, args.samples, args.rounds, BEST_PACK)
    if peers.names:
        peer_runs.print_table(peers.saved(), kinds, sizes)
        if "16" in mem and "sft" in kinds and 512 in sizes:
            peer_runs.print_memory(peers.saved(), mem)
        if many:
            peer_runs.print_many(many)
    if args.json:
        saved = {"results": results, "start": start, "memory": mem, "kinds": kinds, "sizes": sizes, "cores": cores, "samples": args.samples, "rounds": args.rounds, "best_pack": BEST_PACK, "peers": peers.saved()}
        args.json.write_text(json.dumps(saved, indent=1))


def print_tables(results, kinds, sizes, cores, start, mem, samples, rounds, best_pack) -> None:
    m = {k: median(v) for k, v in results.items()}

    def ratio(a: str, b: str) -> float:
        """The median over rounds of a / b, each pair measured minutes apart at most."""
        return median([x / y for x, y in zip(results[a], results[b])])

    print(f"\n{samples} synthetic samples, global batch 8, {cores} cores, {rounds} rounds; medians in samples/s; ratios are medians of per-round ratios\n")
    print(f"best pack: the same samples packed with {' '.join(best_pack)}; the reference reads the published shards in every row\n")
    print("| kind | px | floor 1 core | floor all cores | fetch | Python client | Python reference | client / reference | client / floor | fetch, best pack | client, best pack | best pack client / reference | best pack client / its floor |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind in kinds:
        for size in sizes:
            k = f"{kind}/{size}"
            print(
                f"| {kind} | {size} | {m[f'floor1/{k}']:.1f} | {m[f'floorN/{k}']:.1f} | {m[f'fetch/{k}']:.1f} | {m[f'python/{k}']:.1f} | "
                f"{m[f'reference/{k}']:.1f} | **{ratio(f'python/{k}', f'reference/{k}'):.2f}x** | {ratio(f'python/{k}', f'floorN/{k}'):.0%} | "
                f"{m[f'fetch-best/{k}']:.1f} | {m[f'python-best/{k}']:.1f} | **{ratio(f'python-best/{k}', f'reference/{k}'):.2f}x** | "
                f"{ratio(f'python-best/{k}', f'floorN-best/{k}'):.0%} |"
            )
    print(f"\ntransport (fetch --encoded, sft, global batch 32): {m['transport/MBps']:.0f} MB/s ({m['transport/samples']:.0f} samples/s)")
    print(
        f"first batch on a 400K-sample manifest: {start['step0'] * 1000:.0f} ms at step 0, {start['step1e6'] * 1000:.0f} ms resumed at step 10^6, "
        f"{start.get('filtered', float('nan')) * 1000:.0f} ms for a filtered stream "
        f"(medians of {len(start['all0'])})"
    )
    for streams, (peak, now) in mem.items():
        count, _, shm = streams.partition(" ")
        how = " through shared memory" if shm else ""
        print(f"daemon RSS with {count} stream(s) of 512 px sft{how}: peak {peak:.0f} MiB, after {now:.0f} MiB")


if __name__ == "__main__":
    main()
