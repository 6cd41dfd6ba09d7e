"""Parsing a received ``Batch`` message without copying its tensor bytes.

protobuf's Python runtime copies a ``bytes`` field into a new ``bytes`` object on every
access, which for a batch of 512 px multi-turn samples is 38 MB copied (and paged in)
per batch on the trainer's CPU. ``parse_batch`` is the Loader stream's response
deserializer instead: it walks the message's top level by hand, keeps every
``Batch.tensors`` entry as a ``WireTensor`` whose ``data`` is a zero-copy memoryview of
the received buffer, and gives every other field (step, samples, cursor, ...) to
protobuf, re-serialised without the tensors (a few KB).

Tensor data are writable and private to their batch, so a trainer may normalise or
mask a batch in place:

- A tensor in the message is a view of one writable copy of the received message
  (gRPC hands over an immutable ``bytes``; a ``bytearray`` given to ``parse_batch``,
  as unpickling gives, is used as it is). That copy costs about as much as gRPC's own
  copy into ``bytes``.
- A tensor the daemon sent as a file of the shared-memory folder (``Tensor.shm_file``,
  see ``Client(shm_dir=...)``) is a view of a copy-on-write map of that file
  (``MAP_PRIVATE``): a write goes to private pages of this process and never into the
  file. The file is given back to the daemon (renamed to ``<name>.free``) once the last
  array over it is gone; the daemon writes later batches into the files given back,
  and the maps are kept (``MAPPINGS``), so those pages are not faulted in again. Before
  a kept map serves a later batch, the pages this process wrote are dropped (found in
  ``/proc/self/pagemap``), so it shows the file's new bytes; where that cannot be read,
  the file is mapped afresh.

Field numbers are those of ``proto/editfeed/v1/loader.proto``.
"""

from __future__ import annotations

import mmap
import os
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np

from ._pb import loader_pb2

BATCH_TENSORS = 5
"""``Batch.tensors``."""
TENSOR_NAME, TENSOR_DTYPE, TENSOR_SHAPE, TENSOR_DATA, TENSOR_SHM_FILE = 1, 2, 3, 4, 5
"""``Tensor.name``, ``Tensor.dtype``, ``Tensor.shape``, ``Tensor.data``, ``Tensor.shm_file``."""
FREE_SUFFIX = ".free"
"""The suffix that gives a shared-memory file back to the daemon."""
_FILE_NAME = re.compile(r"^(?!\.)[A-Za-z0-9._-]{1,128}$")
_ITEMSIZE = {"uint8": 1, "int32": 4, "int64": 8}

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class WireError(ValueError):
    """The message is not a well-formed ``Batch``; says what and at which byte."""


class WireTensor(NamedTuple):
    """One ``Tensor`` of a batch; ``data`` is a writable view private to the batch."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    data: memoryview


FIELDS = frozenset(("step", "rank", "world_size", "subset", "samples", "cursor", "dataset_version"))
"""The ``Batch`` fields besides ``tensors`` that a ``WireBatch`` reads from protobuf."""


class WireBatch:
    """A ``Batch`` message whose tensors are ``WireTensor`` views: the other fields
    (``FIELDS``) read as on the protobuf message. For anything else (protobuf methods),
    ``to_message()`` gives the whole protobuf message."""

    __slots__ = ("tensors", "_rest", "_raw", "shm_files", "tensor_files")

    def __init__(
        self,
        tensors: list[WireTensor],
        rest: Any,
        raw: bytes,
        shm_files: list[str] | None = None,
        tensor_files: list[str] | None = None,
    ) -> None:
        self.tensors = tensors
        self._rest = rest
        self._raw = raw
        # The paths of the shared-memory files the tensors were mapped from.
        self.shm_files: list[str] = shm_files or []
        # Per tensor, the path of the file it was mapped from ("" for one in the message).
        self.tensor_files: list[str] = tensor_files or [""] * len(tensors)

    def __getattr__(self, name: str) -> Any:
        if name in FIELDS:
            return getattr(self._rest, name)
        raise AttributeError(f"WireBatch has no attribute {name!r} (to_message() gives the protobuf Batch)")

    def __reduce__(self) -> tuple[Any, tuple[bytearray]]:
        if not self.shm_files:
            return parse_batch, (self._raw,)
        return parse_batch, (bytearray(self.to_message().SerializeToString()),)

    def SerializeToString(self) -> bytes:  # noqa: N802 - protobuf's name
        """The message with the tensors' current bytes; tensors that came as
        shared-memory files are put back in it."""
        if not self.shm_files:
            return bytes(self._raw)
        return self.to_message().SerializeToString()

    def to_message(self) -> Any:
        """The whole ``editfeed.v1.Batch`` protobuf message (copies the tensor bytes)."""
        message = loader_pb2.Batch.FromString(bytes(self._raw))
        if self.shm_files:
            for tensor, wire in zip(message.tensors, self.tensors, strict=True):
                if tensor.shm_file:
                    tensor.data = bytes(wire.data)
                    tensor.shm_file = ""
        return message


def _varint(buf: memoryview, pos: int, end: int, what: str) -> tuple[int, int]:
    value = shift = 0
    while pos < end:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            break
    raise WireError(f"{what}: bad varint before byte {pos}")


def _field(buf: memoryview, pos: int, end: int, what: str) -> tuple[int, int, int, int]:
    """Reads one field at `pos`: returns (number, wire type, value start, next field).
    For a length-delimited field the value is buf[start:next]; for a varint, the
    varint's bytes."""
    key, pos = _varint(buf, pos, end, what)
    number, wire = key >> 3, key & 7
    if wire == _VARINT:
        _, after = _varint(buf, pos, end, what)
    elif wire == _LEN:
        length, pos = _varint(buf, pos, end, what)
        after = pos + length
    elif wire == _I64:
        after = pos + 8
    elif wire == _I32:
        after = pos + 4
    else:
        raise WireError(f"{what}: field {number} has wire type {wire}, which a Batch does not use")
    if after > end:
        raise WireError(f"{what}: field {number} runs past the end ({after} > {end})")
    return number, wire, pos, after


