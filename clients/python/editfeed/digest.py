"""The batch digest that ``editfeed fetch --hash`` prints, over a raw ``Batch`` message.

sha256 over, in order (integers little endian, every string and byte string preceded by
its length as u64): the tag ``editfeed-batch-v1``; the subset name; per tensor in
message order its name, dtype, the number of dimensions (u64) and each dimension (u64),
then its data; per sample in message order its key, subset, edit type, category, text,
summarized text, turns (u64), the number of turn texts (u64) and each turn text,
flipped (one byte), ordinal (u64), epoch (u64) and replaced key. Step, rank, world size
and cursor are left out, so a batch hashes the same whichever daemon served it. This is
the algorithm of ``src/transport/wire.rs`` in the daemon.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

DIGEST_TAG = b"editfeed-batch-v1"

_U64 = struct.Struct("<Q")


def batch_digest(batch: Any) -> str:
    """The digest of a batch as 64 lowercase hex digits.

    ``batch`` is an ``editfeed.v1.loader_pb2.Batch`` message, or an ``editfeed.Batch``
    (whose message is hashed).
    """
    message = getattr(batch, "message", batch)
    h = hashlib.sha256()
    update = h.update
    pack = _U64.pack

    def text(value: str) -> None:
        """Hashes a string as its UTF-8 length (u64) and bytes."""
        raw = value.encode("utf-8")
        update(pack(len(raw)))
        update(raw)

    text(DIGEST_TAG.decode())
    text(message.subset)
    for tensor in message.tensors:
        text(tensor.name)
        text(tensor.dtype)
        update(pack(len(tensor.shape)))
        for dim in tensor.shape:
            update(pack(dim))
        data = tensor.data
        update(pack(len(data)))
        update(data)
    for s in message.samples:
        for value in (s.key, s.subset, s.edit_type, s.category, s.text, s.summarized_text):
            text(value)
        update(pack(s.turns))
        update(pack(len(s.turn_texts)))
        for turn in s.turn_texts:
            text(turn)
        update(b"\x01" if s.flipped else b"\x00")
        update(pack(s.ordinal))
        update(pack(s.epoch))
        text(s.replaced_key)
    return h.hexdigest()
