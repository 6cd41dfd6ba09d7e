"""PyTorch integration: ``EditFeedDataset``, an ``IterableDataset`` over an editfeed
stream whose position is part of the training checkpoint, and ``to_device``, which
hands a batch to the model as float CHW tensors.

This is the only module of the package that imports torch; ``import editfeed`` works
without it (install it with the ``editfeed[torch]`` extra).

Use it with ``DataLoader(ds, batch_size=None)``: the daemon already batches, so the
DataLoader must not batch again. ``batch_size`` left at its default (1) or set to any
number raises ValueError at the first batch, naming ``batch_size=None``. Under
torchrun, ``rank`` and ``world_size`` default to ``$RANK`` and ``$WORLD_SIZE``.

Loader workers (``num_workers=N``, with ``persistent_workers`` and ``pin_memory`` as
usual): worker k streams the rank's steps start + k, start + k + N, ... over its own
connection, and DataLoader's in-order delivery restores the rank's exact sequence, so
the batches are byte-identical to ``num_workers=0``. Each worker fails over between
daemons on its own, like the main process. The main process's ``ds.state_dict()``
does not follow the workers: checkpoint through torchdata's ``StatefulDataLoader``
(which collects every worker's position), or from a batch's ``cursor``
(``ds.load_state_dict({"cursor": batch["cursor"]})`` resumes the rank after that
batch at any worker count). When the daemon shares memory with the trainer (see the
client's ``shm_dir``), a worker hands the main process the names of the daemon's files
rather than the tensors' bytes: the main process maps them as a stream does, so no
worker copies pixels into DataLoader's own shared memory. A ``collate_fn`` of your own
then sees those names, not tensors, in the worker; the default (``batch_size=None``)
passes them through.

Each item is a dict (``EditFeedBatch``): the batch's tensors as torch tensors sharing
memory with the received message (``torch.from_numpy``, no copy; images are uint8 HWC,
e.g. ``source`` ``[B, H, W, 3]``; ``to_device`` makes them float CHW on a device), the
per-sample metadata lists (``keys``, ``texts``, ``short_texts``, ``turns``,
``turn_texts``, ...), and ``step``, ``subset``, ``cursor``, ``rank``, ``world_size``,
``dataset_version`` (and ``digest`` when asked for). The tensors are writable and private
to their batch: writing in place (normalising, masking) changes that batch only, never a
buffer the daemon or a later batch uses.

Checkpointing::

    ds = EditFeedDataset(["10.0.0.1:50051", "10.0.0.2:50051"], "pico", spec, size=512)
    for batch in DataLoader(ds, batch_size=None, num_workers=0):
        ...
        if step % 1000 == 0:
            torch.save({"model": model.state_dict(), "data": ds.state_dict()}, path)

    ds.load_state_dict(torch.load(path)["data"])   # the next iteration resumes exactly
"""

from __future__ import annotations

import gc
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import IterableDataset
from torch.utils.data._utils.collate import default_collate_fn_map

from .batch import DTYPES, Batch
from .client import Client, keep_inherited
from .feed import Feed
from .spec import SpecLike
from .wire import MAPPINGS


def _as_tensor(array: Any) -> Any:
    # Batch arrays are writable and private to their batch, so torch has nothing to
    # warn about.
    return torch.from_numpy(array)


class EditFeedBatch(dict):
    """One editfeed batch as ``EditFeedDataset`` yields it: a dict of tensors and
    metadata. DataLoader's default collation refuses it (it is a whole batch
    already): see ``DataLoader(..., batch_size=None)``."""


def _refuse_collate(batch: Any, *, collate_fn_map: Any = None) -> Any:
    raise ValueError(
        "EditFeedDataset yields whole batches (the daemon batches them): give the DataLoader "
        "batch_size=None, e.g. DataLoader(ds, batch_size=None, num_workers=2); with batch_size "
        f"set (its default is 1) it would stack {len(batch)} batch(es) into one tensor per key"
    )


# Garbage of the trainer's process (streams and channels nothing refers to any more)
# is collected before a DataLoader forks its workers, so that no worker inherits gRPC
# objects that its own garbage collection would free: gRPC's objects do not survive a
# fork, and freeing them in a worker can crash it. os.fork runs the hook; subprocesses
# started with subprocess do not.
os.register_at_fork(before=gc.collect)

