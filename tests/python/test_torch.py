"""`editfeed.torch` with real torch against real daemons: ``EditFeedDataset`` through
``DataLoader`` with 0 and N workers (byte-identical batches), its checkpoints
(``state_dict``, torchdata's ``StatefulDataLoader``, ``torch.save`` and
``torch.distributed.checkpoint``), failover inside a worker, the refusal of
``batch_size``, and ``to_device``."""

from __future__ import annotations

import gc
import os
import time
import warnings

import pytest
import torch
import torch.utils.data
from conftest import DATASET, quiet_grpc

from editfeed.torch import EditFeedDataset

SPEC = {"seed": 11, "global_batch": 8}
# Steps 0-2 single-turn, then a mix of every subset; the stream ends at step 9.
FINITE = {
    "seed": 11,
    "global_batch": 8,
    "curriculum": [
        {"until_step": 3, "weights": {"sft": 1.0}},
        {"until_step": 9, "ramp_steps": 3, "weights": {"sft": 0.3, "preference": 0.4, "multi_turn": 0.3}},
    ],
}


@pytest.fixture(autouse=True)
def quiet_torch_warnings():
    """DataLoader warns about more workers than cores and about pin_memory without a
    GPU; neither matters on the test machine."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*worker processes in total.*")
        warnings.filterwarnings("ignore", message=".*pin_memory.*")
        yield


def quiet_before_fork(loader_class):
    """``loader_class`` whose iterations with fork workers first let this process's
    finished gRPC calls wind down (``conftest.quiet_grpc``), as a trainer that streamed
    before forking its workers must (see the client README)."""

    class Quiet(loader_class):
        def __iter__(self):
            if self.num_workers and self.multiprocessing_context is None:
                quiet_grpc()
            return super().__iter__()

    Quiet.__name__ = loader_class.__name__
    return Quiet


DataLoader = quiet_before_fork(torch.utils.data.DataLoader)


def rows(items) -> list[tuple[int, str, str]]:
    """(step, subset, digest) of each item."""
    return [(b["step"], b["subset"], b["digest"]) for b in items]


def dataset(endpoints, spec=SPEC, **kw) -> EditFeedDataset:
    """An EditFeedDataset at 32 px with digests."""
    endpoints = [endpoints] if isinstance(endpoints, str) else endpoints
    return EditFeedDataset(endpoints, DATASET, spec, size=32, with_digest=True, **kw)


def test_state_dict_round_trip_resumes_exactly(daemon, monkeypatch):
    """k batches, state_dict(), a new dataset, load_state_dict(), the rest: the same
    batches as one uninterrupted run; rank and world size come from the environment."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    whole = rows(dataset(daemon.endpoint, FINITE))
    assert [s for s, _, _ in whole] == list(range(9))

    first = dataset(daemon.endpoint, FINITE)
    assert (first.rank, first.world_size) == (1, 2)
    it = iter(first)
    head = []
    for _ in range(4):
        b = next(it)
        head.append((b["step"], b["subset"], b["digest"]))
        assert isinstance(b["source"], torch.Tensor) or b["subset"] == "multi_turn"
        assert b["rank"] == 1 and len(b["keys"]) == 4
    state = first.state_dict()
    assert state["cursor"] == b["cursor"] and state["cursor"].startswith("ef1:4:")
    it.close()

    resumed = dataset(daemon.endpoint, FINITE)
    resumed.load_state_dict(dict(state))
    tail = rows(resumed)
    assert head + tail == whole
    assert resumed.state_dict()["cursor"].startswith("ef1:9:")
    # Iterating the first object again also goes on from where it stopped.
    assert rows(first) == tail


