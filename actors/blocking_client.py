"""`BlockingRef`: call an `RpcServer` from one thread over one DEALER, with no thread of its own.

The wire, errors and retries of `RemoteRef` (actors/rpc_client.py) for a process that makes a
few calls and exits, such as a CLI command: nothing to start or join, and it imports neither
Pykka nor asyncio nor the server.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

import zmq

from actors.jsonrpc import MAX_MESSAGE_BYTES, BadMessage, encode_request, parse_reply
from actors.rpc_errors import MessageTooLarge, PeerDown, RemoteError, RpcClosed, RpcTimeout
from actors.zmq_dealer import HANDSHAKE_FAILURES, close_dealer, connect_dealer, next_event

if TYPE_CHECKING:
    import logging
    from types import TracebackType

    from actors.curve import CurveClientConfig

__all__ = ["BlockingRef"]

LOGGER = "actors.remote"
"""The logger of what is worth a line (as `RemoteRef`'s); imported only when there is one."""

_NOT_SENT_POLL_MS = 100
"""While a request waits for a connection, look again this often (the monitor also wakes us)."""


class BlockingRef:
    """A client for an `RpcServer` for one thread: blocking `call`, `alive`, `close`.

    Calls wait for a connection rather than failing, up to their deadline. A call with no
    reply by its deadline raises `RpcTimeout`; methods in `idempotent` are then sent again,
    with the same id, up to `retries` more times. A connection lost while a call is in flight
    sends an idempotent call again once it is back, and fails any other with `PeerDown`.
    `wait_up(seconds)` waits for the connection and says whether it came; `down_reason` says
    why not, and `refused` whether a handshake was refused (e.g. a CURVE key the server does
    not accept), which ends the wait at once.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        idempotent: Collection[str] = (),
        curve: CurveClientConfig | None = None,
        heartbeat: float = 1.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        if timeout <= 0 or retries < 0:
            raise ValueError(f"need timeout > 0 and retries >= 0, not {timeout} and {retries}")
        self.endpoint = endpoint
        self.timeout = timeout
        self.retries = retries
        self.idempotent = frozenset(idempotent)
        self.max_message_bytes = max_message_bytes
        self._sock, self._monitor = connect_dealer(endpoint, heartbeat, curve)
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        self._up: bool | None = None  # None until the first connection attempt resolves
        self._refused = False  # the last news was a refused handshake
        self._drops = 0  # connections lost so far
        self._retried = False  # a connection attempt failed (and is being retried)
        self.down_reason = "not connected yet"
        self._ids = itertools.count(1)
        self._closed = False

    @property
    def alive(self) -> bool:
        """Whether the peer is connected (as far as the monitor has said so far)."""
        if not self._closed:
            self._read_events()
        return self._up is True

    @property
    def refused(self) -> bool:
        """Whether a handshake was refused since the last connection (or ever, if none)."""
        return self._refused

    def wait_up(self, timeout: float, until_refused: bool = False) -> bool:
        """Wait at most `timeout` seconds for the connection; False at once if a handshake is
        refused (`down_reason` says how), or, with `until_refused`, once a connection attempt
        fails: for a local ipc:// socket that means nothing listens there (no file, or one
        left by a server that died), not that it is slow to answer."""
        deadline = time.monotonic() + timeout
        while not self._closed:
            self._read_events()
            if self._up:
                return True
            if self._refused or (until_refused and self._retried):
                return False
            wait = deadline - time.monotonic()
            if wait <= 0:
                return False
            self._monitor.poll(max(1, int(wait * 1000)))
        return False

    def call(
        self, method: str, params: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """Call `method` and wait for its result; raises RemoteError, RpcTimeout or RpcClosed."""
        if self._closed:
            raise RpcClosed(f"BlockingRef to {self.endpoint} is closed")
        if timeout is None:
            timeout = self.timeout
        elif timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        id = next(self._ids)
        body = encode_request(id, method, {} if params is None else dict(params))
        if len(body) > self.max_message_bytes:
            raise MessageTooLarge(len(body), self.max_message_bytes, method)
        retry = method in self.idempotent
        attempts = 1
        deadline = time.monotonic() + timeout
        sent_on: int | None = None  # the connection (by drops before it) the request went on
        while True:
            self._read_events()
            if sent_on is not None and self._drops != sent_on:  # lost with its connection
                if not retry:
                    raise self._error(PeerDown, method, timeout, attempts, lost=True)
                sent_on = None  # sent again once connected
            if sent_on is None and self._up:
                try:
                    self._sock.send(body, zmq.NOBLOCK)
                    sent_on = self._drops
                except zmq.Again:  # not connected after all (IMMEDIATE): wait for it
                    pass
            wait = deadline - time.monotonic()
            if wait <= 0:
                if retry and attempts <= self.retries:
                    attempts += 1
                    deadline = time.monotonic() + timeout
                    sent_on = None
                    _log().info("%s: retrying %s (id %d)", self.endpoint, method, id)
                    continue
                raise self._error(RpcTimeout, method, timeout, attempts)
            wait_ms = max(1, int(wait * 1000) + 1)
            if sent_on is None:
                wait_ms = min(wait_ms, _NOT_SENT_POLL_MS)
            ready = dict(self._poller.poll(wait_ms))
            if self._sock in ready:
                found, result = self._read_reply(id, method)
                if found:
                    return result

    def close(self, timeout: float = 0.0) -> None:
        """Close the connection at once, dropping anything unsent. Idempotent. (`timeout` is
        there for callers of `RemoteRef.close`: nothing here takes time.)"""
        if self._closed:
            return
        self._closed = True
        self._up = False  # (down_reason still says why it was down, if it was)
        close_dealer(self._sock, self._monitor)

    def __enter__(self) -> BlockingRef:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _read_reply(self, id: int, method: str) -> tuple[bool, Any]:
        """Read replies off the socket: (True, result) once one answers call `id` (its error
        raised), (False, None) if none does yet. Replies to other ids (late ones to calls
        that timed out before) are dropped."""
        while True:
            try:
                body = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return False, None
            try:
                reply = parse_reply(body)
            except BadMessage as error:
                _log().debug("%s: unreadable reply dropped: %s", self.endpoint, error.message)
                continue
            if reply.id != id:
                _log().debug("%s: reply to unknown or expired id %r", self.endpoint, reply.id)
            elif reply.error is None:
                return True, reply.result
            else:
                code, message, data = reply.error
                raise RemoteError(code, message, data, method)

    def _read_events(self) -> None:
        """Take in the monitor's news: connected, lost, retrying, or a refused handshake."""
        while (kind := next_event(self._monitor)) is not None:
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._up, self._refused = True, False
            elif kind == zmq.EVENT_CONNECT_RETRIED:
                self._retried = True
                if self._up is None:
                    self._down(f"cannot connect to {self.endpoint}; retrying")
            elif kind == zmq.EVENT_DISCONNECTED:
                if self._up is not False:
                    self._down(f"disconnected from {self.endpoint}")
            else:
                detail = HANDSHAKE_FAILURES.get(kind, "no detail")
                self._down(f"handshake with {self.endpoint} failed: {detail}")
                self._refused = True

    def _down(self, reason: str) -> None:
        self._drops += self._up is True
        self._up = False
        self.down_reason = reason

    def _error(
        self,
        kind: type[RpcTimeout],
        method: str,
        timeout: float,
        attempts: int,
        lost: bool = False,
    ) -> RpcTimeout:
        """The error of a call that will get no reply, with RemoteRef's words for why."""
        if lost:
            reason = f"peer down: {self.down_reason}; it may or may not have taken effect"
        else:
            reason = "" if self._up else f"peer down: {self.down_reason}"
        return kind(method, self.endpoint, timeout, attempts, reason)


def _log() -> logging.Logger:
    import logging

    return logging.getLogger(LOGGER)
