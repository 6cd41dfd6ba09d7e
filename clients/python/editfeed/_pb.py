"""Access to the generated ``editfeed.v1`` protobuf and gRPC modules.

The modules are generated from ``proto/editfeed/v1/*.proto`` when the package is built
(see ``setup.py``); running from a source checkout without building them gives the
ImportError below instead of a bare ``No module named 'editfeed.v1'``.
"""

from __future__ import annotations

try:
    from editfeed.v1 import admin_pb2, admin_pb2_grpc, dataset_pb2, loader_pb2, loader_pb2_grpc
except ImportError as e:  # pragma: no cover - only in an unbuilt source tree
    raise ImportError(
        "the generated editfeed.v1 stubs are missing: they are generated from "
        "proto/editfeed/v1/*.proto when the package is built, so install it with "
        "`pip install ./clients/python` rather than importing it from the source tree "
        f"({e})"
    ) from e

__all__ = ["admin_pb2", "admin_pb2_grpc", "dataset_pb2", "loader_pb2", "loader_pb2_grpc"]