@pytest.mark.parametrize(
    "workers,options",
    [
        (2, {}),
        (3, {"persistent_workers": True, "pin_memory": True}),
        (2, {"multiprocessing_context": "spawn"}),
    ],
)
def test_dataloader_workers_give_the_batches_of_num_workers_0(daemon, workers, options):
    """DataLoader(num_workers=N): the same batches, byte for byte and in order, as
    num_workers=0, over a finite curriculum and over max_batches iterations (which
    continue one another, also across epochs of persistent workers)."""
    expected = rows(DataLoader(dataset(daemon.endpoint, FINITE), batch_size=None))
    got = rows(DataLoader(dataset(daemon.endpoint, FINITE), batch_size=None, num_workers=workers, **options))
    assert got == expected

    plain = dataset(daemon.endpoint, max_batches=7)
    epochs0 = [rows(DataLoader(plain, batch_size=None)) for _ in range(2)]
    assert [s for s, _, _ in epochs0[0] + epochs0[1]] == list(range(14))
    loader = DataLoader(dataset(daemon.endpoint, max_batches=7), batch_size=None, num_workers=workers, **options)
    epochs = [rows(loader) for _ in range(2)]
    if options.get("persistent_workers"):
        # The workers keep their datasets: the second epoch goes on after the first.
        assert epochs == epochs0
    else:
        # Fresh workers copy the main process's dataset, which did not move.
        assert epochs == [epochs0[0], epochs0[0]]


def tensor_bytes(items) -> list[tuple[int, dict[str, str]]]:
    """(step, tensor name -> sha256 of its bytes) of each item, hashed in this process."""
    import hashlib

    return [
        (b["step"], {k: hashlib.sha256(v.numpy().tobytes()).hexdigest() for k, v in b.items() if isinstance(v, torch.Tensor)})
        for b in items
    ]


@pytest.mark.parametrize("options", [{}, {"pin_memory": True, "persistent_workers": True}])
def test_workers_hand_the_daemons_files_to_the_main_process(daemon, shm_dir, options):
    """At a size whose images travel as the daemon's shared-memory files, workers pass
    the files' names and the main process maps them: its tensors hold the bytes of
    num_workers=0 without a copy in DataLoader's shared memory, and every file goes
    back to the daemon once the batches are gone."""
    big = {"size": 128, "with_digest": False}
    plain = list(DataLoader(EditFeedDataset(daemon.endpoint, DATASET, FINITE, **big), batch_size=None))
    expected = tensor_bytes(plain)
    assert not plain[0]["source"].is_shared()
    del plain
    loader = DataLoader(EditFeedDataset(daemon.endpoint, DATASET, FINITE, **big), batch_size=None, num_workers=2, **options)
    items = list(loader)
    assert tensor_bytes(items) == expected
    images = [v for b in items for k, v in b.items() if k in ("source", "target", "images", "chosen", "rejected")]
    assert images
    # DataLoader moves a worker's tensors into its own shared memory (is_shared()); the
    # daemon's files came as names and were mapped here instead (pinned copies aside).
    if not options.get("pin_memory"):
        assert not any(t.is_shared() for t in images)
    with open("/proc/self/maps") as f:
        mapped = f.read()
    assert shm_dir in mapped, "the daemon's files are mapped in the main process"
    del items, images, loader
    gc.collect()
    deadline = time.monotonic() + 10
    while True:
        held = [n for n in os.listdir(shm_dir) if n.startswith("editfeed-") and not n.endswith(".free")]
        # Files the daemon wrote for batches nobody holds any more are back (.free),
        # or were removed with their stream.
        live = [n for n in held if os.path.exists(os.path.join(shm_dir, n))]
        if not live or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not live, live


def worker_view(item):
    """(worker id, step, process id, whether the worker's dataset streams through a
    client made in this process) of an item, in the worker (as a collate_fn)."""
    info = torch.utils.data.get_worker_info()
    return (info.id, item["step"], os.getpid(), info.dataset._client_pid == os.getpid())


def test_each_worker_has_its_own_connection_and_share(daemon):
    """Worker k streams the steps k, k + N, ... through a client of its own process,
    even when the main process opened a channel before the workers forked."""
    ds = dataset(daemon.endpoint, max_batches=6)
    ds.client.describe()
    got = list(DataLoader(ds, batch_size=None, num_workers=2, collate_fn=worker_view))
    assert [(w, s) for w, s, _, _ in got] == [(0, 0), (1, 1), (0, 2), (1, 3), (0, 4), (1, 5)]
    pids = {w: pid for w, _, pid, _ in got}
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
    assert all(own for _, _, _, own in got)