# The documented extension point of torch's default_collate (its docstring shows
# registering a type in default_collate_fn_map): the default collation of
# DataLoader(batch_size=...) raises for editfeed batches instead of re-batching them.
default_collate_fn_map[EditFeedBatch] = _refuse_collate


class _FileTensor:
    """A tensor in one of the daemon's shared-memory files, on its way from a DataLoader
    worker to the main process: it pickles as the file's name, and the main process
    maps the file (copy-on-write, as a stream does) instead of receiving a copy of its
    bytes. The main process then gives the file back when the tensor is gone."""

    __slots__ = ("path", "dtype", "shape")

    def __init__(self, path: str, dtype: str, shape: tuple[int, ...]) -> None:
        self.path, self.dtype, self.shape = path, dtype, shape

    def __reduce__(self) -> tuple[Any, tuple[str, str, tuple[int, ...]]]:
        return _open_file_tensor, (self.path, self.dtype, self.shape)


def _open_file_tensor(path: str, dtype: str, shape: tuple[int, ...]) -> Any:
    np_dtype = DTYPES[dtype]
    size = np_dtype.itemsize * math.prod(shape)
    return torch.from_numpy(np.frombuffer(MAPPINGS.view(path, size), dtype=np_dtype).reshape(shape))


def _from_worker(batch: Batch, with_digest: bool) -> EditFeedBatch:
    """A batch as a DataLoader worker yields it: the tensors the daemon sent in
    shared-memory files go to the main process by name, the others as tensors."""
    out = batch_to_torch(batch, with_digest=with_digest)
    message = batch.message
    for tensor, path in zip(message.tensors, getattr(message, "tensor_files", ()), strict=False):
        if path:
            out[tensor.name] = _FileTensor(path, tensor.dtype, tensor.shape)
            MAPPINGS.hand_over(path)
    return out


def batch_to_torch(batch: Batch, with_digest: bool = False) -> EditFeedBatch:
    """A ``Batch`` as a dict of torch tensors (zero copy) plus its metadata."""
    out = EditFeedBatch(batch.to_dict())
    for name in batch.tensors:
        out[name] = _as_tensor(batch.tensors[name])
    if with_digest:
        out["digest"] = batch.digest()
    return out


