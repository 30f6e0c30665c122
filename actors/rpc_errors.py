"""The errors of the JSON-RPC transport (`actors.remote`) and the codes it puts on the wire."""

from __future__ import annotations

from typing import Any

__all__ = [
    "ACTOR_NOT_RUNNING",
    "ACTOR_TIMEOUT",
    "APPLICATION_ERROR",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "AddressInUse",
    "MessageTooLarge",
    "PeerDown",
    "RemoteError",
    "RpcClosed",
    "RpcError",
    "RpcTimeout",
]

PARSE_ERROR = -32700
"""The message is not UTF-8 JSON (the reply's id is null)."""
INVALID_REQUEST = -32600
"""The JSON is not a JSON-RPC 2.0 request object."""
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
"""The server failed outside the handler, e.g. the result is not JSON-serialisable."""
APPLICATION_ERROR = -32000
"""A handler raised an exception other than `RpcError`; data is {"type": class name}."""
ACTOR_NOT_RUNNING = -32001
"""`serve_actor`: the served actor has stopped."""
ACTOR_TIMEOUT = -32002
"""`serve_actor`: the served actor did not answer in time."""


class RpcError(Exception):
    """A JSON-RPC error: raise it in a handler to send exactly this code, message and data.

    Application codes belong in -32000..-32099 (see the constants of this module).
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(code, message, data)
        self.code = code
        self.message = message
        self.data = data

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})"


class RemoteError(RpcError):
    """The error reply of a remote call, raised by `RemoteRef.call` with the server's message."""

    def __init__(self, code: int, message: str, data: Any, method: str) -> None:
        super().__init__(code, message, data)
        self.args = (code, message, data, method)
        self.method = method

    def __str__(self) -> str:
        return f"{self.method}: {self.message} (code {self.code})"


class MessageTooLarge(RemoteError):
    """A request larger than the server takes, refused by `RemoteRef` before it is sent, with
    the error the server would answer (INVALID_REQUEST, "message too large (N bytes; at most
    M)"), so callers handle both alike."""

    def __init__(self, size: int, limit: int, method: str) -> None:
        message = too_large_message(size, limit)
        super().__init__(INVALID_REQUEST, message, {"Size": size, "Limit": limit}, method)
        self.size = size
        self.limit = limit


def too_large_message(size: int, limit: int) -> str:
    """The words of the error for a message of `size` bytes over `limit`."""
    return f"message too large ({size} bytes; at most {limit})"


class RpcTimeout(TimeoutError):
    """A remote call got no reply in time (after all its attempts, for an idempotent method)."""

    def __init__(
        self, method: str, endpoint: str, seconds: float, attempts: int = 1, reason: str = ""
    ) -> None:
        self.method = method
        self.endpoint = endpoint
        self.seconds = seconds
        self.attempts = attempts
        self.reason = reason
        super().__init__(self._describe())  # one argument, so OSError leaves it alone

    def _describe(self) -> str:
        text = f"{self.method} to {self.endpoint} timed out after {self.seconds:g}s"
        if self.attempts > 1:
            text += f" (each of {self.attempts} attempts)"
        if self.reason:
            text += f"; {self.reason}"
        return text

    def __str__(self) -> str:
        return self._describe()


class PeerDown(RpcTimeout):
    """The connection was lost while the call was in flight: no reply will ever come, and the
    call may or may not have taken effect. (A kind of timeout: callers treat both alike.)"""


class RpcClosed(RuntimeError):
    """The `RemoteRef` was closed before (or while) the call was made."""


class AddressInUse(OSError):
    """An `RpcServer` cannot bind its endpoint because something live already holds it."""

    def __init__(self, endpoint: str, detail: str = "") -> None:
        self.endpoint = endpoint
        self.detail = detail
        super().__init__(self._describe())  # one argument, so OSError leaves it alone

    def _describe(self) -> str:
        text = f"address in use: {self.endpoint}"
        return f"{text} ({self.detail})" if self.detail else text

    def __str__(self) -> str:
        return self._describe()
