"""torchrun with DDP (gloo, CPU) over editfeed: the ranks' slices concatenate to the
world-size-1 global batch, and a data checkpoint taken at world size 2 resumes at world
sizes 1 and 4 with the same global batches (tests/python/ddp_train.py is the trainer)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import torch

from editfeed.torch import EditFeedDataset

TRAINER = Path(__file__).resolve().parent / "ddp_train.py"
SPEC = {"seed": 5, "global_batch": 8, "curriculum": [{"weights": {"sft": 1.0}}]}
STEPS = 6


def torchrun(nproc: int, endpoint: str, out: Path, *args: str) -> list[dict]:
    """Runs the trainer on nproc ranks; returns the global batch of each step (the
    ranks' slices concatenated in rank order)."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    proc = subprocess.run([*cmd, str(TRAINER), endpoint, str(out), *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(nproc)]
    assert len({len(r) for r in ranks}) == 1
    steps = []
    for per_rank in zip(*ranks):
        assert len({s["step"] for s in per_rank}) == 1
        steps.append(
            {
                "step": per_rank[0]["step"],
                "keys": [k for s in per_rank for k in s["keys"]],
                "sha256": [h for s in per_rank for h in s["sha256"]],
            }
        )
    return steps


def world_one(endpoint: str, steps: int, state: dict | None = None) -> list[dict]:
    """The global batches of world size 1, in this process."""
    ds = EditFeedDataset(endpoint, "demo", SPEC, size=16, max_batches=steps, rank=0, world_size=1)
    if state is not None:
        ds.load_state_dict(state)
    out = []
    for b in ds:
        source = b["source"].numpy()
        out.append(
            {
                "step": b["step"],
                "keys": b["keys"],
                "sha256": [hashlib.sha256(source[j].tobytes()).hexdigest() for j in range(len(source))],
            }
        )
    return out


def test_ddp_ranks_concatenate_to_the_global_batch_and_resume_elastically(daemon, tmp_path: Path):
    whole = world_one(daemon.address, 2 * STEPS)
    two = torchrun(2, daemon.address, tmp_path / "w2", str(STEPS), "--checkpoint-after", "3")
    assert [s["step"] for s in two] == list(range(STEPS))
    assert two == whole[:STEPS]
    state = torch.load(tmp_path / "w2" / "data.pt", weights_only=True)
    assert state["step"] == 2
    # Elastic resume of the checkpoint after step 2, at world size 1 and at 4: the
    # checkpointed iteration (max_batches=STEPS) goes on to its end.
    assert world_one(daemon.address, STEPS, state) == whole[3:STEPS]
    four = torchrun(4, daemon.address, tmp_path / "w4", str(STEPS), "--resume", str(tmp_path / "w2" / "data.pt"))
    assert four == whole[3:STEPS]
