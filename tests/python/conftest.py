"""Fixtures for the Python client tests: the editfeed binary, a small synthetic dataset
and real daemons started as subprocesses on loopback.

The binary comes from ``$EDITFEED_BIN`` (default ``target/debug/editfeed`` under the
repository root). Daemons listen on ``127.0.0.1:0`` and report the port the kernel gave
them (``listening on ADDR`` on stdout), so parallel runs never race for a port.
Daemons and clients share a shared-memory folder of the session's own
(``$EDITFEED_SHM_DIR``, on /dev/shm when there is one), removed at the end, so that a
daemon a test kills leaves no files behind.
"""

from __future__ import annotations

import gc
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASET = "demo"
SPLIT_RULE = "seed=0,train=0.6,val=0.2,test=0.2"
"""The fixture dataset's splits (``editfeed synth --split-rule``)."""


def editfeed_bin() -> Path:
    """The editfeed binary under test."""
    path = Path(os.environ.get("EDITFEED_BIN", "target/debug/editfeed"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_file():
        raise RuntimeError(f"editfeed binary not found at {path}: run `cargo build --bins` or set EDITFEED_BIN")
    return path


def quiet_grpc(timeout: float = 5.0) -> None:
    """Lets this process's finished gRPC calls wind down before it forks (a DataLoader
    with fork workers): gRPC cannot fork while its threads are in the core ("Other
    threads are currently calling into gRPC, skipping fork() handlers"), and the forked
    worker may then abort. Collects garbage streams first (a test that raised mid-stream
    leaves one in a reference cycle), then waits, at most ``timeout`` seconds, until no
    gRPC-managed thread is left."""
    gc.collect()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(t.name.endswith("(_run)") for t in threading.enumerate()):
        time.sleep(0.01)


def run_editfeed(*args: str, timeout: float = 120) -> str:
    """Runs the binary with ``args`` and returns its stdout; fails with its stderr."""
    proc = subprocess.run([str(editfeed_bin()), *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"editfeed {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc.stdout


class Daemon:
    """An ``editfeed serve`` subprocess on a free loopback port."""

    def __init__(self, dataset_dir: Path, name: str = DATASET, workers: int = 2, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [
                str(editfeed_bin()),
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--dataset",
                f"{name}={dataset_dir}",
                "--workers",
                str(workers),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()

        def read() -> None:
            """Forwards stdout lines to the queue."""
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.put(line)
            lines.put("")

        threading.Thread(target=read, daemon=True).start()
        try:
            line = lines.get(timeout=30)
        except queue.Empty:
            self.kill()
            raise RuntimeError("editfeed serve did not report its address within 30 s") from None
        if not line.startswith("listening on "):
            self.kill()
            raise RuntimeError(f"editfeed serve did not start (first line {line!r}, exit {self.proc.poll()})")
        self.address = line.split()[-1]
        self.endpoint = f"http://{self.address}"
        try:
            admin = lines.get(timeout=30)
        except queue.Empty:
            admin = ""
        if not admin.startswith("admin listening on "):
            self.kill()
            raise RuntimeError(f"editfeed serve did not report its admin address (got {admin!r})")
        self.admin_endpoint = "http://" + admin.split()[-1]
        # The daemon listens before its datasets are loaded (health NOT_SERVING) and
        # prints "ready" once it serves them.
        try:
            ready = lines.get(timeout=30)
        except queue.Empty:
            ready = ""
        if ready.strip() != "ready":
            self.kill()
            raise RuntimeError(f"editfeed serve did not become ready (got {ready!r}, exit {self.proc.poll()})")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Sends ``sig`` (default SIGKILL) and waits for the process to exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Stops the daemon (SIGTERM, then SIGKILL if it does not exit)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session", autouse=True)
def shm_dir() -> Iterator[str]:
    """The session's shared-memory folder, in ``$EDITFEED_SHM_DIR`` for daemons and
    clients."""
    path = tempfile.mkdtemp(prefix="editfeed-test-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    before = os.environ.get("EDITFEED_SHM_DIR")
    os.environ["EDITFEED_SHM_DIR"] = path
    yield path
    if before is None:
        del os.environ["EDITFEED_SHM_DIR"]
    else:
        os.environ["EDITFEED_SHM_DIR"] = before
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset with all three subsets, over several shards, with
    train/val/test splits by rule."""
    out = tmp_path_factory.mktemp("editfeed") / "ds"
    run_editfeed(
        "synth",
        "--out",
        str(out),
        "--samples",
        "30",
        "--scale",
        "0.1",
        "--shard-samples",
        "8",
        "--split-rule",
        SPLIT_RULE,
    )
    return out


@pytest.fixture(scope="session")
def daemon(dataset_dir: Path) -> Iterator[Daemon]:
    """A daemon serving the dataset as ``demo`` for the whole session."""
    d = Daemon(dataset_dir)
    yield d
    d.stop()


@pytest.fixture
def start_daemon(dataset_dir: Path) -> Iterator:
    """Starts extra daemons over the dataset; stops them after the test."""
    started: list[Daemon] = []

    def start(*extra: str) -> Daemon:
        """Starts one more daemon over the dataset."""
        d = Daemon(dataset_dir, DATASET, 2, *extra)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()
