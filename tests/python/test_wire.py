"""wire.parse_batch against protobuf's own parser, on messages built here."""

from __future__ import annotations

import copy
import pickle
import re

import numpy as np
import pytest

import editfeed
from editfeed.batch import Batch
from editfeed.v1 import loader_pb2
from editfeed.wire import WireError, parse_batch


def make_batch() -> loader_pb2.Batch:
    rng = np.random.default_rng(3)
    b = loader_pb2.Batch(step=7, rank=1, world_size=2, subset="preference", cursor="ef1:8:a:b", dataset_version="v")
    for name in ("source", "chosen", "rejected"):
        b.tensors.add(name=name, dtype="uint8", shape=[2, 4, 5, 3], data=rng.integers(0, 256, 120, dtype=np.uint8).tobytes())
    b.tensors.add(name="turn_counts", dtype="int32", shape=[2], data=np.array([0, 3], "<i4").tobytes())
    for i in range(2):
        b.samples.add(key=f"k{i}", subset="preference", text="make it blue", turns=i, turn_texts=["a", ""][: i + 1], flipped=bool(i), ordinal=10 + i, epoch=1, replaced_key="")
    return b


def test_parse_matches_protobuf_and_gives_writable_tensors_of_one_copy() -> None:
    message = make_batch()
    raw = message.SerializeToString()
    wire = parse_batch(raw)
    for field in ("step", "rank", "world_size", "subset", "cursor", "dataset_version"):
        assert getattr(wire, field) == getattr(message, field), field
    assert list(wire.samples) == list(message.samples)
    assert [(t.name, t.dtype, t.shape) for t in wire.tensors] == [(t.name, t.dtype, tuple(t.shape)) for t in message.tensors]
    for got, want in zip(wire.tensors, message.tensors, strict=True):
        assert got.data == want.data
        # A writable view of one private copy of the received buffer.
        assert got.data.obj is wire.tensors[0].data.obj and not got.data.readonly
    assert wire.to_message() == message
    assert editfeed.batch_digest(wire) == editfeed.batch_digest(message)

    batch = Batch.from_message(wire)
    assert batch.tensors["chosen"].shape == (2, 4, 5, 3)
    assert batch.tensors["turn_counts"].tolist() == [0, 3]
    assert batch.tensors["source"].flags.writeable
    assert batch.keys == ["k0", "k1"] and batch.turn_texts == [["a"], ["a", ""]]
    # Multi-byte tensors sit at any offset of the message: they are copied, aligned.
    counts = batch.tensors["turn_counts"]
    assert counts.flags.aligned and counts.flags.writeable

    # The message as received, and nothing protobuf-like that would drop the tensors.
    assert wire.SerializeToString() == raw
    with pytest.raises(AttributeError, match="to_message"):
        wire.ByteSize()
    for clone in (copy.copy(wire), pickle.loads(pickle.dumps(wire))):
        assert clone.to_message() == message
    # A write changes that batch's bytes, never the received buffer.
    batch.tensors["source"][:] = 0
    assert raw == message.SerializeToString() and wire.SerializeToString() != raw


def test_unpacked_shapes_and_unknown_fields_are_read() -> None:
    # Tensor{name "x", dtype "uint8", shape 2 and 3 unpacked, data 6 bytes, field 9 varint}
    tensor = b"\x0a\x01x" + b"\x12\x05uint8" + b"\x18\x02\x18\x03" + b"\x22\x06abcdef" + b"\x48\x01"
    raw = b"\x08\x05" + b"\x2a" + bytes([len(tensor)]) + tensor + b"\x22\x03sft" + b"\x78\x01"
    wire = parse_batch(raw)
    assert wire.step == 5 and wire.subset == "sft"
    (t,) = wire.tensors
    assert (t.name, t.dtype, t.shape, bytes(t.data)) == ("x", "uint8", (2, 3), b"abcdef")


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (make_batch().SerializeToString()[:-1], "runs past the end"),
        (b"\x2a\x05\x0a\x09abc", "Batch.tensors[0]: field 1 runs past the end"),
        (b"\x08\xff\xff", "Batch: bad varint"),
        (b"\x0b", "wire type 3"),
    ],
)
def test_malformed_messages_are_refused_saying_where(raw: bytes, says: str) -> None:
    with pytest.raises(WireError, match=re.escape(says)):
        parse_batch(raw)
