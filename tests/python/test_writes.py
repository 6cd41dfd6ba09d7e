"""In-place writes into batch arrays and tensors (numpy and real torch), in both
delivery modes: they never crash, never warn, and change only their own batch, never a
shared-memory file or buffer that the daemon or a later batch reuses."""

from __future__ import annotations

import gc
import warnings

import pytest
import torch
from conftest import DATASET

from editfeed import Client
from editfeed.torch import batch_to_torch

# 128 px: every pixel tensor is over the 64 KiB that goes through shared memory.
SPEC = {"seed": 4, "global_batch": 4, "curriculum": [{"until_step": 10, "weights": {"sft": 1.0}}]}


@pytest.mark.parametrize("mode", ["shared memory", "messages"])
def test_in_place_writes_change_only_their_own_batch(start_daemon, mode: str) -> None:
    d = start_daemon()
    reference = [b.digest() for b in Client(d.endpoint, shm_dir="").stream(DATASET, SPEC, size=128)]
    client = Client(d.endpoint) if mode == "shared memory" else Client(d.endpoint, shm_dir="")
    files: list[str] = []
    steps = 0
    for b in client.stream(DATASET, SPEC, size=128):
        assert bool(b.message.shm_files) == (mode == "shared memory"), b.step
        files += b.message.shm_files
        # Nothing an earlier batch wrote shows in this one.
        assert b.digest() == reference[b.step], b.step
        source = b["source"]
        assert source.flags.writeable
        source[:, :4] = 0
        source += 1
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch's "not writable" warning included
            tensors = batch_to_torch(b)
            target = tensors["target"]
            target[:, :4] = 255
            target.float().div_(255)  # a copy, normalised in place
            target.to("cpu").mul_(1)  # the same storage
            assert target.numpy().flags.writeable
        assert (b["target"][:, :4] == 255).all() and (b["source"][:, :4] == 1).all()
        del b, source, tensors, target
        gc.collect()  # the shared-memory files go back to the daemon now
        steps += 1
    assert steps == len(reference) == 10
    if mode == "shared memory":
        # Files were given back and written again for later batches.
        assert len(set(files)) < len(files), files
