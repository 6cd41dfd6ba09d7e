"""Throughput of the Python client against `editfeed fetch` on the same daemon.

Runs the same single-turn stream (default 512 px, global batch 8, 20 batches) with the
command-line trainer and with ``editfeed.Client``, alternately, several times each, and
prints each run, both medians in batches/s and the ratio Python / fetch. Both time from
the request to the last batch, on an already open connection; the Python side builds
every batch's numpy views (add ``--hash`` to also make both hash every batch).

    python clients/python/bench_client.py --bin target/release/editfeed --data /tmp/bench-data

``--torch-workers 0,2`` also runs a PyTorch loop (``editfeed.torch.EditFeedDataset``
through ``DataLoader(batch_size=None, num_workers=N)`` for each N listed, a fresh
DataLoader per run, timed from its creation to the last batch) on the same stream.

Without ``--endpoint`` it starts a daemon of its own on the dataset at ``--data``, which it
first makes with ``editfeed synth --samples 40`` (Pico-Banana sizes) if absent.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This script sits beside the package's sources, which lack the stubs generated at build
# time: import the installed package rather than the source folder.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import editfeed  # noqa: E402

SFT_ONLY = "[[curriculum]]\nweights = { sft = 1.0 }\n"


def start_daemon(binary: str, data: Path | dict[str, Path], workers: int) -> tuple[subprocess.Popen, str]:
    """Starts `editfeed serve` on a free loopback port; returns it and its endpoint.

    ``data`` is one dataset folder (served as ``bench``) or datasets by name. The
    process's ``admin`` attribute is its Admin endpoint.
    """
    datasets = data if isinstance(data, dict) else {"bench": data}
    flags = [arg for name, path in datasets.items() for arg in ("--dataset", f"{name}={path}")]
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", *flags, "--workers", str(workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"editfeed serve did not start: {line!r}")
    admin = proc.stdout.readline()
    if not admin.startswith("admin listening on "):
        proc.kill()
        raise SystemExit(f"editfeed serve did not report its admin address: {admin!r}")
    proc.admin = "http://" + admin.split()[-1]  # type: ignore[attr-defined]
    # It listens before its datasets are loaded and says "ready" once it serves them.
    ready = proc.stdout.readline()
    if ready.strip() != "ready":
        proc.kill()
        raise SystemExit(f"editfeed serve did not become ready: {ready!r}")
    return proc, "http://" + line.split()[-1]


def run_fetch(binary: str, endpoint: str, dataset: str, args: argparse.Namespace, curriculum: Path) -> float:
    """One `editfeed fetch` run; batches/s from its own request-to-last-batch time."""
    cmd = [
        binary,
        "fetch",
        "--endpoint",
        endpoint,
        "--dataset",
        dataset,
        "--seed",
        str(args.seed),
        "--global-batch",
        str(args.global_batch),
        "--steps",
        str(args.batches),
        "--size",
        str(args.size),
        "--curriculum",
        str(curriculum),
    ]
    if args.hash:
        cmd.append("--hash")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    m = re.search(r"(\d+) batches, \d+ samples in ([0-9.]+) s", proc.stderr)
    if not m:
        raise SystemExit(f"cannot read fetch's report: {proc.stderr}")
    return int(m.group(1)) / float(m.group(2))


def run_python(client: editfeed.Client, dataset: str, args: argparse.Namespace, curriculum: Path) -> float:
    """One Python client run; batches/s from the request to the last batch."""
    started = time.perf_counter()
    n = 0
    for batch in client.stream(
        dataset,
        curriculum,
        seed=args.seed,
        global_batch=args.global_batch,
        size=args.size,
        max_batches=args.batches,
    ):
        assert batch["source"].shape == (args.global_batch, args.size, args.size, 3)
        if args.hash:
            batch.digest()
        n += 1
    return n / (time.perf_counter() - started)


def run_torch(endpoint: str, dataset: str, args: argparse.Namespace, curriculum: Path, workers: int) -> float:
    """One PyTorch DataLoader run with ``workers`` workers; batches/s from the loader's
    creation (workers start then) to the last batch."""
    from torch.utils.data import DataLoader

    from editfeed.torch import EditFeedDataset

    ds = EditFeedDataset(
        endpoint,
        dataset,
        curriculum,
        seed=args.seed,
        global_batch=args.global_batch,
        size=args.size,
        max_batches=args.batches,
        with_digest=args.hash,
    )
    started = time.perf_counter()
    n = 0
    for batch in DataLoader(ds, batch_size=None, num_workers=workers):
        assert tuple(batch["source"].shape) == (args.global_batch, args.size, args.size, 3)
        n += 1
    return n / (time.perf_counter() - started)


def main() -> None:
    """Runs the benchmark and prints the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", default="target/release/editfeed", help="the editfeed binary (a release build)")
    p.add_argument("--data", type=Path, default=Path("bench-data"), help="dataset folder (made if absent)")
    p.add_argument("--endpoint", help="use this running daemon instead of starting one")
    p.add_argument("--dataset", default="bench", help="dataset name on --endpoint")
    p.add_argument("--workers", type=int, default=0, help="daemon worker threads (0 = one per core)")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--global-batch", type=int, default=8)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hash", action="store_true", help="hash every batch on both sides")
    p.add_argument("--torch-workers", default="", help="also run DataLoader with these worker counts, e.g. 0,2")
    args = p.parse_args()

    proc = None
    endpoint, dataset = args.endpoint, args.dataset
    if endpoint is None:
        if not (args.data / "manifest.json").is_file():
            print(f"making the dataset in {args.data} (synth --samples 40)", file=sys.stderr)
            subprocess.run([args.bin, "synth", "--out", str(args.data), "--samples", "40"], check=True)
        proc, endpoint = start_daemon(args.bin, args.data, args.workers)
        dataset = "bench"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            curriculum = Path(tmp) / "sft.toml"
            curriculum.write_text(SFT_ONLY)
            client = editfeed.Client(endpoint)
            client.describe()  # open the connection outside the timed part, as fetch does
            fetch_rates, python_rates = [], []
            torch_workers = [int(w) for w in args.torch_workers.split(",") if w.strip()]
            torch_rates: dict[int, list[float]] = {w: [] for w in torch_workers}
            for round_ in range(args.rounds):
                fetch_rates.append(run_fetch(args.bin, endpoint, dataset, args, curriculum))
                python_rates.append(run_python(client, dataset, args, curriculum))
                for w in torch_workers:
                    torch_rates[w].append(run_torch(endpoint, dataset, args, curriculum, w))
                extra = "".join(f", torch/{w} workers {r[-1]:.2f}" for w, r in torch_rates.items())
                print(
                    f"round {round_ + 1}: fetch {fetch_rates[-1]:.2f} batches/s, "
                    f"python {python_rates[-1]:.2f} batches/s{extra}",
                    flush=True,
                )
            client.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
    f, py = statistics.median(fetch_rates), statistics.median(python_rates)
    mb = args.global_batch * args.size * args.size * 3 * 2 / 1e6
    print(f"{args.size} px, global batch {args.global_batch}, sft, {args.batches} batches ({mb:.1f} MB each)")
    print(f"fetch  median {f:.2f} batches/s")
    print(f"python median {py:.2f} batches/s")
    print(f"ratio python/fetch {py / f:.3f}")
    for w, rates in torch_rates.items():
        t = statistics.median(rates)
        print(f"torch DataLoader num_workers={w} median {t:.2f} batches/s, ratio to fetch {t / f:.3f}")


if __name__ == "__main__":
    main()
