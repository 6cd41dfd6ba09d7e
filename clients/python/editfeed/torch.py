"""PyTorch integration: ``EditFeedDataset``, an ``IterableDataset`` over an editfeed
stream whose position is part of the training checkpoint.

This is the only module of the package that imports torch; ``import editfeed`` works
without it.

Use it with ``DataLoader(ds, batch_size=None, num_workers=0)``: the daemon already
batches, decodes and augments in parallel, so DataLoader batching and worker processes
would only add copies (and workers would each stream the same batches, while
``state_dict()`` of the main process's object would not move). Under torchrun, ``rank``
and ``world_size`` default to ``$RANK`` and ``$WORLD_SIZE``.

Each item is a dict: the batch's tensors as torch tensors sharing memory with the
received message (``torch.from_numpy``, no copy; images are uint8 HWC, e.g.
``source`` ``[B, H, W, 3]``, so permute to CHW on the device, e.g.
``x.to(device).permute(0, 3, 1, 2).float() / 255``), the per-sample metadata lists
(``keys``, ``texts``, ``short_texts``, ``turns``, ``turn_texts``, ...), and ``step``,
``subset``, ``cursor``, ``rank``, ``world_size``, ``dataset_version`` (and ``digest``
when asked for). The tensors are writable and private to their batch: writing in
place (normalising, masking) changes that batch only, never a buffer the daemon or a
later batch uses.

Checkpointing::

    ds = EditFeedDataset(["10.0.0.1:50051", "10.0.0.2:50051"], "pico", spec, size=512)
    for batch in DataLoader(ds, batch_size=None, num_workers=0):
        ...
        if step % 1000 == 0:
            torch.save({"model": model.state_dict(), "data": ds.state_dict()}, path)

    ds.load_state_dict(torch.load(path)["data"])   # the next iteration resumes exactly
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import IterableDataset

from .batch import Batch
from .client import Client, Feed
from .spec import SpecLike


def _as_tensor(array: Any) -> Any:
    # Batch arrays are writable and private to their batch, so torch has nothing to
    # warn about.
    return torch.from_numpy(array)


def batch_to_torch(batch: Batch, with_digest: bool = False) -> dict[str, Any]:
    """A ``Batch`` as a dict of torch tensors (zero copy) plus its metadata."""
    out = batch.to_dict()
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
        size, height, encoded, augment, buckets: the output, as for ``Client.stream``.
        max_batches: batches per iteration (0 = until the curriculum ends).
        with_digest: add each batch's ``digest`` (sha256 over all its bytes; costs
            time at large sizes).
        client_options: keyword arguments of ``editfeed.Client``.

    Every iteration continues after the last batch yielded. ``state_dict()`` returns
    ``{"cursor": ..., "step": ..., "batches": ..., "dataset": ...}``;
    ``load_state_dict()`` makes the next iteration resume after that batch.
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
            max_batches=max_batches,
            client_options=client_options,
        )
        self.with_digest = with_digest

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
        get_worker_info = getattr(torch.utils.data, "get_worker_info", None)
        info = get_worker_info() if get_worker_info is not None else None
        if info is not None:
            raise RuntimeError(
                "EditFeedDataset must be loaded with DataLoader(num_workers=0, batch_size=None): "
                "the daemon already works in parallel, every worker would stream the same batches, "
                "and state_dict() could not follow the workers' position"
            )
        for batch in self.feed.batches():
            yield batch_to_torch(batch, with_digest=self.with_digest)

    def state_dict(self) -> dict[str, Any]:
        """The position after the last batch yielded: ``{"cursor": ..., ...}``."""
        return self.feed.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Makes the next iteration resume after the batch ``state`` was taken at."""
        self.feed.load_state_dict(state)