@pytest.mark.parametrize("kwargs", [{}, {"batch_size": 4}, {"batch_size": 1, "num_workers": 2}])
def test_dataloader_batch_size_raises_naming_batch_size_none(daemon, kwargs):
    """DataLoader(ds) (batch_size defaults to 1) or any batch_size: a ValueError that
    names the fix, never re-batched tensors of shape [1, B, H, W, 3]."""
    loader = DataLoader(dataset(daemon.endpoint, max_batches=8), **kwargs)
    with pytest.raises(Exception, match=r"batch_size=None") as caught:
        next(iter(loader))
    assert "ValueError" in repr(caught.value) or isinstance(caught.value, ValueError)


@pytest.mark.parametrize("workers", [0, 2])
def test_stateful_dataloader_resumes_with_identical_batches(daemon, workers):
    """torchdata's StatefulDataLoader: k batches, state_dict(), a new loader over a new
    dataset, load_state_dict(), the rest: the uninterrupted run's batches."""
    from torchdata.stateful_dataloader import StatefulDataLoader as Stateful

    StatefulDataLoader = quiet_before_fork(Stateful)

    expected = rows(DataLoader(dataset(daemon.endpoint, FINITE), batch_size=None))
    loader = StatefulDataLoader(dataset(daemon.endpoint, FINITE), batch_size=None, num_workers=workers)
    it = iter(loader)
    head = rows(next(it) for _ in range(5))
    state = loader.state_dict()
    del it, loader
    resumed = StatefulDataLoader(dataset(daemon.endpoint, FINITE), batch_size=None, num_workers=workers)
    resumed.load_state_dict(state)
    assert head + rows(resumed) == expected


def test_dataset_state_through_torch_save_and_distributed_checkpoint(daemon, tmp_path):
    """Each rank's dataset state saved with torch.save and with
    torch.distributed.checkpoint (one key per rank), loaded into new datasets: each
    rank resumes exactly."""
    import torch.distributed.checkpoint as dcp

    world = 2
    expected = [rows(dataset(daemon.endpoint, FINITE, rank=r, world_size=world)) for r in range(world)]
    states = {}
    for r in range(world):
        ds = dataset(daemon.endpoint, FINITE, rank=r, world_size=world)
        it = iter(ds)
        for _ in range(3 + r):
            next(it)
        states[f"data_rank{r}"] = ds.state_dict()
        it.close()
    torch.save(states, tmp_path / "data.pt")
    dcp.save(states, checkpoint_id=str(tmp_path / "dcp"), no_dist=True)
    from_save = torch.load(tmp_path / "data.pt", weights_only=True)
    # DCP loads in place into a state of the same structure: fresh datasets' states.
    from_dcp = {f"data_rank{r}": dataset(daemon.endpoint, FINITE, rank=r, world_size=world).state_dict() for r in range(world)}
    assert from_dcp != states
    dcp.load(from_dcp, checkpoint_id=str(tmp_path / "dcp"), no_dist=True)
    for loaded in (from_save, from_dcp):
        for r in range(world):
            ds = dataset(daemon.endpoint, FINITE, rank=r, world_size=world)
            ds.load_state_dict(loaded[f"data_rank{r}"])
            assert rows(ds) == expected[r][3 + r :], r


