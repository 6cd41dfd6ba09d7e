"""A small example trainer on an editfeed daemon: supervised edits, then preference
pairs, then multi-turn chains, with a data checkpoint halfway and a resume from it.

    editfeed synth --out demo-data --samples 120 --scale 0.25
    editfeed serve --listen 127.0.0.1:50051 --dataset demo=demo-data &
    python examples/train_loop.py --endpoint 127.0.0.1:50051 --dataset demo --steps 12

Several ``--endpoint`` flags (or ``EDITFEED_ENDPOINTS=a:1,b:2``) give failover. Under
torchrun the rank and world size come from ``RANK`` and ``WORLD_SIZE``. With torch
installed the data comes from ``editfeed.torch.EditFeedDataset`` through a DataLoader
(``batch_size=None, num_workers=0``: the daemon batches and decodes); without torch,
from ``editfeed.Feed``, which has the same ``state_dict()`` / ``load_state_dict()``
and yields numpy arrays.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import editfeed

try:
    import torch
    from torch.utils.data import DataLoader

    from editfeed.torch import EditFeedDataset
except ImportError:
    torch = None


def curriculum(steps: int) -> list[dict[str, Any]]:
    """SFT for the first third, preference pairs for the second, multi-turn after;
    the stream ends at ``steps``."""
    a, b = max(1, steps // 3), max(2, 2 * steps // 3)
    return [
        {"until_step": a, "weights": {"sft": 1.0}},
        {"until_step": b, "weights": {"preference": 1.0}},
        {"until_step": max(b + 1, steps), "weights": {"multi_turn": 1.0}},
    ]


def make_data(args: argparse.Namespace) -> Any:
    """An EditFeedDataset (torch) or a Feed (numpy) over the daemons."""
    spec = {"seed": args.seed, "global_batch": args.global_batch, "curriculum": curriculum(args.steps)}
    kwargs = dict(size=args.size, client_options={"backoff": 0.2})
    if torch is not None:
        return EditFeedDataset(args.endpoint, args.dataset, spec, with_digest=True, **kwargs)
    return editfeed.Feed(args.endpoint, args.dataset, spec, **kwargs)


def batches(data: Any):
    """The data's batches as dicts, each with its digest."""
    if torch is not None:
        yield from DataLoader(data, batch_size=None, num_workers=0)
        return
    for batch in data:
        item = batch.to_dict()
        item["digest"] = batch.digest()
        yield item


def train_step(batch: dict[str, Any]) -> float:
    """Stands in for a model update: a statistic of the images, as a trainer sees them."""
    images = batch["images"] if batch["subset"] == "multi_turn" else batch["source"]
    if torch is not None:
        # uint8 HWC from the daemon; a real trainer moves it to the GPU first.
        x = images.movedim(-1, -3).float() / 255.0  # HWC -> CHW
        return float(x.mean())
    return float(images[..., :8, :8, :].mean() / 255.0)


def describe(batch: dict[str, Any]) -> str:
    """One line about a batch: step, subset, tensor shapes, first instruction."""
    shapes = ", ".join(
        f"{name}{list(batch[name].shape)}"
        for name in ("source", "target", "chosen", "rejected", "images", "turn_counts", "encoded")
        if name in batch
    )
    text = batch["texts"][0]
    if batch["subset"] == "multi_turn":
        text = " | ".join(batch["turn_texts"][0][: batch["turns"][0]])
    return f"step {batch['step']:3d} {batch['subset']:<10} {shapes}  first: {text[:70]!r}"


def main() -> None:
    """Trains through the curriculum, checkpoints halfway, then resumes from it."""
    p = argparse.ArgumentParser(description="editfeed example trainer")
    p.add_argument("--endpoint", action="append", help="daemon host:port (repeat for failover)")
    p.add_argument("--dataset", default="demo")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--global-batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", type=Path, help="where to write the checkpoint (default: a temporary file)")
    args = p.parse_args()
    if not args.endpoint:
        args.endpoint = os.environ.get("EDITFEED_ENDPOINTS", "127.0.0.1:50051").split(",")
    if args.steps < 3:
        p.error("--steps must be at least 3 (one step per curriculum phase)")
    checkpoint = args.checkpoint or Path(tempfile.mkdtemp()) / "checkpoint.json"
    halfway = args.steps // 2

    data = make_data(args)
    print(f"rank {data.rank} of {data.world_size}, {'torch' if torch is not None else 'numpy (torch not installed)'}")
    try:
        info = data.client.describe()
    except editfeed.EditFeedError as e:
        sys.exit(f"cannot reach the daemon: {e}")
    for d in info.datasets:
        print(f"dataset {d.name}: " + ", ".join(f"{s.name} {s.samples}" for s in d.subsets))

    digests = {}
    for batch in batches(data):
        loss = train_step(batch)
        digests[batch["step"]] = batch["digest"]
        print(f"{describe(batch)}  loss {loss:.4f}")
        if batch["step"] + 1 == halfway:
            checkpoint.write_text(json.dumps({"step": batch["step"], "data": data.state_dict()}))
            print(f"checkpoint after step {batch['step']}: {checkpoint} (cursor {data.state_dict()['cursor']})")

    print(f"\nresuming from {checkpoint}")
    state = json.loads(checkpoint.read_text())
    resumed = make_data(args)
    resumed.load_state_dict(state["data"])
    same = 0
    for batch in batches(resumed):
        print(describe(batch))
        if digests.get(batch["step"]) != batch["digest"]:
            sys.exit(f"step {batch['step']}: the resumed batch differs from the first run")
        same += 1
    print(f"resumed at step {state['step'] + 1}: {same} batches, identical to the first run")


if __name__ == "__main__":
    main()
