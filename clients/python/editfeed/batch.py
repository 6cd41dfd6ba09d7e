"""One received batch: numpy views on the message's tensor bytes plus per-sample metadata.

Tensors per subset (B = global batch / world size, uint8 HWC pixels):

- ``sft``: ``source``, ``target`` ``[B, H, W, 3]``;
- ``preference``: ``source``, ``chosen``, ``rejected`` ``[B, H, W, 3]``;
- ``multi_turn``: ``images`` ``[B, T+1, H, W, 3]`` and ``turn_counts`` int32 ``[B]``
  (in the steps view, ``source`` and ``target`` as for ``sft``);
- evaluation streams add ``valid`` uint8 ``[B]``: 0 for the padding rows of a pass's
  last batch (zero images, empty keys), 1 for samples (``Batch.valid``);
- encoded output: ``encoded`` uint8 ``[N]`` and ``encoded_offsets`` int64 ``[B, S+1]``
  (plus ``turn_counts`` for multi-turn).

The arrays are built with ``np.frombuffer`` over the tensors' data, so they are views
that keep those bytes alive. They are writable and private to the batch: writing into
one (normalising, masking) changes only that batch, never a buffer the daemon or a
later batch uses. Streams parse their messages with ``wire.parse_batch``, whose tensor
data are views of one copy of the received message, or copy-on-write maps of
shared-memory files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .digest import batch_digest
from .errors import EditFeedError

DTYPES: dict[str, np.dtype] = {
    "uint8": np.dtype("<u1"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
}
"""The wire dtypes and their little-endian numpy equivalents."""

METADATA_FIELDS = (
    "keys",
    "subsets",
    "edit_types",
    "categories",
    "texts",
    "short_texts",
    "turns",
    "turn_texts",
    "flipped",
    "ordinals",
    "epochs",
    "replaced_keys",
    "chain_turns",
)
"""The per-sample metadata lists of a batch, in the order of ``Batch`` attributes."""


def tensor_array(tensor: Any) -> np.ndarray:
    """A writable numpy view of a ``Tensor`` message's data, shaped as the message says
    (read-only data, such as a protobuf message's ``bytes``, are copied first).

    Raises EditFeedError(DATA_LOSS) when the dtype is unknown or the data length does
    not match the shape.
    """
    dtype = DTYPES.get(tensor.dtype)
    if dtype is None:
        raise EditFeedError(
            "DATA_LOSS",
            f"tensor {tensor.name!r} has dtype {tensor.dtype!r}; this client knows {', '.join(DTYPES)}",
        )
    shape = tuple(tensor.shape)
    data = tensor.data
    expected = dtype.itemsize
    for dim in shape:
        expected *= dim
    if expected != len(data):
        raise EditFeedError(
            "DATA_LOSS",
            f"tensor {tensor.name!r} of shape {list(shape)} and dtype {tensor.dtype} needs {expected} bytes, "
            f"the message holds {len(data)}",
        )
    if (dtype.itemsize > 1 and isinstance(data, memoryview)) or memoryview(data).readonly:
        # A view may start at any offset of the message; multi-byte tensors (turn
        # counts, offsets: a few bytes) get their own aligned copy.
        data = bytearray(data)
    return np.frombuffer(data, dtype=dtype).reshape(shape)


@dataclass(eq=False)
class Batch:
    """A batch of one rank at one global step.

    Attributes:
        step: the global step.
        rank, world_size: the rank this batch is for, out of world_size.
        subset: ``"sft"``, ``"preference"`` or ``"multi_turn"``.
        cursor: the cursor to resume after this batch.
        dataset_version: the content hash of the dataset that served it.
        tensors: tensor name -> numpy array (writable views private to this batch).
        keys, subsets, edit_types, categories: per-sample strings.
        texts, short_texts: the long and short instruction (after any direction swap).
        turns: per-sample turn counts (0 for single-turn samples).
        turn_texts: per-sample lists of per-turn instructions (padded with "" to T).
        flipped: whether each sample was mirrored.
        ordinals, epochs: each sample's canonical position in its subset, and its epoch.
        replaced_keys: the planned sample each one replaced ("" if none).
        chain_turns: in the multi-turn steps view, the turn of its chain each sample is
            (1-based; ``turns`` is then the chain's length); 0 otherwise.
        endpoint: the daemon that sent it.
        message: the message the arrays are views of: a ``wire.WireBatch`` for batches
            from a stream (``message.to_message()`` gives the protobuf ``Batch``), or
            the protobuf message given to ``from_message``.
    """

    step: int
    rank: int
    world_size: int
    subset: str
    cursor: str
    dataset_version: str
    tensors: dict[str, np.ndarray]
    keys: list[str]
    subsets: list[str]
    edit_types: list[str]
    categories: list[str]
    texts: list[str]
    short_texts: list[str]
    turns: list[int]
    turn_texts: list[list[str]]
    flipped: list[bool]
    ordinals: list[int]
    epochs: list[int]
    replaced_keys: list[str]
    chain_turns: list[int]
    endpoint: str = ""
    message: Any = field(default=None, repr=False)
    _digest: str | None = field(default=None, repr=False)

    @classmethod
    def from_message(cls, message: Any, endpoint: str = "") -> Batch:
        """Wraps a ``Batch`` message (protobuf or ``wire.WireBatch``) without copying its
        tensor bytes (a protobuf message copies each on access)."""
        samples = message.samples
        return cls(
            step=message.step,
            rank=message.rank,
            world_size=message.world_size,
            subset=message.subset,
            cursor=message.cursor,
            dataset_version=message.dataset_version,
            tensors={t.name: tensor_array(t) for t in message.tensors},
            keys=[s.key for s in samples],
            subsets=[s.subset for s in samples],
            edit_types=[s.edit_type for s in samples],
            categories=[s.category for s in samples],
            texts=[s.text for s in samples],
            short_texts=[s.summarized_text for s in samples],
            turns=[s.turns for s in samples],
            turn_texts=[list(s.turn_texts) for s in samples],
            flipped=[s.flipped for s in samples],
            ordinals=[s.ordinal for s in samples],
            epochs=[s.epoch for s in samples],
            replaced_keys=[s.replaced_key for s in samples],
            chain_turns=[s.chain_turn for s in samples],
            endpoint=endpoint,
            message=message,
        )

    def __len__(self) -> int:
        """The number of samples (B)."""
        return len(self.keys)

    @property
    def valid(self) -> np.ndarray:
        """A bool mask ``[B]``: False for the padding rows at the end of an evaluation
        pass (its batches carry a ``valid`` tensor), True everywhere otherwise."""
        mask = self.tensors.get("valid")
        if mask is None:
            return np.ones(len(self.keys), dtype=bool)
        return mask.astype(bool)

    def __getitem__(self, name: str) -> np.ndarray:
        """The tensor called ``name``."""
        try:
            return self.tensors[name]
        except KeyError:
            raise KeyError(f"batch of subset {self.subset!r} has no tensor {name!r} (has: {', '.join(self.tensors)})") from None

    def digest(self) -> str:
        """The batch digest of README "The batch hash" (what ``fetch --hash`` prints),
        computed from the message's current bytes and cached (take it before writing
        into the arrays in place)."""
        if self._digest is None:
            self._digest = batch_digest(self.message)
        return self._digest

    def metadata(self) -> dict[str, list[Any]]:
        """The per-sample metadata lists by name (see ``METADATA_FIELDS``)."""
        return {name: getattr(self, name) for name in METADATA_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        """Tensors by name, metadata lists by name, and ``step``, ``subset``,
        ``cursor``, ``rank``, ``world_size`` and ``dataset_version``."""
        out: dict[str, Any] = dict(self.tensors)
        out.update(self.metadata())
        out.update(
            step=self.step,
            subset=self.subset,
            cursor=self.cursor,
            rank=self.rank,
            world_size=self.world_size,
            dataset_version=self.dataset_version,
        )
        return out

    def encoded_images(self, sample: int) -> list[memoryview]:
        """For encoded output: the stored image bytes of one sample, slot by slot
        (source, then edits or turns), as zero-copy memoryviews."""
        if "encoded" not in self.tensors or "encoded_offsets" not in self.tensors:
            raise ValueError("this batch holds pixels, not encoded images (request encoded=True)")
        data = self.tensors["encoded"].data
        offsets = self.tensors["encoded_offsets"][sample]
        return [data[int(a) : int(b)] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
