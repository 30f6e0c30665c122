"""`RemoteRef`: call an `RpcServer` from any number of threads over one DEALER connection.

Replies are matched to calls by id. Every call has a deadline; only idempotent methods are
retried. ZMTP heartbeats and a socket monitor tell it when the peer goes away or comes back.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from actors.curve import CurveClientConfig
from actors.jsonrpc import BadMessage, encode_request, parse_reply
from actors.rpc_errors import PeerDown, RemoteError, RpcClosed, RpcTimeout
from actors.zmq_io import BATCH, Wakeup, logger, set_heartbeat

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["RemoteRef"]


class _Call:
    """One call as the client's I/O thread sees it; a notification expects no reply.

    The caller waits either on `future` (call_async) or, cheaper, on `waiter`, a lock that
    the I/O thread releases once `result` or `error` is set (call).
    """

    __slots__ = (
        "attempts",
        "body",
        "deadline",
        "done",
        "error",
        "future",
        "id",
        "method",
        "notification",
        "result",
        "sent",
        "timeout",
        "waiter",
    )

    def __init__(self, id: int, method: str, body: bytes, timeout: float) -> None:
        self.id = id
        self.method = method
        self.body = body
        self.timeout = timeout
        self.notification = False
        self.future: Future[Any] | None = None
        self.waiter: threading.Lock | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.deadline = 0.0
        self.attempts = 0
        self.sent = False
        self.done = False

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        """Complete the call (on the I/O thread), once; later completions are ignored."""
        if self.done:
            return
        self.done = True
        future = self.future
        if future is not None:
            if future.done():  # cancelled by the caller: nobody waits
                return
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
        elif self.waiter is not None:
            self.result, self.error = result, error
            self.waiter.release()


_MONITOR_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


class RemoteRef:
    """A client for an `RpcServer`: blocking `call`, `call_async`, `notify`; thread-safe.

    One DEALER connection carries every call; each is matched to its reply by id. Calls wait
    for a connection rather than failing (requests are only queued to a connected peer, so
    a call that timed out is never delivered later). A call with no reply by its deadline
    raises `RpcTimeout`; methods in `idempotent` are then sent again, with the same id, up to
    `retries` more times (a late reply to an earlier attempt completes the call). When the
    connection drops, calls in flight on it can never be answered: idempotent ones are sent
    again once it is back, the others fail at once with `PeerDown` (a kind of `RpcTimeout`).

    `alive` says whether the connection is up (handshake done, heartbeats answered).
    `on_up(reason)` runs on each connection (the first included); `on_down(reason)` when
    it is lost, or when connecting or the CURVE handshake fails. Both run on the I/O thread
    and must be quick.
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
        on_down: Callable[[str], None] | None = None,
        on_up: Callable[[str], None] | None = None,
        name: str = "remote",
    ) -> None:
        if timeout <= 0 or retries < 0:
            raise ValueError(f"need timeout > 0 and retries >= 0, not {timeout} and {retries}")
        self.endpoint = endpoint
        self.timeout = timeout
        self.retries = retries
        self.idempotent = frozenset(idempotent)
        self._on_down = on_down
        self._on_up = on_up
        self._state: bool | None = None  # None until the first connection attempt resolves
        self._down_reason = "not connected yet"
        self._ids = itertools.count(1)
        self._outbox: collections.deque[_Call] = collections.deque()
        self._closed = False
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        sock = context.socket(zmq.DEALER)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.RECONNECT_IVL, 100)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
            set_heartbeat(sock, heartbeat)
            if curve is not None:
                sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.public_key)
                sock.setsockopt(zmq.CURVE_SECRETKEY, curve.secret_key)
                sock.setsockopt(zmq.CURVE_SERVERKEY, curve.server_key)
            monitor = sock.get_monitor_socket(_MONITOR_EVENTS)
            sock.connect(endpoint)
        except BaseException:
            sock.close(linger=0)
            raise
        self._wakeup = Wakeup()
        # The sockets move to the I/O thread; Thread.start() is the memory barrier zmq needs.
        self._thread = threading.Thread(
            target=self._run, args=(sock, monitor), name=f"{name}-io", daemon=True
        )
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the peer is connected and answering heartbeats."""
        return self._state is True

    def call(
        self, method: str, params: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """Call `method` and wait for its result; raises RemoteError, RpcTimeout or RpcClosed."""
        call = self._new_call(method, params, timeout)
        waiter = call.waiter = threading.Lock()
        waiter.acquire()
        self._submit(call)
        attempts = 1 + (self.retries if method in self.idempotent else 0)
        # The I/O thread enforces the deadline; this bound only guards against its death.
        if not waiter.acquire(timeout=call.timeout * attempts + 5.0):
            raise RpcTimeout(method, self.endpoint, call.timeout, attempts, "I/O thread stuck")
        if call.error is not None:
            raise call.error
        return call.result

    def call_async(
        self, method: str, params: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> Future[Any]:
        """Start a call; the future gets the result or the exception `call` would raise.

        Cancelling the future only stops the wait: the request may already be out.
        """
        call = self._new_call(method, params, timeout)
        future: Future[Any] = Future()
        call.future = future
        self._submit(call)
        return future

    def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        """Send a notification (no reply); dropped if not connected within the timeout."""
        body = encode_request(None, method, {} if params is None else dict(params), True)
        call = _Call(0, method, body, self.timeout)
        call.notification = True
        self._submit(call)

    def close(self, timeout: float = 5.0) -> None:
        """Close the connection; pending calls fail with `RpcClosed`. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._wakeup.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._wakeup.close()

    def __enter__(self) -> RemoteRef:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _new_call(
        self, method: str, params: Mapping[str, Any] | None, timeout: float | None
    ) -> _Call:
        if params is None:
            params = {}
        elif type(params) is not dict:
            params = dict(params)
        if timeout is None:
            timeout = self.timeout
        elif timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        id = next(self._ids)
        return _Call(id, method, encode_request(id, method, params), timeout)

    def _submit(self, call: _Call) -> None:
        if self._closed:
            raise RpcClosed(f"RemoteRef to {self.endpoint} is closed")
        self._outbox.append(call)
        self._wakeup.set()

    # -- I/O thread ------------------------------------------------------------------

    def _run(self, sock: zmq.Socket[bytes], monitor: zmq.Socket[bytes]) -> None:
        pending: dict[int, _Call] = {}
        deadlines: list[tuple[float, int, _Call]] = []
        backlog: collections.deque[_Call] = collections.deque()
        sequence = itertools.count()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        poller.register(self._wakeup.fd, zmq.POLLIN)
        want_out = False
        try:
            while True:
                wait_ms = None
                if deadlines:
                    wait_ms = max(0, int((deadlines[0][0] - time.monotonic()) * 1000) + 1)
                try:
                    ready = dict(poller.poll(wait_ms))
                    if self._wakeup.fd in ready:
                        self._wakeup.clear()
                    if self._closed:
                        break
                    now = time.monotonic()
                    outbox = self._outbox
                    while outbox:
                        call = outbox.popleft()
                        call.deadline = now + call.timeout
                        call.attempts = 1
                        heapq.heappush(deadlines, (call.deadline, next(sequence), call))
                        if not call.notification:
                            pending[call.id] = call
                        backlog.append(call)
                    if monitor in ready:
                        self._watch(monitor, pending, backlog)
                    if sock in ready:
                        self._receive(sock, pending)
                    self._flush(sock, backlog)
                    self._expire(deadlines, pending, backlog, sequence)
                    if bool(backlog) != want_out:
                        want_out = bool(backlog)
                        poller.modify(sock, zmq.POLLIN | (zmq.POLLOUT if want_out else 0))
                except zmq.ContextTerminated:
                    logger.error("%s: zmq context terminated under the client", self.endpoint)
                    return
                except Exception as error:  # never let the loop die
                    logger.warning("%s: I/O loop error: %r", self.endpoint, error)
        finally:
            closed = RpcClosed(f"RemoteRef to {self.endpoint} is closed")
            for call in [*pending.values(), *self._outbox]:
                call.finish(error=closed)
            with contextlib.suppress(zmq.ZMQError):
                sock.disable_monitor()
            monitor.close(linger=0)
            sock.close(linger=0)

    def _flush(self, sock: zmq.Socket[bytes], backlog: collections.deque[_Call]) -> None:
        while backlog:
            call = backlog[0]
            if not call.done:
                try:
                    sock.send(call.body, zmq.NOBLOCK)
                except zmq.Again:  # not connected (IMMEDIATE) or queue full: wait for POLLOUT
                    return
                call.sent = True
                if call.notification:
                    call.done = True
            backlog.popleft()

    def _receive(self, sock: zmq.Socket[bytes], pending: dict[int, _Call]) -> None:
        for _ in range(BATCH):
            try:
                body = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                reply = parse_reply(body)
            except BadMessage as error:
                logger.debug("%s: unreadable reply dropped: %s", self.endpoint, error.message)
                continue
            call = pending.pop(reply.id, None) if isinstance(reply.id, int) else None
            if call is None:
                logger.debug("%s: reply to unknown or expired id %r", self.endpoint, reply.id)
            elif reply.error is None:
                call.finish(reply.result)
            else:
                code, message, data = reply.error
                call.finish(error=RemoteError(code, message, data, call.method))

    def _expire(
        self,
        deadlines: list[tuple[float, int, _Call]],
        pending: dict[int, _Call],
        backlog: collections.deque[_Call],
        sequence: itertools.count[int],
    ) -> None:
        now = time.monotonic()
        while deadlines and deadlines[0][0] <= now:
            deadline, _, call = heapq.heappop(deadlines)
            if call.done or deadline != call.deadline:
                continue
            if call.notification:  # never sent
                call.done = True
                logger.debug("%s: notification %s dropped", self.endpoint, call.method)
                continue
            if call.method in self.idempotent and call.attempts <= self.retries:
                call.attempts += 1
                call.deadline = now + call.timeout
                heapq.heappush(deadlines, (call.deadline, next(sequence), call))
                if call.sent:  # else it never went out (not connected) and keeps its place
                    call.sent = False
                    backlog.append(call)
                logger.info("%s: retrying %s (id %d)", self.endpoint, call.method, call.id)
                continue
            pending.pop(call.id, None)
            reason = "" if self._state else f"peer down: {self._down_reason}"
            error = RpcTimeout(call.method, self.endpoint, call.timeout, call.attempts, reason)
            call.finish(error=error)

    def _watch(
        self,
        monitor: zmq.Socket[bytes],
        pending: dict[int, _Call],
        backlog: collections.deque[_Call],
    ) -> None:
        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            kind = event["event"]
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._set_state(True, f"connected to {self.endpoint}")
            elif kind == zmq.EVENT_DISCONNECTED:
                self._set_state(False, f"disconnected from {self.endpoint}")
                self._orphaned(pending, backlog)
            elif kind == zmq.EVENT_CONNECT_RETRIED:
                if self._state is None:
                    self._set_state(False, f"cannot connect to {self.endpoint}; retrying")
            else:
                if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                    detail = "authentication refused"
                elif kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                    detail = "protocol error"
                else:
                    detail = "no detail"

                self._set_state(False, f"handshake with {self.endpoint} failed: {detail}")

    def _orphaned(self, pending: dict[int, _Call], backlog: collections.deque[_Call]) -> None:
        """Calls sent on a lost connection will never be answered: resend the idempotent
        ones when the peer is back; fail the others now (`PeerDown`), not at their deadline."""
        for call in list(pending.values()):
            if not call.sent:
                continue
            call.sent = False
            if call.method in self.idempotent:
                backlog.append(call)
                continue
            pending.pop(call.id, None)
            call.finish(
                error=PeerDown(
                    call.method,
                    self.endpoint,
                    call.timeout,
                    call.attempts,
                    f"peer down: {self._down_reason}; it may or may not have taken effect",
                )
            )

    def _set_state(self, up: bool, reason: str) -> None:
        if self._state is up:
            return
        self._state = up
        if not up:
            self._down_reason = reason
        logger.info("%s: %s", self.endpoint, reason)
        callback = self._on_up if up else self._on_down
        if callback is not None:
            try:
                callback(reason)
            except Exception:
                logger.exception("%s: %s callback failed", self.endpoint, "up" if up else "down")
