"""A follower's Group API calls sent on to the leader, whose answer (or error) comes back as
it was. The call runs on the server thread that took it (JSON-RPC handlers return their
result), so at most `slots` forwarded calls wait at once: the server's other threads stay free
for what this manager answers itself (`Manager.*`, the built-ins)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol

from actors.blocking_client import BlockingRef
from actors.curve import CurveClientConfig
from actors.rpc_errors import RemoteError, RpcClosed, RpcError, RpcTimeout
from infrakit.wire.common import NOT_LEADER, PLUGIN_ERROR


class Forward(Protocol):
    """Sends one call (method, params) on to `location` (by default the leader) and returns
    its result; raises `RpcError` with that manager's error, or one saying why the call could
    not reach it."""

    def __call__(self, method: str, params: dict[str, Any], location: str | None = None) -> Any: ...


CONNECT_TIMEOUT = 3.0
"""How long a forwarded call waits for a connection to the leader before saying it does not
answer (a leader that just died: the client may try again once another leads)."""


MAX_PEERS = 8
"""Managers whose idle connections are kept at once (in shared mode, each group's owner)."""


class Forwarder:
    """Forwards calls to where `leader()` says the leader is, over `curve(location)` when that
    is not None. `waiting()` is the sentence for "no leader is known" (it names what this
    manager waits for); `own()` the endpoints this manager serves, never forwarded to."""

    def __init__(
        self,
        leader: Callable[[], str | None],
        waiting: Callable[[], str],
        own: Callable[[], Collection[str]],
        curve: Callable[[str], CurveClientConfig | None] = lambda _location: None,
        idempotent: Collection[str] = (),
        *,
        slots: int = 4,
        timeout: float = 35.0,
    ) -> None:
        self._leader = leader
        self._waiting = waiting
        self._own = own
        self._curve = curve
        self._idempotent = frozenset(idempotent)
        self._slots = threading.BoundedSemaphore(slots)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._idle: dict[str, list[BlockingRef]] = {}
        self._closed = False

    def __call__(self, method: str, params: Mapping[str, Any], location: str | None = None) -> Any:
        """Send the call to `location` (where a refusal said the call belongs: a group's
        owner in shared mode), else to the leader."""
        location = location or self._leader()
        if not location:
            raise RpcError(NOT_LEADER, self._waiting(), {"Leader": None})
        if location in self._own():  # a leader that advertises what we serve: no loop
            raise RpcError(
                NOT_LEADER, f"not the leader; the leader is at {location}", {"Leader": location}
            )
        if not self._slots.acquire(blocking=False):
            raise RpcError(
                PLUGIN_ERROR,
                f"too many calls are waiting on the leader at {location}; try again",
            )
        try:
            return self._call(location, method, dict(params))
        finally:
            self._slots.release()

    def close(self) -> None:
        """Close every idle connection; calls made after this fail as the leader not
        answering."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for refs in idle.values():
            for ref in refs:
                ref.close()

    def _call(self, location: str, method: str, params: dict[str, Any]) -> Any:
        ref = self._take(location)
        kept = False
        try:
            # A refused connection (nothing listens: a leader that just died) fails at once.
            if not ref.alive and not ref.wait_up(CONNECT_TIMEOUT, until_refused=True):
                raise RpcError(
                    PLUGIN_ERROR,
                    f"the leader at {location} does not answer ({ref.down_reason}); this"
                    " manager follows it",
                )
            try:
                result = ref.call(method, params)
            except RemoteError as error:  # the leader's own answer: unchanged
                kept = True
                raise RpcError(error.code, error.message, error.data) from None
            except (RpcTimeout, RpcClosed) as error:
                raise RpcError(
                    PLUGIN_ERROR, f"the leader at {location} does not answer: {error}"
                ) from None
            kept = True
            return result
        finally:
            if kept:
                self._give_back(location, ref)
            else:
                ref.close()

    def _take(self, location: str) -> BlockingRef:
        with self._lock:
            others = [k for k in self._idle if k != location]
            while len(others) >= MAX_PEERS:  # a leader that moved, or too many owners
                for ref in self._idle.pop(others.pop(0)):
                    ref.close()
            idle = self._idle.get(location)
            if idle:
                return idle.pop()
        return BlockingRef(
            location,
            timeout=self._timeout,
            retries=0,
            idempotent=self._idempotent,
            curve=self._curve(location),
        )

    def _give_back(self, location: str, ref: BlockingRef) -> None:
        with self._lock:
            if not self._closed:
                self._idle.setdefault(location, []).append(ref)
                return
        ref.close()
