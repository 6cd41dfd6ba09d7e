"""A tiny DDP training run over editfeed, started by test_torchrun.py with torchrun
(gloo, CPU): each rank streams its slice through EditFeedDataset, trains a small
convolutional model for a few optimizer steps and writes, per step, its samples' keys
and the sha256 of each sample's source image to ``OUT/rank<R>.json``. Rank 0 also
saves the data state after ``--checkpoint-after`` steps to ``OUT/data.pt``.

Usage: ddp_train.py ENDPOINT OUT STEPS [--resume PATH] [--checkpoint-after K]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from editfeed.torch import EditFeedDataset, to_device

SPEC = {"seed": 5, "global_batch": 8, "curriculum": [{"weights": {"sft": 1.0}}]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("endpoint")
    parser.add_argument("out")
    parser.add_argument("steps", type=int)
    parser.add_argument("--resume")
    parser.add_argument("--checkpoint-after", type=int, default=0)
    args = parser.parse_args()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    # 16 px images: the 3x3 convolution leaves 14 x 14.
    model = DistributedDataParallel(
        torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 14 * 14, 1))
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    ds = EditFeedDataset(args.endpoint, "demo", SPEC, size=16, max_batches=args.steps)
    if args.resume:
        ds.load_state_dict(torch.load(args.resume, weights_only=True))
    seen = []
    for i, batch in enumerate(DataLoader(ds, batch_size=None)):
        x = to_device(batch, "cpu", scale="signed")["source"]
        loss = model(x).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        source = batch["source"].numpy()
        seen.append(
            {
                "step": batch["step"],
                "keys": batch["keys"],
                "sha256": [hashlib.sha256(source[j].tobytes()).hexdigest() for j in range(len(source))],
            }
        )
        if rank == 0 and i + 1 == args.checkpoint_after:
            torch.save(ds.state_dict(), os.path.join(args.out, "data.pt"))
    with open(os.path.join(args.out, f"rank{rank}.json"), "w") as f:
        json.dump(seen, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
