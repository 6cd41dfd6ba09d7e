"""editfeed: the trainer-side client of the editfeed daemon.

- ``Client(endpoints)``: ``stream(dataset, spec, rank, world_size, ...)`` yields
  ``Batch`` objects (numpy views on the received bytes plus metadata and the cursor to
  resume after each), failing over across endpoints at the last cursor;
  ``describe()`` lists the datasets served.
- ``Feed``: a resumable iterable with ``state_dict()`` / ``load_state_dict()``.
- ``batch_digest(message)``: the digest ``editfeed fetch --hash`` prints.
- ``EditFeedError``: server and connection failures, with the gRPC code name.
- ``editfeed.torch.EditFeedDataset``: the PyTorch ``IterableDataset`` (imports torch).

The wire messages are ``editfeed.v1.loader_pb2`` and ``editfeed.v1.dataset_pb2``,
generated from the proto files when the package is built.
"""

from __future__ import annotations

from .batch import DTYPES, METADATA_FIELDS, Batch, tensor_array
from .client import (
    DEFAULT_CHANNEL_OPTIONS,
    BatchStream,
    Client,
    is_retryable,
    make_request,
)
from .feed import Feed, env_rank_world_size
from .digest import DIGEST_TAG, batch_digest
from .errors import EditFeedError
from .spec import Cursor, augment_message, load_spec, output_message, spec_from_mapping, spec_from_toml

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_CHANNEL_OPTIONS",
    "DIGEST_TAG",
    "DTYPES",
    "METADATA_FIELDS",
    "Batch",
    "BatchStream",
    "Client",
    "Cursor",
    "EditFeedError",
    "Feed",
    "augment_message",
    "batch_digest",
    "env_rank_world_size",
    "is_retryable",
    "load_spec",
    "make_request",
    "output_message",
    "spec_from_mapping",
    "spec_from_toml",
    "tensor_array",
]
