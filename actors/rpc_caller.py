"""Who sent the call a handler is answering, as the server authenticated them. Kept apart from
the server so that a client (which imports the handlers' module beside its own) does not load
the server to ask it."""

from __future__ import annotations

import contextvars

__all__ = ["authenticated_user", "caller"]

caller: contextvars.ContextVar[str | None] = contextvars.ContextVar("rpc_caller", default=None)
"""Set by `RpcServer` around each handler it runs (None when it authenticates nobody)."""


def authenticated_user() -> str | None:
    """The name of the client's CURVE public key file (`alice` for `alice.key`) for the call
    being answered, or None when the transport authenticates nobody (ipc://, HTTP, CURVE
    without a keys directory). A handler keeps its one-argument signature and asks this."""
    return caller.get()
