"""Parsing a received ``Batch`` message without copying its tensor bytes.

protobuf's Python runtime copies a ``bytes`` field into a new ``bytes`` object on every
access, which for a batch of 512 px multi-turn samples is 38 MB copied (and paged in)
per batch on the trainer's CPU. ``parse_batch`` is the Loader stream's response
deserializer instead: it walks the message's top level by hand, keeps every
``Batch.tensors`` entry as a ``WireTensor`` whose ``data`` is a zero-copy memoryview of
the received buffer, and gives every other field (step, samples, cursor, ...) to
protobuf, re-serialised without the tensors (a few KB).

Field numbers are those of ``proto/editfeed/v1/loader.proto``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ._pb import loader_pb2

BATCH_TENSORS = 5
"""``Batch.tensors``."""
TENSOR_NAME, TENSOR_DTYPE, TENSOR_SHAPE, TENSOR_DATA = 1, 2, 3, 4
"""``Tensor.name``, ``Tensor.dtype``, ``Tensor.shape``, ``Tensor.data``."""

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class WireError(ValueError):
    """The message is not a well-formed ``Batch``; says what and at which byte."""


class WireTensor(NamedTuple):
    """One ``Tensor`` of a batch; ``data`` is a read-only view of the received bytes."""

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

    __slots__ = ("tensors", "_rest", "_raw")

    def __init__(self, tensors: list[WireTensor], rest: Any, raw: bytes) -> None:
        self.tensors = tensors
        self._rest = rest
        self._raw = raw

    def __getattr__(self, name: str) -> Any:
        if name in FIELDS:
            return getattr(self._rest, name)
        raise AttributeError(f"WireBatch has no attribute {name!r} (to_message() gives the protobuf Batch)")

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return parse_batch, (self._raw,)

    def SerializeToString(self) -> bytes:  # noqa: N802 - protobuf's name
        """The message as received."""
        return self._raw

    def to_message(self) -> Any:
        """The whole ``editfeed.v1.Batch`` protobuf message (copies the tensor bytes)."""
        return loader_pb2.Batch.FromString(self._raw)


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


def _tensor(buf: memoryview, start: int, end: int, index: int) -> WireTensor:
    what = f"Batch.tensors[{index}]"
    name = dtype = ""
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
        # Anything else is a field this client does not know: skipped.
    return WireTensor(name, dtype, tuple(shape), data)


def parse_batch(raw: bytes) -> WireBatch:
    """Parses a serialised ``editfeed.v1.Batch``; the tensors' data are views of `raw`."""
    buf = memoryview(raw).toreadonly()
    end = len(buf)
    tensors: list[WireTensor] = []
    rest = bytearray()
    pos = 0
    while pos < end:
        start = pos
        number, wire, at, pos = _field(buf, pos, end, "Batch")
        if number == BATCH_TENSORS and wire == _LEN:
            tensors.append(_tensor(buf, at, pos, len(tensors)))
        else:
            rest += buf[start:pos]
    return WireBatch(tensors, loader_pb2.Batch.FromString(bytes(rest)), raw)
