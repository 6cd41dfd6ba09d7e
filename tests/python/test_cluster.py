"""A cluster on one machine: three daemons on loopback ports serve one dataset, a job of
four ranks is spread over them, and one daemon is killed mid-epoch. Daemons are
stateless and the plan is a pure function, so the ranks that lose their daemon resume
on another one at their last cursor and every rank's hash sequence equals the
uninterrupted run's; over one epoch the ranks together see every sample exactly once."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

from conftest import Daemon, run_editfeed

from editfeed import Client

WORLD = 4
GLOBAL_BATCH = 8
STEPS = 12
SPEC = {"seed": 21, "global_batch": GLOBAL_BATCH, "curriculum": [{"weights": {"sft": 1.0}}]}


def sft_keys(dataset: Path) -> list[str]:
    """Every single-turn sample key, from editfeed's own indexed reader."""
    keys = []
    for line in run_editfeed("inspect", str(dataset), "--members").splitlines():
        subset, _shard, key, field, *_ = line.split()
        if subset == "sft" and field == "json":
            keys.append(key)
    return keys


def endpoints_for(rank: int, daemons: list[Daemon]) -> list[str]:
    """Rank r talks to daemon r mod 3 first (its "node-local" daemon), then the others."""
    return [daemons[(rank + i) % len(daemons)].endpoint for i in range(len(daemons))]


def run_rank(rank: int, endpoints: list[str], out: dict, pause: threading.Barrier | None = None) -> None:
    """Streams STEPS batches of one rank, recording (step, digest, keys, endpoint)."""
    client = Client(
        endpoints,
        backoff=0.05,
        # A small receive window so a daemon cannot run far ahead of this rank.
        channel_options=[("grpc.http2.lookahead_bytes", 65536), ("grpc.http2.bdp_probe", 0)],
    )
    got = []
    # 128 px: one batch (2 samples x 2 images) is larger than the 64 KiB window, so a
    # daemon is never more than a batch ahead and a kill lands mid-stream.
    stream = client.stream("demo", SPEC, rank=rank, world_size=WORLD, size=128, max_batches=STEPS)
    for batch in stream:
        got.append((batch.step, batch.digest(), list(batch.keys), batch.endpoint))
        if pause is not None and len(got) == 2:
            pause.wait(timeout=60)
    out[rank] = got


def test_three_daemons_four_ranks_cover_the_epoch_and_survive_a_kill(tmp_path: Path):
    dataset = tmp_path / "ds"
    run_editfeed("synth", "--out", str(dataset), "--samples", "40", "--scale", "0.05", "--shard-samples", "5")
    keys = sft_keys(dataset)
    assert len(keys) % GLOBAL_BATCH == 0, "the epoch is a whole number of steps"
    daemons = [Daemon(dataset) for _ in range(3)]
    try:
        baseline: dict[int, list] = {}
        for rank in range(WORLD):
            run_rank(rank, endpoints_for(rank, daemons), baseline)

        # One epoch, all ranks together: every sample exactly once.
        epoch_steps = len(keys) // GLOBAL_BATCH
        seen = Counter(k for rank in range(WORLD) for step, _, ks, _ in baseline[rank] if step < epoch_steps for k in ks)
        assert sorted(seen) == sorted(keys)
        assert set(seen.values()) == {1}

        # Now all four ranks at once; after two batches each, daemon 1 dies.
        interrupted: dict[int, list] = {}
        pause = threading.Barrier(WORLD + 1)
        threads = [
            threading.Thread(target=run_rank, args=(r, endpoints_for(r, daemons), interrupted, pause))
            for r in range(WORLD)
        ]
        for t in threads:
            t.start()
        pause.wait(timeout=60)
        daemons[1].kill()
        for t in threads:
            t.join(timeout=120)
        for rank in range(WORLD):
            assert [(s, d) for s, d, _, _ in interrupted[rank]] == [(s, d) for s, d, _, _ in baseline[rank]], rank
        # Rank 1 started on daemon 1 and finished elsewhere.
        served_by = [e for _, _, _, e in interrupted[1]]
        assert served_by[0] == daemons[1].endpoint and served_by[-1] != daemons[1].endpoint
    finally:
        for d in daemons:
            d.stop()
