"""The one exception type the client raises for server and connection failures."""

from __future__ import annotations


class EditFeedError(Exception):
    """A stream or call failed.

    Attributes:
        code: the gRPC status code name, e.g. ``"NOT_FOUND"``, ``"INVALID_ARGUMENT"`` or
            ``"UNAVAILABLE"`` (for errors the client detects itself, the code that the
            server would have used).
        message: the server's message (the status details), or the client's own.
        endpoint: the endpoint that reported it, or None when it concerns several.
    """

    def __init__(self, code: str, message: str, endpoint: str | None = None) -> None:
        self.code = code
        self.message = message
        self.endpoint = endpoint
        where = f" (from {endpoint})" if endpoint else ""
        super().__init__(f"{code}: {message}{where}")