def _tensor(buf: memoryview, start: int, end: int, index: int, shm_dir: str | None) -> tuple[WireTensor, str]:
    """The tensor, and the path of the shared-memory file it came in ("" if none)."""
    what = f"Batch.tensors[{index}]"
    name = dtype = shm_file = ""
    shape: list[int] = []
    data = buf[start:start]
    pos = start
    while pos < end:
        number, wire, at, pos = _field(buf, pos, end, what)
        if number in (TENSOR_NAME, TENSOR_DTYPE) and wire == _LEN:
            try:
                text = str(buf[at:pos], "utf-8")
            except UnicodeDecodeError as e:
                raise WireError(f"{what}: field {number} is not UTF-8 ({e})") from None
            if number == TENSOR_NAME:
                name = text
            else:
                dtype = text
        elif number == TENSOR_SHAPE and wire == _LEN:  # packed
            while at < pos:
                dim, at = _varint(buf, at, pos, what + ".shape")
                shape.append(dim)
        elif number == TENSOR_SHAPE and wire == _VARINT:  # unpacked
            shape.append(_varint(buf, at, pos, what + ".shape")[0])
        elif number == TENSOR_DATA and wire == _LEN:
            data = buf[at:pos]
        elif number == TENSOR_SHM_FILE and wire == _LEN:
            shm_file = str(buf[at:pos], "utf-8", "replace")
        # Anything else is a field this client does not know: skipped.
    if shm_file:
        if shm_dir is None:
            raise WireError(f"{what} ({name!r}) is in shared-memory file {shm_file!r}, but this client has no shared-memory folder")
        data = _map_file(shm_dir, shm_file, name, dtype, shape)
        return WireTensor(name, dtype, tuple(shape), data), os.path.join(shm_dir, shm_file)
    return WireTensor(name, dtype, tuple(shape), data), ""


def _give_back(path: str) -> None:
    try:
        os.rename(path, path + FREE_SUFFIX)
    except OSError:
        pass  # the daemon removed it (its stream ended long ago): nothing to give back


