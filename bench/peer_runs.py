"""The peer table of bench/run: editfeed beside tf.data service, DALI, torchvision and
SPDL, each run as its own consumer process (``bench/peers/*.py``, each in the virtual
environment bench/run made for it under ``target/bench-venv/<peer>``) on the same
samples, and editfeed through ``bench/peers/editfeed_stream.py`` (a fresh daemon and a
Python consumer), every one timed, checked and reported by ``bench/peers/common.py``.

A peer that cannot be installed or fails keeps its rows, as "could not run" with its
error.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = ROOT / "bench/peers"
sys.path.insert(0, str(PEERS_DIR))
import common  # noqa: E402  (bench/peers/common.py: the memory sampling every pipeline uses)
VENVS = ROOT / "target/bench-venv"
# The peers that read converted copies of the shards (made by --prepare).
CONVERTS = ("tfdata", "dali")
PEERS = {"tfdata": "tfdata.py", "dali": "dali.py", "torchvision": "torchvision_loader.py", "spdl": "spdl_pipeline.py"}
LABELS = {
    "editfeed": "editfeed (daemon + Python client)",
    "editfeed-best": "editfeed, best lossless pack",
    "tfdata": "tf.data service",
    "dali": "DALI, CPU",
    "torchvision": "torchvision DataLoader",
    "spdl": "SPDL",
}


def parse_peers(text: str) -> list[str]:
    names = [p for p in text.split(",") if p and p != "none"]
    unknown = [p for p in names if p not in PEERS]
    if unknown:
        raise SystemExit(f"--peers: unknown peer {', '.join(unknown)} (known: {', '.join(PEERS)})")
    return names


class Peers:
    """Runs the peers, keeps their figures per round and their errors."""

    def __init__(self, names: list[str], binary: str, cache: Path) -> None:
        self.names, self.binary, self.cache = names, binary, cache
        self.results: dict[str, list[float]] = {}
        self.errors: dict[str, str] = {}
        self.prepare_s: dict[str, dict[str, float]] = {}
        self.installs: dict[str, dict] = {}
        for name in names:
            error = VENVS / f"{name}.error"
            if error.is_file():
                self.errors[name] = "could not install: " + error.read_text().strip()
            elif not self.python(name).exists():
                self.errors[name] = f"could not install: no virtual environment at {VENVS / name} (bench/run makes it)"
            mark = VENVS / f"{name}.install.json"
            if mark.is_file():
                self.installs[name] = json.loads(mark.read_text())

    @staticmethod
    def python(name: str) -> Path:
        return VENVS / name / "bin/python"

    def command(self, name: str, data: Path, kind: str) -> list[str]:
        if name.startswith("editfeed"):
            # Trainer and daemon on one host: the tensors come through shared memory.
            return [sys.executable, str(PEERS_DIR / "editfeed_stream.py"), "--bin", self.binary, "--data", str(data), "--subset", kind, "--shm"]
        return [str(self.python(name)), str(PEERS_DIR / PEERS[name]), "--data", str(data), "--subset", kind, "--cache", str(self.cache / data.name)]

    def call(self, cmd: list[str]) -> dict:
        p = subprocess.run(cmd, capture_output=True, text=True)
        lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
        if p.returncode != 0 or not lines:
            tail = [line for line in p.stderr.strip().splitlines() if line.strip()][-3:]
            raise RuntimeError(f"exit status {p.returncode}: " + " / ".join(tail))
        return json.loads(lines[-1])

    def prepare(self, data: Path, kinds: list[str]) -> None:
        """Each peer's copy of the shards (TFRecord, plain tar), once, timed apart."""
        for name in self.names:
            for kind in kinds:
                if name in self.errors or name not in CONVERTS:
                    break
                try:
                    r = self.call([*self.command(name, data, kind), "--prepare"])
                    # None: the copies were made by an earlier run.
                    self.prepare_s.setdefault(name, {})[kind] = r["prepare_seconds"] if r["converted"] else None
                except RuntimeError as e:
                    self.errors[name] = str(e)

    def measure(self, data: Path, kind: str, size: int, batches: int, best: Path | None = None, turn: int = 0) -> str:
        """One run of editfeed (on the published shards, and on its best pack at `best`)
        and of every peer at this kind and size, in an order rotated by `turn` so that
        no pipeline always runs first or last in a round; returns a log line."""
        key = f"{kind}/{size}"
        said = []
        order = ["editfeed", *(["editfeed-best"] if best else []), *self.names]
        turn %= len(order)
        for name in order[turn:] + order[:turn]:
            if name in self.errors or f"{name}/{key}" in self.errors:
                continue
            where = best if name == "editfeed-best" else data
            try:
                r = self.call([*self.command(name, where, kind), "--size", str(size), "--batches", str(batches)])
            except RuntimeError as e:
                self.errors[f"{name}/{key}"] = str(e)
                said.append(f"{name} failed")
                continue
            for field in ("samples_per_s", "peak_pss_mib", "first_batch_s"):
                self.results.setdefault(f"{field}:{name}/{key}", []).append(r[field])
            said.append(f"{name} {r['samples_per_s']:.1f}")
        return ", ".join(said) + " samples/s"

    def many(self, name: str, data: Path, copies: int, batches: int, extra: list[str] | None = None, also: list[int] | None = None) -> float:
        """The peak memory (MiB, summed PSS of every process, sampled) of `copies`
        concurrent runs of a pipeline (512 px sft, `batches` batches each, seeds
        0..copies-1), with the processes `also` (editfeed's daemon): `copies` trainer
        ranks on one host, each with a loader of its own (or, for editfeed with `extra`
        naming a daemon, each a consumer of one daemon)."""
        procs = [
            subprocess.Popen(
                [*self.command(name, data, "sft"), "--size", "512", "--batches", str(batches), "--seed", str(i), *(extra or [])],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(copies)
        ]
        with common.PeakPss(lambda: [p.pid for p in procs if p.poll() is None] + (also or [])) as memory:
            for p in procs:
                out, err = p.communicate()
                lines = [line for line in out.splitlines() if line.startswith("{")]
                if p.returncode != 0 or not lines:
                    raise RuntimeError(f"exit status {p.returncode}: " + " / ".join(err.strip().splitlines()[-3:]))
        return memory.peak

    def saved(self) -> dict:
        return {"names": self.names, "results": self.results, "errors": self.errors, "prepare_s": self.prepare_s, "installs": self.installs}


def print_table(saved: dict, kinds: list[str], sizes: list[int]) -> None:
    results, errors = saved["results"], saved["errors"]

    def med(field: str, name: str, key: str) -> float | None:
        xs = results.get(f"{field}:{name}/{key}")
        return statistics.median(xs) if xs else None

    def ratio(name: str, key: str, ours: str = "editfeed") -> float | None:
        a, b = results.get(f"samples_per_s:{ours}/{key}"), results.get(f"samples_per_s:{name}/{key}")
        if not a or not b:
            return None
        return statistics.median([x / y for x, y in zip(a, b)])

    print("\nPeers: every pipeline a consumer process of its own over the same samples; samples/s from the first batch on; "
          "first batch from the consumer's start (servers and workers started by it); peak memory: the summed PSS of its process tree, sampled every 0.2 s")
    print("\n| kind | px | pipeline | samples/s | editfeed / it | editfeed best pack / it | peak memory, PSS (MiB) | first batch (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind in kinds:
        for size in sizes:
            key = f"{kind}/{size}"
            for name in ["editfeed", "editfeed-best", *saved["names"]]:
                sps = med("samples_per_s", name, key)
                if sps is None:
                    if name == "editfeed-best":
                        continue
                    why = errors.get(name) or errors.get(f"{name}/{key}") or "not measured"
                    print(f"| {kind} | {size} | {LABELS[name]} | could not run ({why.split(':')[0].replace('|', '/')}) | | | | |")
                    continue
                cells = []
                for ours in ("editfeed", "editfeed-best"):
                    r = None if name.startswith("editfeed") else ratio(name, key, ours)
                    cells.append("" if r is None else f"**{r:.2f}x**")
                print(f"| {kind} | {size} | {LABELS[name]} | {sps:.1f} | {cells[0]} | {cells[1]} | {med('peak_pss_mib', name, key):.0f} | {med('first_batch_s', name, key):.2f} |")
    shown = {}
    for where, why in errors.items():
        shown.setdefault(why, []).append(where)
    for why, where in shown.items():
        print(f"\ncould not run ({', '.join(sorted(set(where)))}): {why}")
    for name, secs in saved["prepare_s"].items():
        took = ", ".join(f"{k} {v:.1f} s" if v is not None else f"{k} made by an earlier run" for k, v in secs.items())
        print(f"\n{LABELS[name]}: converting the shards ({'TFRecord' if name == 'tfdata' else 'plain tar'}), not counted: {took}")
    for name, inst in saved["installs"].items():
        if errors.get(name, "").startswith("could not install"):
            continue
        print(f"{LABELS[name]}: installed in {inst['seconds']:.0f} s, {inst['mib']:.0f} MiB on disk ({inst['requirements']})")


def print_many(many: dict[str, float | str]) -> None:
    """Total peak RSS of 16 streams of 512 px sft on one host, each pipeline."""
    print("\n16 streams of 512 px sft on one host (16 consumer processes; for editfeed, with its one daemon), peak of their summed PSS:\n")
    print("| pipeline | peak memory, PSS (MiB) |")
    print("| --- | --- |")
    for name, value in many.items():
        cell = f"{value:.0f}" if isinstance(value, float) else value
        print(f"| {LABELS.get(name, name)} | {cell} |")


def print_memory(saved: dict, mem: dict) -> None:
    """The daemon serving 16 streams against one stream of each peer, 512 px sft."""
    rss = {}
    for name in saved["names"]:
        xs = saved["results"].get(f"peak_pss_mib:{name}/sft/512")
        if xs:
            rss[LABELS[name]] = statistics.median(xs)
    ours = f"{mem['16'][0]:.0f} MiB" + (f" ({mem['16 shm'][0]:.0f} MiB through shared memory)" if "16 shm" in mem else "")
    theirs = ", ".join(f"{k} {v:.0f} MiB" for k, v in sorted(rss.items(), key=lambda kv: kv[1]))
    print(f"\nMemory, 512 px sft: editfeed's daemon serving 16 streams peaks at an RSS of {ours}; one stream of each peer, the PSS of its whole process tree: {theirs or 'none measured'}")
