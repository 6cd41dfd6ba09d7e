"""The gRPC client of the editfeed Loader service: streams with failover across daemons,
and Describe. ``editfeed.feed.Feed`` builds the resumable iterable on it.

Failover: a stream that loses its daemon (UNAVAILABLE, or CANCELLED/UNKNOWN/INTERNAL
caused by a dead connection such as "Socket closed" or "Connection reset", or
RESOURCE_EXHAUSTED when a daemon is at its stream limit) is reopened on the next
endpoint, round robin, at the cursor of the last batch received, so the batches go on
with identical bytes. Attempts are bounded (``max_attempts`` consecutive failures
without a batch in between) with an exponential backoff. Errors that are the request's
fault (INVALID_ARGUMENT, NOT_FOUND, OUT_OF_RANGE, DATA_LOSS, ...) are not retried: they
raise ``EditFeedError`` with the server's code and message.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grpc

from ._pb import dataset_pb2, loader_pb2, loader_pb2_grpc
from .batch import Batch
from .wire import MAPPINGS, parse_batch
from .errors import EditFeedError
from .spec import Cursor, SpecLike, augment_message, is_eval, load_spec, output_message

_INHERITED: list[Any] = []
"""gRPC objects a forked process inherited and no longer uses. Freeing them in the
child can crash it (gRPC's objects do not survive a fork), so they are kept here until
the process exits."""


def keep_inherited(obj: Any) -> None:
    """Keeps an inherited gRPC object alive for the life of this (forked) process."""
    if obj is not None:
        _INHERITED.append(obj)


STREAM_METHOD = "/editfeed.v1.Loader/Stream"
"""The full gRPC method name of Loader.Stream."""

DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    # Batches are tens to hundreds of MB: accept messages of any size (the daemon
    # refuses requests whose batches would exceed its max_batch_bytes up front).
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", 64 << 20),
    # Generous HTTP/2 flow-control windows (BDP probing stays on and may grow them)
    # and the largest frames HTTP/2 allows, so big batches arrive in few frames.
    ("grpc.http2.lookahead_bytes", 64 << 20),
    ("grpc.http2.max_frame_size", (1 << 24) - 1),
    # Notice a silent dead peer (a host that vanished without a TCP reset).
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # Retries and failover are this client's job, with cursors.
    ("grpc.enable_retries", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    # One subchannel per channel, so a dead daemon's state is not shared.
    ("grpc.use_local_subchannel_pool", 1),
)
"""The gRPC channel options every endpoint gets (``channel_options`` adds to them)."""

_DEAD_PEER = re.compile(
    r"socket closed|connection reset|broken pipe|connection refused|connection aborted|"
    r"end of tcp stream|goaway|stream removed|rst_stream|failed to connect|transport closed|"
    r"transport is closing|keepalive|unexpected eof|connection closed|network is unreachable|"
    r"no route to host|fd shutdown|endpoint closing",
    re.IGNORECASE,
)


def is_retryable(code: grpc.StatusCode, details: str) -> bool:
    """Whether a failed call should move to the next endpoint.

    UNAVAILABLE always; RESOURCE_EXHAUSTED when a daemon is full (not a message over
    this client's size limit); CANCELLED, UNKNOWN, INTERNAL and DEADLINE_EXCEEDED only
    when the details show a lost connection. Everything else is the request's fault.
    """
    if code == grpc.StatusCode.UNAVAILABLE:
        return True
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return "larger than max" not in details
    if code in (
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    ):
        return bool(_DEAD_PEER.search(details))
    return False


def normalize_endpoint(endpoint: str) -> tuple[str, bool]:
    """``(target, secure)`` for ``host:port``, ``http://host:port`` or
    ``https://host:port`` (TLS with the system roots)."""
    text = endpoint.strip()
    secure = False
    if text.startswith("https://"):
        text, secure = text[len("https://") :], True
    elif text.startswith("http://"):
        text = text[len("http://") :]
    text = text.rstrip("/")
    if not text:
        raise ValueError(f"endpoint {endpoint!r} names no host")
    return text, secure


def make_request(
    dataset: str,
    spec: SpecLike,
    rank: int = 0,
    world_size: int = 1,
    cursor: str | None = None,
    size: int = 256,
    height: int | None = None,
    encoded: bool = False,
    augment: Mapping[str, Any] | Any | None = None,
    max_batches: int = 0,
    *,
    seed: int | None = None,
    global_batch: int | None = None,
    buckets: Sequence[tuple[int, int]] | None = None,
    fit: str | None = None,
) -> loader_pb2.StreamRequest:
    """The ``StreamRequest`` that ``Client.stream`` sends (see there for arguments).

    Checks here, before anything is sent (see ``check_request``): the argument types
    and ranges, the spec's keys and the curriculum's subset names, that the world size
    divides the global batch and that the rank is in range, and that a cursor is an
    editfeed cursor. Raises ValueError or TypeError for malformed arguments, and
    EditFeedError(INVALID_ARGUMENT) for a cursor that is not an editfeed cursor.
    """
    if not isinstance(dataset, str) or not dataset:
        raise ValueError("dataset: expected the registered name of a dataset")
    if cursor:
        Cursor.parse(cursor)
    if int(max_batches) < 0:
        raise ValueError(f"max_batches: {max_batches} must be 0 (no limit) or positive")
    stream_spec = load_spec(spec, seed=seed, global_batch=global_batch)
    aug = augment_message(augment)
    if is_eval(stream_spec) and aug.ListFields() and [f.name for f, _ in aug.ListFields()] != ["jpeg_dct_scaling"]:
        raise ValueError(
            "augment: an eval stream (spec mode 'eval') is not augmented; leave augment out and choose the resize with fit="
        )
    request = loader_pb2.StreamRequest(
        dataset=dataset,
        spec=stream_spec,
        rank=int(rank),
        world_size=int(world_size),
        cursor=cursor or "",
        output=output_message(size=size, height=height, encoded=encoded, buckets=buckets, fit=fit),
        augment=aug,
        max_batches=int(max_batches),
    )
    check_request(request)
    return request


SUBSET_NAMES = frozenset({"sft", "single_turn", "single-turn", "preference", "dpo", "multi_turn", "multi-turn"})
"""The subset names a curriculum may weight (the daemon's names and their aliases)."""


def check_request(request: loader_pb2.StreamRequest) -> None:
    """Raises ValueError for what the daemon would refuse and the client can see alone:
    a global batch of 0, a world size of 0 or one that does not divide the global batch,
    a rank out of range, and a curriculum weighting an unknown subset. (What needs the
    dataset, such as a subset the dataset lacks or a cursor of another spec, the daemon
    checks when the stream opens.)"""
    spec = request.spec
    if spec.global_batch == 0:
        raise ValueError("global_batch: must be positive (give it in the spec or as global_batch=)")
    if request.world_size == 0:
        raise ValueError("world_size: must be positive")
    if spec.global_batch % request.world_size:
        raise ValueError(
            f"world_size: {request.world_size} does not divide the global batch {spec.global_batch} "
            f"(each rank gets global_batch / world_size samples)"
        )
    if request.rank >= request.world_size:
        raise ValueError(f"rank: {request.rank} is out of range for world_size {request.world_size}")
    for index, phase in enumerate(spec.curriculum):
        for name in phase.weights:
            if name not in SUBSET_NAMES:
                known = ", ".join(sorted(SUBSET_NAMES))
                raise ValueError(f"curriculum[{index}].weights: unknown subset {name!r} (known: {known})")


class Client:
    """A client of one or more editfeed daemons serving the same datasets.

    ``endpoints`` is a list of ``host:port`` / ``http://host:port`` strings, or one
    string (several separated by commas).
    Channels are opened lazily and shared by every stream of the client; the client is
    thread-safe. Use it as a context manager, or call ``close()``.

    ``https://`` endpoints use TLS, trusting ``root_certificates`` (PEM bytes: the
    daemon's CA) or, when None, the system's roots.

    ``max_attempts`` bounds consecutive failed attempts without a batch in between
    (default ``max(3, 2 * len(endpoints))``); ``backoff`` is the first pause between
    attempts in seconds, doubling up to ``max_backoff``.

    ``shm_dir`` is a shared-memory folder (a tmpfs) that a daemon on this host may also
    see (its ``shm_dir``): default ``$EDITFEED_SHM_DIR``, else ``/dev/shm`` when it
    exists; ``""`` turns this off. Each stream checks with a probe file whether its
    daemon sees the folder; if so, the daemon writes the pixel tensors there and the
    batch's arrays are copy-on-write maps of those files (no copy through gRPC), which go
    back to the daemon once the arrays are gone. Otherwise they come in the messages.
    The arrays hold the same bytes either way.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        max_attempts: int | None = None,
        backoff: float = 0.1,
        max_backoff: float = 2.0,
        channel_options: Sequence[tuple[str, Any]] = (),
        root_certificates: bytes | None = None,
        shm_dir: str | None = None,
    ) -> None:
        if isinstance(endpoints, str):
            endpoints = [e for e in endpoints.split(",") if e.strip()]
        self.endpoints: list[str] = [str(e).strip() for e in endpoints]
        if not self.endpoints:
            raise ValueError("endpoints: at least one endpoint is required")
        self._targets = {e: normalize_endpoint(e) for e in self.endpoints}
        self.max_attempts = int(max_attempts) if max_attempts else max(3, 2 * len(self.endpoints))
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be positive")
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self._options = list(DEFAULT_CHANNEL_OPTIONS) + list(channel_options)
        self._root_certificates = root_certificates
        if shm_dir is None:
            shm_dir = os.environ.get("EDITFEED_SHM_DIR")
            if shm_dir is None:
                shm_dir = "/dev/shm" if os.path.isdir("/dev/shm") else ""
        self.shm_dir: str | None = shm_dir or None
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs: dict[str, loader_pb2_grpc.LoaderStub] = {}
        self._streams: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Client({self.endpoints!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        # Channels cannot cross processes; a copy reopens them lazily.
        state = self.__dict__.copy()
        state.update(_channels={}, _stubs={}, _streams={}, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def reopened(self) -> Client:
        """A client with the same settings and none of this one's channels (for a
        forked process, such as a DataLoader worker: gRPC channels do not survive a
        fork)."""
        copy = Client.__new__(Client)
        copy.__setstate__(self.__getstate__())
        return copy

    def close(self) -> None:
        """Closes every channel (open streams end with CANCELLED)."""
        with self._lock:
            channels = list(self._channels.values())
            self._channels.clear()
            self._stubs.clear()
            self._streams.clear()
        for channel in channels:
            channel.close()

    def stub(self, endpoint: str) -> loader_pb2_grpc.LoaderStub:
        """The Loader stub of one endpoint, opening its channel on first use."""
        return self._open(endpoint)[0]

    def stream_method(self, endpoint: str) -> Any:
        """Loader.Stream of one endpoint, its responses parsed by ``wire.parse_batch``
        (``WireBatch`` messages whose tensor bytes are views of the received buffer)."""
        return self._open(endpoint)[1]

    def _open(self, endpoint: str) -> tuple[loader_pb2_grpc.LoaderStub, Any]:
        with self._lock:
            stub = self._stubs.get(endpoint)
            if stub is None:
                target, secure = self._targets.get(endpoint) or normalize_endpoint(endpoint)
                if secure:
                    credentials = grpc.ssl_channel_credentials(root_certificates=self._root_certificates)
                    channel = grpc.secure_channel(target, credentials, options=self._options)
                else:
                    channel = grpc.insecure_channel(target, options=self._options)
                self._channels[endpoint] = channel
                stub = self._stubs[endpoint] = loader_pb2_grpc.LoaderStub(channel)
                # Loader.Stream again, with the zero-copy deserializer of wire.py.
                self._streams[endpoint] = channel.unary_stream(
                    STREAM_METHOD,
                    request_serializer=loader_pb2.StreamRequest.SerializeToString,
                    response_deserializer=functools.partial(parse_batch, shm_dir=self.shm_dir),
                )
            return stub, self._streams[endpoint]

    def describe(self, timeout: float = 10.0) -> dataset_pb2.DescribeResponse:
        """The datasets served (names, versions, subsets with counts), from the first
        endpoint that answers."""
        failures: dict[str, str] = {}
        for endpoint in self.endpoints:
            try:
                return self.stub(endpoint).Describe(dataset_pb2.DescribeRequest(), timeout=timeout)
            except grpc.RpcError as e:
                code, details = e.code(), e.details() or ""
                if not is_retryable(code, details):
                    raise EditFeedError(code.name, details, endpoint) from None
                failures[endpoint] = f"{code.name}: {details}"
        raise EditFeedError("UNAVAILABLE", "no endpoint answered Describe: " + _list_failures(self.endpoints, failures))

    def stream(
        self,
        dataset: str,
        spec: SpecLike,
        rank: int = 0,
        world_size: int = 1,
        cursor: str | None = None,
        size: int = 256,
        height: int | None = None,
        encoded: bool = False,
        augment: Mapping[str, Any] | Any | None = None,
        max_batches: int = 0,
        *,
        seed: int | None = None,
        global_batch: int | None = None,
        buckets: Sequence[tuple[int, int]] | None = None,
        fit: str | None = None,
    ) -> BatchStream:
        """Streams the batches of one rank; returns an iterator of ``Batch``.

        Args:
            dataset: a dataset name the daemons serve.
            spec: a dict mirroring ``StreamSpec`` (see ``editfeed.spec``), a
                ``StreamSpec`` message, or the path of a curriculum TOML file; ``seed``
                and ``global_batch`` fill in what the spec lacks.
            rank, world_size: this trainer's rank out of world_size; the world size
                must divide the global batch.
            cursor: resume after the batch that carried this cursor (None = step 0).
            size, height: output width, and height (default square).
            encoded: send the stored image bytes instead of pixels.
            augment: a dict (see ``editfeed.spec.augment_message``) or an ``Augment``.
            max_batches: stop after this many batches (0 = until the curriculum ends).
            buckets: aspect-ratio buckets as (width, height) pairs.
            fit: how whole images meet the output without a random crop:
                "stretch", "center_crop" (the eval default) or "letterbox".

        The request is checked here (``make_request``: world size, rank, subset names,
        cursor syntax), raising ValueError. Nothing is sent until the first ``next()``;
        server refusals (a foreign cursor, an unknown dataset, a subset the dataset
        lacks, a batch over the daemon's limits, ...) raise ``EditFeedError`` from it,
        before any batch.
        """
        request = make_request(
            dataset,
            spec,
            rank=rank,
            world_size=world_size,
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
        return BatchStream(self, request)

    def stream_request(self, request: loader_pb2.StreamRequest) -> BatchStream:
        """Streams a prepared ``StreamRequest`` (see ``make_request``)."""
        return BatchStream(self, request)


def _list_failures(endpoints: Sequence[str], failures: Mapping[str, str]) -> str:
    return "; ".join(f"{e}: {failures.get(e, 'not tried')}" for e in endpoints)


class BatchStream(Iterator[Batch]):
    """The batches of one stream, across failovers.

    Attributes:
        cursor: the cursor to resume after the last batch returned (the request's
            cursor before the first).
        received: the number of batches returned.
        endpoint: the endpoint currently streaming (or last tried).
        failovers: (endpoint, reason) of every failed attempt that was retried.
    """

    def __init__(self, client: Client, request: loader_pb2.StreamRequest) -> None:
        self._client = client
        self._request = request
        self._max = request.max_batches
        self._stride = max(1, request.step_stride)
        self.cursor: str | None = request.cursor or None
        self.received = 0
        self.endpoint = client.endpoints[0]
        self.failovers: list[tuple[str, str]] = []
        self._index = 0
        self._call: Any = None
        self._done = False
        self._failures = 0
        self._errors: dict[str, str] = {}
        self._last_step: int | None = None
        self._dataset_version: str | None = None
        self._resumed = False
        self._probe: str | None = None
        self._shm_files: set[str] = set()
        self._pid = os.getpid()

    def _inherited(self) -> bool:
        """True in a process forked from the one that opened the stream (a DataLoader
        worker that inherited a half-read iterator): its gRPC call and probe file
        belong to the parent, and touching the call aborts the child, so they are
        dropped without being cancelled (the call kept alive: ``keep_inherited``)."""
        if getattr(self, "_pid", None) == os.getpid():
            return False
        keep_inherited(getattr(self, "_call", None))
        self._call = None
        self._probe = None
        return True

    def __iter__(self) -> BatchStream:
        return self

    def __enter__(self) -> BatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if self._inherited():
            return
        if getattr(self, "_probe", None) is not None:
            self._drop_probe()
        call = getattr(self, "_call", None)
        if call is not None:
            try:
                call.cancel()
            except Exception:  # noqa: BLE001 - interpreter shutdown may have torn grpc down
                pass

    def close(self) -> None:
        """Stops the stream; the daemon drops its queued work for it."""
        self._done = True
        if self._inherited():
            self._shm_files.clear()
            return
        self._drop_probe()
        self._forget_files()
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def _make_probe(self) -> str:
        """Creates the probe file that shows a daemon on this host that it shares the
        shared-memory folder; returns its name ("" when there is no folder to share)."""
        self._drop_probe()
        shm_dir = self._client.shm_dir
        if not shm_dir:
            return ""
        name = f"editfeed-probe-{secrets.token_hex(8)}"
        path = os.path.join(shm_dir, name)
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except OSError:
            return ""  # not writable here: the batches come in the messages
        self._probe = path
        return name

    def _forget_files(self) -> None:
        """Drops the maps of the shared-memory files this stream's daemon wrote (it
        removes them when the stream ends); arrays still in use keep theirs."""
        if self._shm_files:
            MAPPINGS.forget(self._shm_files)
            self._shm_files.clear()

    def _drop_probe(self) -> None:
        """Removes the probe (the daemon removes it itself when it shares the folder)."""
        if self._probe is not None:
            try:
                os.unlink(self._probe)
            except OSError:
                pass
            self._probe = None

    def _open(self) -> None:
        request = loader_pb2.StreamRequest()
        request.CopyFrom(self._request)
        request.cursor = self.cursor or ""
        if self.received:
            # The cursor resumes the rank after the last batch received; a strided
            # stream's next batch is a stride after that batch.
            request.step_offset = self._stride - 1
        if self._max:
            request.max_batches = self._max - self.received
        request.shm_probe = self._make_probe()
        self.endpoint = self._client.endpoints[self._index]
        self._call = self._client.stream_method(self.endpoint)(request, wait_for_ready=False)

    def __next__(self) -> Batch:
        while True:
            if self._done:
                raise StopIteration
            if self._max and self.received >= self._max:
                self.close()
                raise StopIteration
            if self._call is None:
                self._open()
            try:
                message = next(self._call)
            except StopIteration:
                self._call = None
                self._done = True
                self._drop_probe()
                self._forget_files()
                raise
            except grpc.RpcError as e:
                self._drop_probe()
                self._forget_files()
                self._failed(e)
                continue
            self._drop_probe()
            return self._accept(message)

    def _accept(self, message: Any) -> Batch:
        if self._resumed and self._last_step is not None and message.step != self._last_step + self._stride:
            self.close()
            raise EditFeedError(
                "DATA_LOSS",
                f"after failing over, the stream resumed at step {message.step} "
                f"instead of {self._last_step + self._stride}",
                self.endpoint,
            )
        if self._dataset_version is not None and message.dataset_version != self._dataset_version:
            self.close()
            raise EditFeedError(
                "DATA_LOSS",
                f"dataset version changed mid-stream from {self._dataset_version} to {message.dataset_version}",
                self.endpoint,
            )
        batch = Batch.from_message(message, self.endpoint)
        self._shm_files.update(getattr(message, "shm_files", ()))
        self._dataset_version = message.dataset_version
        self._last_step = message.step
        self._resumed = False
        self._failures = 0
        self._errors.clear()
        self.received += 1
        self.cursor = message.cursor
        return batch

    def _failed(self, error: grpc.RpcError) -> None:
        code: grpc.StatusCode = error.code()
        details = error.details() or ""
        self._call = None
        if not is_retryable(code, details):
            self._done = True
            raise EditFeedError(code.name, details, self.endpoint) from None
        reason = f"{code.name}: {details}"
        self._errors[self.endpoint] = reason
        self._failures += 1
        if self._failures >= self._client.max_attempts:
            self._done = True
            where = f"resuming at cursor {self.cursor}" if self.cursor else "starting the stream"
            codes = {r.split(":", 1)[0] for r in self._errors.values()}
            raise EditFeedError(
                codes.pop() if len(codes) == 1 else "UNAVAILABLE",
                f"no endpoint could serve the stream after {self._failures} attempts ({where}): "
                + _list_failures(self._client.endpoints, self._errors),
            ) from None
        self.failovers.append((self.endpoint, reason))
        self._index = (self._index + 1) % len(self._client.endpoints)
        self._resumed = True
        delay = min(self._client.max_backoff, self._client.backoff * 2 ** (self._failures - 1))
        time.sleep(delay)