def _written_pages(mapped: mmap.mmap, size: int) -> np.ndarray | None:
    """The indices of the pages of a copy-on-write map that this process wrote (its
    private copies), from ``/proc/self/pagemap``; None when that cannot be read."""
    page = mmap.PAGESIZE
    pages = (size + page - 1) // page
    address = np.frombuffer(mapped, dtype=np.uint8, count=1).__array_interface__["data"][0]
    try:
        fd = os.open("/proc/self/pagemap", os.O_RDONLY)
        try:
            raw = os.pread(fd, 8 * pages, address // page * 8)
        finally:
            os.close(fd)
    except OSError:
        return None
    if len(raw) != 8 * pages:
        return None
    entries = np.frombuffer(raw, dtype="<u8")
    present = (entries >> np.uint64(63)) & np.uint64(1)
    swapped = (entries >> np.uint64(62)) & np.uint64(1)
    file_page = (entries >> np.uint64(61)) & np.uint64(1)
    # A page still mapped from the file is shared with it; a present page that is not
    # (or one swapped out) is this process's own copy.
    return np.flatnonzero(((present == 1) & (file_page == 0)) | (swapped == 1))


def _drop_written_pages(mapped: mmap.mmap, size: int) -> bool:
    """Drops the private copies of pages written through a copy-on-write map, so that
    they read the file again; False when the written pages cannot be found."""
    written = _written_pages(mapped, size)
    if written is None or not hasattr(mmap, "MADV_DONTNEED"):
        return False
    page = mmap.PAGESIZE
    if len(written):
        # Runs of consecutive pages, one madvise each.
        breaks = np.flatnonzero(np.diff(written) != 1)
        starts = np.concatenate(([written[0]], written[breaks + 1]))
        ends = np.concatenate((written[breaks], [written[-1]])) + 1
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            length = min(end * page, size) - start * page
            mapped.madvise(mmap.MADV_DONTNEED, start * page, length)
    return True


class _Mappings:
    """Copy-on-write maps of shared-memory files, kept across batches: the daemon
    writes its stream's next batches into the same files, so their pages stay mapped
    here and are not faulted in again. At most ``MAX`` files (least recently used out);
    a file replaced under the same name (another inode) is mapped afresh, and so is one
    whose written pages cannot be dropped."""

    MAX = 64

    def __init__(self) -> None:
        self._maps: OrderedDict[str, tuple[tuple[int, int], mmap.mmap]] = OrderedDict()
        self._lock = threading.Lock()
        # Per file, what gives it back when this process's view of it is gone.
        self._give_backs: dict[str, weakref.finalize] = {}

    def view(self, path: str, size: int) -> memoryview:
        """A view of the file's `size` bytes; the file goes back to the daemon once the
        view and every array over it are gone."""
        fd = os.open(path, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            if st.st_size != size:
                raise WireError(f"shared-memory file {path} holds {st.st_size} bytes, the tensor's shape and dtype take {size}")
            ident = (st.st_dev, st.st_ino)
            with self._lock:
                cached = self._maps.get(path)
                if (
                    cached is not None
                    and cached[0] == ident
                    and len(cached[1]) == size
                    # No array over it is left (the file came back from the daemon).
                    and _drop_written_pages(cached[1], size)
                ):
                    mapped = cached[1]
                    self._maps.move_to_end(path)
                else:
                    mapped = mmap.mmap(fd, size, access=mmap.ACCESS_COPY)
                    self._maps[path] = (ident, mapped)
                    while len(self._maps) > self.MAX:
                        self._maps.popitem(last=False)
        finally:
            os.close(fd)
        # One owner per batch: when it goes, so has every array over it.
        owner = np.frombuffer(mapped, dtype=np.uint8)
        with self._lock:
            self._give_backs[path] = weakref.finalize(owner, self._given_back, path)
        return memoryview(owner)

    def _given_back(self, path: str) -> None:
        with self._lock:
            self._give_backs.pop(path, None)
        _give_back(path)

    def hand_over(self, path: str) -> None:
        """Leaves the giving back of a file this process mapped to another process, which
        maps the file itself (a DataLoader's main process, for a batch one of its workers
        received): this process's view no longer gives it back when it goes."""
        with self._lock:
            finalizer = self._give_backs.pop(path, None)
        if finalizer is not None:
            finalizer.detach()

    def forget(self, paths: Iterable[str]) -> None:
        """Drops the maps of files a stream that ended used."""
        with self._lock:
            for path in paths:
                self._maps.pop(path, None)


MAPPINGS = _Mappings()
"""The process's maps of shared-memory files."""


def _map_file(shm_dir: str, file: str, name: str, dtype: str, shape: list[int]) -> memoryview:
    """Maps a tensor's shared-memory file copy-on-write (see ``_Mappings``)."""
    if not _FILE_NAME.match(file):
        raise WireError(f"tensor {name!r}: {file!r} is not a file name")
    path = os.path.join(shm_dir, file)
    want = _ITEMSIZE.get(dtype, 1)
    for dim in shape:
        want *= dim
    if want == 0:
        _give_back(path)
        return memoryview(b"")
    try:
        return MAPPINGS.view(path, want)
    except OSError as e:
        raise WireError(f"tensor {name!r}: shared-memory file {path}: {e.strerror}") from None
    except WireError as e:
        raise WireError(f"tensor {name!r}: {e}") from None


def parse_batch(raw: bytes | bytearray, shm_dir: str | None = None) -> WireBatch:
    """Parses a serialised ``editfeed.v1.Batch``; the tensors' data are writable views
    of a copy of `raw` (of `raw` itself when it is a writable buffer), or of the
    copy-on-write map of the file in `shm_dir` for a tensor the daemon sent as one."""
    if memoryview(raw).readonly:
        raw = bytearray(raw)
    buf = memoryview(raw)
    end = len(buf)
    tensors: list[WireTensor] = []
    rest = bytearray()
    pos = 0
    files: list[str] = []
    tensor_files: list[str] = []
    while pos < end:
        start = pos
        number, wire, at, pos = _field(buf, pos, end, "Batch")
        if number == BATCH_TENSORS and wire == _LEN:
            tensor, file = _tensor(buf, at, pos, len(tensors), shm_dir)
            if file:
                files.append(file)
            tensor_files.append(file)
            tensors.append(tensor)
        else:
            rest += buf[start:pos]
    return WireBatch(tensors, loader_pb2.Batch.FromString(bytes(rest)), raw, files, tensor_files)
