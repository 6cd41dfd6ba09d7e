"""``Feed``: a resumable iterable of batches over ``Client`` streams, the torch-free
core of ``editfeed.torch.EditFeedDataset``. Its position is a cursor plus the place
inside an unfinished iteration, so it checkpoints with ``state_dict()``.

An evaluation feed (spec ``mode = "eval"``) is a finite pass: an iteration ends after
the pass, and the next iteration starts a new pass from its first step.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ._pb import loader_pb2
from .batch import Batch
from .client import Client, make_request
from .spec import Cursor, SpecLike, is_eval


def env_rank_world_size(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``rank`` and ``world_size``, defaulting to ``$RANK`` and ``$WORLD_SIZE`` as
    torchrun sets them (0 and 1 when unset)."""
    try:
        r = int(os.environ.get("RANK", "0")) if rank is None else int(rank)
        w = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else int(world_size)
    except ValueError as e:
        raise ValueError(f"RANK and WORLD_SIZE must be integers: {e}") from e
    return r, w


class Feed:
    """A resumable iterable of ``Batch``: every iteration continues the stream from
    the cursor after the last batch yielded, and ``state_dict()`` /
    ``load_state_dict()`` checkpoint and restore that position.

    The arguments are those of ``Client.stream``; ``endpoints`` may also be a
    ``Client``. ``rank`` and ``world_size`` default to ``$RANK`` and ``$WORLD_SIZE``.
    ``max_batches`` limits each iteration (0 = until the curriculum ends).

    What is checked when the feed is made (ValueError, or EditFeedError for a
    malformed cursor): the arguments' types and ranges, the spec's keys, that the world
    size divides the global batch, that the rank is below the world size, and that
    the curriculum names known subsets. Nothing is sent then: channels open on the
    first iteration, and what only the daemon knows (the dataset name, whether the
    dataset has the subsets weighted, a cursor of another spec or dataset, the
    daemon's size limits) raises ``EditFeedError`` from the first ``next()``.

    Cursors do not depend on the rank, so a checkpoint taken on one rank resumes every
    rank (the world size may differ, as long as it divides the global batch).

    ``batches(worker, workers)`` streams one loader worker's share of the rank: the
    steps with ``(step - start) % workers == worker`` (see ``editfeed.torch``).
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
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.rank, self.world_size = env_rank_world_size(rank, world_size)
        self.dataset = dataset
        self._request = make_request(
            dataset,
            spec,
            rank=self.rank,
            world_size=self.world_size,
            cursor=cursor,
            size=size,
            height=height,
            encoded=encoded,
            augment=augment,
            max_batches=max_batches,
            seed=seed,
            global_batch=global_batch,
            buckets=buckets,
            fit=fit,
        )
        self.max_batches = int(max_batches)
        self.eval = is_eval(self._request.spec)
        if isinstance(endpoints, Client):
            self.client = endpoints
        else:
            self.client = Client(endpoints, **dict(client_options or {}))
        self._cursor: str | None = cursor or None
        self._step: int | None = None
        self._batches = 0
        # Where the next iteration starts: the rank's step after the last batch (with
        # workers, after the last iteration's steps).
        self._start = Cursor.parse(cursor).step if cursor else 0
        # Within an iteration: the share streamed, its end (exclusive) and the step of
        # this object's next batch.
        self._share: tuple[int, int] | None = None
        self._end: int | None = None
        self._next: int | None = None

    @property
    def cursor(self) -> str | None:
        """The cursor after the last batch yielded (where the next iteration starts)."""
        return self._cursor

    def batches(self, worker: int = 0, workers: int = 1) -> Iterator[Batch]:
        """Streams from the current position, updating it before each batch is yielded.

        With ``workers`` > 1, streams worker ``worker``'s share of this iteration: the
        steps start + worker, start + worker + workers, ..., each worker over its own
        connection (the daemon skips the other steps without computing them).
        Interleaved in worker order, the shares are exactly the batches of
        ``workers=1``. An iteration interrupted and resumed through ``state_dict()``
        / ``load_state_dict()`` (in the same worker of the same count) goes on where
        it stopped.
        """
        if workers < 1 or not 0 <= worker < workers:
            raise ValueError(f"worker {worker} is out of range for {workers} workers")
        share = (worker, workers)
        if self._share == share and self._next is not None:
            first, end = self._next, self._end  # resuming an iteration from its state
        else:
            start = self._start
            if self._share is not None and self._cursor:
                # A state of another share: resume the rank after its last batch.
                start = Cursor.parse(self._cursor).step
            first = start + worker
            end = start + self.max_batches if self.max_batches else None
        self._share, self._end, self._next = share, end, first
        request = loader_pb2.StreamRequest()
        request.CopyFrom(self._request)
        request.cursor = self._cursor or ""
        base = Cursor.parse(self._cursor).step if self._cursor else 0
        if first < base:
            raise ValueError(f"the feed's next step {first} is before its cursor's step {base}")
        request.step_stride = workers
        request.step_offset = first - base
        request.max_batches = 0
        if end is not None:
            count = max(0, -(-(end - first) // workers))
            if count == 0:
                self._finish(first, worker, workers)
                return
            request.max_batches = count
        stream = self.client.stream_request(request)
        try:
            for batch in stream:
                self._cursor = batch.cursor
                self._step = batch.step
                self._batches += 1
                self._next = batch.step + workers
                if workers == 1:
                    self._start = batch.step + 1
                yield batch
        except GeneratorExit:
            # Stopped by the caller: the next iteration starts after the last batch
            # this object yielded.
            if self._cursor:
                self._start = Cursor.parse(self._cursor).step
            self._share = self._end = self._next = None
            raise
        else:
            self._finish(self._next, worker, workers)
        finally:
            stream.close()

    def _finish(self, next_step: int, worker: int, workers: int) -> None:
        """Ends the iteration: the next one starts after this iteration's steps (its
        max_batches end, or past the curriculum's end: every share's next step is).
        In an evaluation feed the next iteration is a new pass (with ``max_batches``,
        its first batches again)."""
        if self.eval:
            self._start, self._cursor = 0, None
        else:
            self._start = self._end if self._end is not None else next_step - worker
        self._share = self._end = self._next = None

    def __iter__(self) -> Iterator[Batch]:
        return self.batches()

    def state_dict(self) -> dict[str, Any]:
        """``{"cursor": <cursor after the last batch yielded or None>, "step": <its
        step or None>, "batches": <batches yielded by this object>, "dataset": name}``
        plus the position inside an unfinished iteration (``start``, ``share``,
        ``end``, ``next``), so that a loader worker resumes its share exactly."""
        return {
            "cursor": self._cursor,
            "step": self._step,
            "batches": self._batches,
            "dataset": self.dataset,
            "start": self._start,
            "share": list(self._share) if self._share else None,
            "end": self._end,
            "next": self._next,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Makes the next iteration resume after the batch whose cursor ``state``
        holds (a ``state_dict()`` of this or another process; ``{"cursor": c}`` with
        the cursor of any batch resumes the rank after that batch). A state taken
        inside an iteration finishes that iteration first when loaded into the same
        worker share."""
        if not isinstance(state, Mapping) or "cursor" not in state:
            raise ValueError("load_state_dict: expected a dict with a 'cursor' key, as state_dict() returns")
        if state.get("dataset") not in (None, self.dataset):
            raise ValueError(
                f"load_state_dict: the state is for dataset {state['dataset']!r}, this feed streams {self.dataset!r}"
            )
        cursor = state["cursor"] or None
        step = Cursor.parse(cursor).step if cursor else 0
        self._cursor = cursor
        self._step = state.get("step")
        self._batches = int(state.get("batches") or 0)
        share = state.get("share")
        if share is not None and state.get("next") is not None:
            self._share = (int(share[0]), int(share[1]))
            self._next = int(state["next"])
            self._end = None if state.get("end") is None else int(state["end"])
            self._start = int(state.get("start", step))
        else:
            self._share = self._end = self._next = None
            self._start = int(state["start"]) if state.get("start") is not None else step