def test_a_worker_fails_over_and_its_state_still_resumes(start_daemon):
    """With two workers, daemon A is killed mid-stream: each worker moves to B at its
    last cursor, the batches equal an uninterrupted run, and a StatefulDataLoader
    state taken after the failover resumes exactly."""
    from torchdata.stateful_dataloader import StatefulDataLoader as Stateful

    StatefulDataLoader = quiet_before_fork(Stateful)

    a, b = start_daemon(), start_daemon()
    spec = {"seed": 3, "global_batch": 8}
    expected = rows(DataLoader(dataset(b.endpoint, spec, max_batches=24), batch_size=None))
    options = {
        "backoff": 0.05,
        "channel_options": [("grpc.http2.lookahead_bytes", 65536), ("grpc.http2.bdp_probe", 0)],
    }

    def make(endpoints):
        return dataset(endpoints, spec, max_batches=24, client_options=options)

    # Spawned workers: a forked child inherits the gRPC core of a parent that has
    # streamed already (the expected run above), which gRPC does not support and which
    # can deadlock the child. A worker that stops delivering fails the test within the
    # DataLoader timeout instead of hanging it.
    workers = {"num_workers": 2, "multiprocessing_context": "spawn", "timeout": 120}
    loader = StatefulDataLoader(make([a.endpoint, b.endpoint]), batch_size=None, prefetch_factor=1, **workers)
    it = iter(loader)
    got = rows(next(it) for _ in range(4))
    a.kill()
    got += rows(next(it) for _ in range(8))
    state = loader.state_dict()
    del it, loader
    resumed = StatefulDataLoader(make([b.endpoint]), batch_size=None, **workers)
    resumed.load_state_dict(state)
    assert got + rows(resumed) == expected


def test_to_device_makes_float_chw_in_both_scales_without_touching_the_batch(daemon):
    """uint8 [B, H, W, 3] -> float [B, 3, H, W] in [0, 1] or [-1, 1] (multi-turn
    [B, T, H, W, 3] -> [B, T, 3, H, W]), channels-last on request, new memory."""
    from editfeed.torch import to_device

    items = list(DataLoader(dataset(daemon.endpoint, FINITE, encoded=False), batch_size=None))
    multi = next(b for b in items if b["subset"] == "multi_turn")
    sft = items[0]
    src = sft["source"]
    before = src.clone()
    unit = to_device(sft, "cpu")
    x = unit["source"]
    assert x.dtype == torch.float32 and tuple(x.shape) == (src.shape[0], 3, src.shape[1], src.shape[2])
    assert x.is_contiguous()
    assert torch.equal(x, src.permute(0, 3, 1, 2).float() / 255)
    signed = to_device(sft, torch.device("cpu"), scale="signed", channels_last=True)["source"]
    assert signed.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(signed, src.permute(0, 3, 1, 2).float() / 127.5 - 1)
    assert signed.min() >= -1 and signed.max() <= 1
    x.mul_(0)  # the result is the caller's to write
    assert torch.equal(sft["source"], before)
    assert unit["keys"] == sft["keys"] and unit["step"] == sft["step"]
    m = to_device(multi, "cpu", dtype=torch.float16)
    images = multi["images"]
    assert tuple(m["images"].shape) == (images.shape[0], images.shape[1], 3, images.shape[2], images.shape[3])
    assert m["images"].dtype == torch.float16
    assert torch.equal(m["turn_counts"], multi["turn_counts"])
    with pytest.raises(ValueError, match="scale"):
        to_device(sft, "cpu", scale="imagenet")
    with pytest.raises(ValueError, match="floating-point"):
        to_device(sft, "cpu", dtype=torch.int32)


EVAL = {"seed": 2, "global_batch": 4, "mode": "eval", "select": {"split": "test", "subsets": ["sft", "dpo"]}}


@pytest.mark.parametrize("workers", [0, 2])
def test_an_eval_pass_through_the_dataloader_is_one_pass_with_a_valid_mask(daemon, workers):
    """An eval ``EditFeedDataset``: each DataLoader iteration is the whole pass, the
    same batches with 0 and 2 workers, with a ``valid`` mask that ``to_device`` keeps."""
    from editfeed import Client
    from editfeed.torch import to_device

    expected = [(b.step, b.subset, b.digest()) for b in Client(daemon.endpoint).stream(DATASET, EVAL, size=32)]
    assert {s for _, s, _ in expected} <= {"sft", "preference"}
    ds = dataset(daemon.endpoint, EVAL)
    loader = DataLoader(ds, batch_size=None, num_workers=workers)
    passes = [rows(loader) for _ in range(2)]
    assert passes == [expected, expected], "each iteration is one whole pass"
    last = to_device(next(iter(DataLoader(dataset(daemon.endpoint, EVAL), batch_size=None))))
    assert last["valid"].dtype == torch.uint8 and last["valid"].shape == (4,)
    assert last["source"].shape == (4, 3, 32, 32)