class EditFeedDataset(IterableDataset):
    """An endless (or curriculum-bounded) ``IterableDataset`` of editfeed batches.

    Args:
        endpoints: ``host:port`` strings (failover, round robin) or a ``Client``.
        dataset: the dataset name the daemons serve.
        spec: a spec dict, a ``StreamSpec`` or a curriculum TOML path (with ``seed``
            and ``global_batch``), as for ``editfeed.Client.stream``.
        rank, world_size: default ``$RANK`` / ``$WORLD_SIZE`` (0 / 1).
        cursor: where to start (or use ``load_state_dict``).
        size, height, encoded, augment, buckets, fit: the output, as for
            ``Client.stream``.
        max_batches: batches per iteration (0 = until the curriculum ends).
        with_digest: add each batch's ``digest`` (sha256 over all its bytes; costs
            time at large sizes).
        client_options: keyword arguments of ``editfeed.Client``.

    Every iteration continues after the last batch yielded. ``state_dict()`` returns
    ``{"cursor": ..., "step": ..., "batches": ..., "dataset": ...}`` (and the position
    inside an unfinished iteration, see ``editfeed.Feed.state_dict``);
    ``load_state_dict()`` makes the next iteration resume after that batch. The request
    is checked when the dataset is made, as ``editfeed.Feed`` says.

    In DataLoader workers, each worker streams its share of the rank's steps (see the
    module docs); ``max_batches`` then still counts the rank's batches per iteration
    (all workers together).
    """

    def __init__(
        self,
        endpoints: str | Sequence[str] | Client,
        dataset: str,
        spec: SpecLike,
        *,
        seed: int | None = None,
        global_batch: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        cursor: str | None = None,
        size: int = 256,
        height: int | None = None,
        encoded: bool = False,
        augment: Mapping[str, Any] | Any | None = None,
        buckets: Sequence[tuple[int, int]] | None = None,
        fit: str | None = None,
        max_batches: int = 0,
        with_digest: bool = False,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.feed = Feed(
            endpoints,
            dataset,
            spec,
            seed=seed,
            global_batch=global_batch,
            rank=rank,
            world_size=world_size,
            cursor=cursor,
            size=size,
            height=height,
            encoded=encoded,
            augment=augment,
            buckets=buckets,
            fit=fit,
            max_batches=max_batches,
            client_options=client_options,
        )
        self.with_digest = with_digest
        self._client_pid = os.getpid()

    @property
    def client(self) -> Client:
        """The ``editfeed.Client`` the dataset streams through (e.g. for ``describe()``)."""
        return self.feed.client

    @property
    def rank(self) -> int:
        """This trainer's rank."""
        return self.feed.rank

    @property
    def world_size(self) -> int:
        """The number of ranks."""
        return self.feed.world_size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        if self._client_pid != os.getpid():
            # A DataLoader worker: its own connections (channels do not survive a fork).
            # The inherited client is kept, not freed: freeing its channels here can
            # crash the worker.
            keep_inherited(self.feed.client)
            self.feed.client = self.feed.client.reopened()
            self._client_pid = os.getpid()
        for batch in self.feed.batches(worker, workers):
            if info is None:
                yield batch_to_torch(batch, with_digest=self.with_digest)
            else:
                yield _from_worker(batch, self.with_digest)

    def state_dict(self) -> dict[str, Any]:
        """The position after the last batch yielded: ``{"cursor": ..., ...}``."""
        return self.feed.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Makes the next iteration resume after the batch ``state`` was taken at."""
        self.feed.load_state_dict(state)


def to_device(
    batch: Mapping[str, Any],
    device: str | torch.device = "cpu",
    *,
    scale: Literal["unit", "signed"] = "unit",
    channels_last: bool = False,
    dtype: torch.dtype = torch.float32,
) -> dict[str, Any]:
    """The batch on ``device``, its images as float CHW tensors.

    Every uint8 image tensor (``[..., H, W, 3]``: ``source``, ``target``, ``chosen``,
    ``rejected``, multi-turn ``images``) becomes ``dtype`` ``[..., 3, H, W]``, scaled
    to [0, 1] (``scale="unit"``) or [-1, 1] (``scale="signed"``). ``channels_last``
    keeps the pixels in HWC memory order (``torch.channels_last`` for 4-D tensors),
    which convolutions on GPUs often prefer; otherwise the result is contiguous CHW.
    Other tensors (``turn_counts``) move unchanged, and the metadata is copied as is.

    On a CUDA device the uint8 bytes are copied into pinned memory (unless they are
    pinned already, e.g. by ``DataLoader(pin_memory=True)``) and sent with
    ``non_blocking=True``; the conversion runs on the device. On the CPU the same code
    runs without pinning. The received batch is never written: the result is new
    memory (on the CPU too), so it may be modified in place.
    """
    if scale not in ("unit", "signed"):
        raise ValueError(f"scale: {scale!r} must be 'unit' ([0, 1]) or 'signed' ([-1, 1])")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype: {dtype} is not a floating-point type")
    device = torch.device(device)
    cuda = device.type == "cuda"
    out: dict[str, Any] = dict(batch)
    for name, value in batch.items():
        if not isinstance(value, torch.Tensor):
            continue
        t = value
        if cuda and not t.is_pinned():
            t = t.pin_memory()
        t = t.to(device, non_blocking=cuda)
        if t.dtype == torch.uint8 and t.ndim >= 4 and t.shape[-1] == 3:
            # HWC -> CHW as a view (the memory stays HWC), converted on the device.
            dims = list(range(t.ndim - 3)) + [t.ndim - 1, t.ndim - 3, t.ndim - 2]
            x = t.permute(*dims).to(dtype)
            if x.data_ptr() == value.data_ptr():
                x = x.clone()  # never hand out the received bytes
            if scale == "unit":
                x.div_(255.0)
            else:
                x.div_(127.5).sub_(1.0)
            if channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            elif not channels_last:
                x = x.contiguous()
            t = x
        elif t.data_ptr() == value.data_ptr() and t.numel():
            t = t.clone()
        out[name] = t
    return out
