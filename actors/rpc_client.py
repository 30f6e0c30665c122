"""`RemoteRef`: call an `RpcServer` from any number of threads over one DEALER connection.

Replies are matched to calls by id. Every call has a deadline; only idempotent methods are
retried. ZMTP heartbeats and a socket monitor tell it when the peer goes away or comes back.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, cast

import zmq

from actors.curve import CurveClientConfig
from actors.jsonrpc import MAX_MESSAGE_BYTES, BadMessage, Reply, encode_request, parse_reply
from actors.rpc_errors import MessageTooLarge, PeerDown, RemoteError, RpcClosed, RpcTimeout
from actors.zmq_dealer import HANDSHAKE_FAILURES, close_dealer, connect_dealer, next_event
from actors.zmq_io import BATCH, Wakeup, logger

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
        "blind",
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
        self.blind = False  # sent after a drop, before the new connection was known
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


class _Deadlines:
    """Calls in flight, soonest deadline first, with O(1) add and remove.

    Calls with the same timeout fall due in the order they were sent, so one ordered dict per
    timeout value keeps them sorted (a handful of values in practice). A heap could not drop a
    call when its reply came, and would hold every finished call until its deadline passed.
    """

    def __init__(self) -> None:
        self._by_timeout: dict[float, collections.OrderedDict[int, _Call]] = {}

    def add(self, call: _Call) -> None:
        """Track `call` until `call.deadline`, which must be now plus `call.timeout`."""
        bucket = self._by_timeout.get(call.timeout)
        if bucket is None:
            bucket = self._by_timeout[call.timeout] = collections.OrderedDict()
        bucket[call.id] = call
        bucket.move_to_end(call.id)  # a retry has a later deadline than when it was added

    def remove(self, call: _Call) -> None:
        bucket = self._by_timeout.get(call.timeout)
        if bucket is not None:
            bucket.pop(call.id, None)

    def next_deadline(self) -> float | None:
        soonest = None
        for timeout, bucket in list(self._by_timeout.items()):
            if not bucket:
                del self._by_timeout[timeout]
                continue
            deadline = next(iter(bucket.values())).deadline
            if soonest is None or deadline < soonest:
                soonest = deadline
        return soonest

    def due(self, now: float) -> list[_Call]:
        """Take out the calls whose deadline has passed."""
        due = []
        for bucket in self._by_timeout.values():
            while bucket:
                call = next(iter(bucket.values()))
                if call.deadline > now:
                    break
                bucket.popitem(last=False)
                due.append(call)
        return due


class _DirectConnection:
    """A connection of its own for one calling thread at a time.

    A blocking `call` made while one of these is free sends, waits and reads its reply on the
    caller's thread, like a plain DEALER would: two thread hand-offs fewer per round trip than
    through the I/O thread, which matters most on a machine with few cores.
    """

    def __init__(self, endpoint: str, heartbeat: float, curve: CurveClientConfig | None) -> None:
        self.sock, self.monitor = connect_dealer(endpoint, heartbeat, curve)
        self.up = False
        self.drops = 0  # connections lost so far: a request sent before one was lost with it
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.poller.register(self.monitor, zmq.POLLIN)

    def check(self) -> bool:
        """Read the monitor's news; return whether the connection is up."""
        if not cast(int, self.monitor.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            return self.up  # no news (and no exception raised to say so: this is per call)
        while True:
            kind = next_event(self.monitor)
            if kind is None:
                return self.up
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.up = True
            elif kind != zmq.EVENT_CONNECT_RETRIED:
                self.drops += self.up
                self.up = False

    def close(self) -> None:
        close_dealer(self.sock, self.monitor)


class RemoteRef:
    """A client for an `RpcServer`: blocking `call`, `call_async`, `notify`; thread-safe.

    An I/O thread owns the main DEALER connection, which carries `call_async`, `notify`, and
    the blocking calls made while every direct connection is busy. Up to `direct` more
    connections let blocking callers do their own I/O, one caller each, which halves the
    thread hand-offs of a round trip. Replies are matched to calls by id; calls that overlap
    in time may reach the server in any order, as they may be run in any order there.

    Calls wait for a connection rather than failing (requests are only queued to a connected
    peer, so a call that timed out is never delivered later). A call with no reply by its
    deadline raises `RpcTimeout`; methods in `idempotent` are then sent again, with the same
    id, up to `retries` more times (a late reply to an earlier attempt completes the call).
    When a connection drops, calls in flight on it can never be answered: idempotent ones are
    sent again once it is back, the others fail at once with `PeerDown` (a kind of
    `RpcTimeout`).

    A request that encodes to more than `max_message_bytes` (the server's limit, by default
    the same) is refused before it is sent, with `MessageTooLarge`.

    `alive` says whether the main connection is up (handshake done, heartbeats answered).
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
        direct: int = 4,
        name: str = "remote",
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        if timeout <= 0 or retries < 0 or direct < 0:
            raise ValueError(
                f"need timeout > 0, retries >= 0 and direct >= 0, not {timeout}, {retries}"
                f" and {direct}"
            )
        self.endpoint = endpoint
        self.timeout = timeout
        self.retries = retries
        self.idempotent = frozenset(idempotent)
        self.max_message_bytes = max_message_bytes
        self._on_down = on_down
        self._on_up = on_up
        self._heartbeat = heartbeat
        self._curve = curve
        self._state: bool | None = None  # None until the first connection attempt resolves
        self._down_reason = "not connected yet"
        self._ids = itertools.count(1)
        self._outbox: collections.deque[_Call] = collections.deque()
        self._closed = False
        self._direct_lock = threading.Lock()
        self._direct_idle: list[_DirectConnection] = []
        self._direct_busy = 0
        self._direct_max = direct
        self._direct_made = 0
        sock, monitor = connect_dealer(endpoint, heartbeat, curve)
        self._closing_read, self._closing_write = os.pipe()  # readable once closed
        if direct:  # made now, so that it is likely connected by the first call
            try:
                self._direct_idle.append(self._new_direct())
            except BaseException:
                close_dealer(sock, monitor)
                os.close(self._closing_read)
                os.close(self._closing_write)
                raise
            self._direct_made = 1
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
        if self._closed:
            raise RpcClosed(f"RemoteRef to {self.endpoint} is closed")
        direct = self._take_direct()
        if direct is not None:
            try:
                finished = self._call_direct(direct, call)
            finally:
                self._give_back(direct)
            if finished:
                if call.error is not None:
                    raise call.error
                return call.result
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
        future: Future[Any] = Future()
        try:
            call = self._new_call(method, params, timeout)
        except MessageTooLarge as error:
            future.set_exception(error)
            return future
        call.future = future
        self._submit(call)
        return future

    def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        """Send a notification (no reply); dropped if not connected within the timeout."""
        body = encode_request(None, method, {} if params is None else dict(params), True)
        self._check_size(method, body)
        call = _Call(next(self._ids), method, body, self.timeout)
        call.notification = True
        self._submit(call)

    def close(self, timeout: float = 5.0) -> None:
        """Close the connections; pending calls fail with `RpcClosed`. Idempotent."""
        with self._direct_lock:
            if self._closed:
                return
            self._closed = True
            idle, self._direct_idle = self._direct_idle, []
        with contextlib.suppress(OSError):
            os.write(self._closing_write, b"\0")  # wakes callers waiting on a direct connection
        for direct in idle:
            direct.close()
        self._close_pipe_if_unused()
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
        body = encode_request(id, method, params)
        self._check_size(method, body)
        return _Call(id, method, body, timeout)

    def _check_size(self, method: str, body: bytes) -> None:
        if len(body) > self.max_message_bytes:
            raise MessageTooLarge(len(body), self.max_message_bytes, method)

    def _submit(self, call: _Call) -> None:
        if self._closed:
            raise RpcClosed(f"RemoteRef to {self.endpoint} is closed")
        self._outbox.append(call)
        self._wakeup.set()

    def _timeout_error(self, call: _Call, attempts: int) -> RpcTimeout:
        reason = "" if self._state else f"peer down: {self._down_reason}"
        return RpcTimeout(call.method, self.endpoint, call.timeout, attempts, reason)

    def _peer_down_error(self, call: _Call, attempts: int) -> PeerDown:
        reason = f"peer down: {self._down_reason}; it may or may not have taken effect"
        return PeerDown(call.method, self.endpoint, call.timeout, attempts, reason)

    # -- direct connections ------------------------------------------------------------

    def _take_direct(self) -> _DirectConnection | None:
        """A free direct connection (made if there are fewer than `direct`), or None."""
        with self._direct_lock:
            if self._closed:
                return None
            if self._direct_idle:
                self._direct_busy += 1
                return self._direct_idle.pop()
            if self._direct_made >= self._direct_max:
                return None
            self._direct_made += 1
            self._direct_busy += 1
        try:
            return self._new_direct()
        except BaseException:
            with self._direct_lock:
                self._direct_made -= 1
                self._direct_busy -= 1
            raise

    def _new_direct(self) -> _DirectConnection:
        direct = _DirectConnection(self.endpoint, self._heartbeat, self._curve)
        direct.poller.register(self._closing_read, zmq.POLLIN)
        return direct

    def _give_back(self, direct: _DirectConnection) -> None:
        with self._direct_lock:
            self._direct_busy -= 1
            if not self._closed:
                self._direct_idle.append(direct)
                return
        direct.close()
        self._close_pipe_if_unused()

    def _close_pipe_if_unused(self) -> None:
        """After close, once no caller polls the closing pipe any more, close it."""
        with self._direct_lock:
            if self._direct_busy or self._closing_read < 0:
                return
            fds, self._closing_read, self._closing_write = (
                (self._closing_read, self._closing_write),
                -1,
                -1,
            )
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _call_direct(self, direct: _DirectConnection, call: _Call) -> bool:
        """Run `call` on the caller's thread over `direct`: True once it has its result or
        error, False if the I/O thread must take it over (this connection is not up)."""
        if not direct.check():
            return False
        try:
            direct.sock.send(call.body, zmq.NOBLOCK)
        except zmq.Again:
            return False
        drops = direct.drops
        retry = call.method in self.idempotent
        attempts = 1
        deadline = time.monotonic() + call.timeout
        while True:
            wait = deadline - time.monotonic()
            ready = dict(direct.poller.poll(max(0, int(wait * 1000) + 1))) if wait > 0 else {}
            if self._closed:
                call.error = RpcClosed(f"RemoteRef to {self.endpoint} is closed")
                return True
            if direct.sock in ready and self._read_direct(direct, call):
                return True
            # Lost with its connection (even if a new one is up already): never answered now.
            if direct.monitor in ready and (not direct.check() or direct.drops != drops):
                if retry:
                    call.attempts = attempts
                    return False  # the I/O thread sends it again when its connection is up
                call.error = self._peer_down_error(call, attempts)
                return True
            if time.monotonic() < deadline:
                continue
            if retry and attempts <= self.retries:
                attempts += 1
                deadline = time.monotonic() + call.timeout
                logger.info("%s: retrying %s (id %d)", self.endpoint, call.method, call.id)
                try:
                    direct.sock.send(call.body, zmq.NOBLOCK)
                except zmq.Again:
                    call.attempts = attempts
                    return False
                continue
            call.error = self._timeout_error(call, attempts)
            return True

    def _read_direct(self, direct: _DirectConnection, call: _Call) -> bool:
        """Read replies off `direct`; True if one answered `call` (late ones to calls that
        timed out before are dropped)."""
        for _ in range(BATCH):
            try:
                body = direct.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return False
            try:
                reply = parse_reply(body)
            except BadMessage as error:
                logger.debug("%s: unreadable reply dropped: %s", self.endpoint, error.message)
                continue
            if reply.id != call.id:
                logger.debug("%s: reply to unknown or expired id %r", self.endpoint, reply.id)
            elif reply.error is None:
                call.result = reply.result
                return True
            else:
                code, message, data = reply.error
                call.error = RemoteError(code, message, data, call.method)
                return True
        return False

    # -- I/O thread ------------------------------------------------------------------

    def _run(self, sock: zmq.Socket[bytes], monitor: zmq.Socket[bytes]) -> None:
        pending: dict[int, _Call] = {}
        deadlines = _Deadlines()
        backlog: collections.deque[_Call] = collections.deque()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        poller.register(self._wakeup.fd, zmq.POLLIN)
        want_out = False
        try:
            while True:
                wait_ms = None
                soonest = deadlines.next_deadline()
                if soonest is not None:
                    wait_ms = max(0, int((soonest - time.monotonic()) * 1000) + 1)
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
                        call.attempts = max(call.attempts, 1)
                        deadlines.add(call)
                        if not call.notification:
                            pending[call.id] = call
                        backlog.append(call)
                    if monitor in ready:
                        self._watch(monitor, pending, deadlines, backlog)
                    answered = self._receive(sock, pending, deadlines) if sock in ready else ()
                    self._flush(sock, backlog)
                    self._expire(deadlines, pending, backlog)
                    if bool(backlog) != want_out:
                        want_out = bool(backlog)
                        poller.modify(sock, zmq.POLLIN | (zmq.POLLOUT if want_out else 0))
                    # Wake the callers last: a caller woken earlier would contend for the GIL
                    # with this thread's sends, and each send would hand the GIL over.
                    for call, reply in answered:
                        if reply.error is None:
                            call.finish(reply.result)
                        else:
                            code, message, data = reply.error
                            call.finish(error=RemoteError(code, message, data, call.method))
                except zmq.ContextTerminated:
                    logger.error("%s: zmq context terminated under the client", self.endpoint)
                    return
                except Exception as error:  # never let the loop die
                    logger.warning("%s: I/O loop error: %r", self.endpoint, error)
        finally:
            closed = RpcClosed(f"RemoteRef to {self.endpoint} is closed")
            for call in [*pending.values(), *self._outbox]:
                call.finish(error=closed)
            close_dealer(sock, monitor)

    def _flush(self, sock: zmq.Socket[bytes], backlog: collections.deque[_Call]) -> None:
        while backlog:
            call = backlog[0]
            if not call.done:
                try:
                    sock.send(call.body, zmq.NOBLOCK)
                except zmq.Again:  # not connected (IMMEDIATE) or queue full: wait for POLLOUT
                    return
                call.sent = True
                call.blind = self._state is False  # after a drop: maybe into its dead pipe
                if call.notification:
                    call.done = True
            backlog.popleft()

    def _receive(
        self, sock: zmq.Socket[bytes], pending: dict[int, _Call], deadlines: _Deadlines
    ) -> list[tuple[_Call, Reply]]:
        """Read replies; return the calls they answer, each with its reply."""
        answered: list[tuple[_Call, Reply]] = []
        for _ in range(BATCH):
            try:
                body = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                reply = parse_reply(body)
            except BadMessage as error:
                logger.debug("%s: unreadable reply dropped: %s", self.endpoint, error.message)
                continue
            call = pending.pop(reply.id, None) if isinstance(reply.id, int) else None
            if call is None:
                logger.debug("%s: reply to unknown or expired id %r", self.endpoint, reply.id)
                continue
            deadlines.remove(call)
            answered.append((call, reply))
        return answered

    def _expire(
        self, deadlines: _Deadlines, pending: dict[int, _Call], backlog: collections.deque[_Call]
    ) -> None:
        now = time.monotonic()
        for call in deadlines.due(now):
            if call.done:
                continue
            if call.notification:  # never sent
                call.done = True
                logger.debug("%s: notification %s dropped", self.endpoint, call.method)
                continue
            if call.method in self.idempotent and call.attempts <= self.retries:
                call.attempts += 1
                call.deadline = now + call.timeout
                deadlines.add(call)
                if call.sent:  # else it never went out (not connected) and keeps its place
                    call.sent = False
                    backlog.append(call)
                logger.info("%s: retrying %s (id %d)", self.endpoint, call.method, call.id)
                continue
            pending.pop(call.id, None)
            call.finish(error=self._timeout_error(call, call.attempts))

    def _watch(
        self,
        monitor: zmq.Socket[bytes],
        pending: dict[int, _Call],
        deadlines: _Deadlines,
        backlog: collections.deque[_Call],
    ) -> None:
        while True:
            kind = next_event(monitor)
            if kind is None:
                return
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._set_state(True, f"connected to {self.endpoint}")
                self._unseen(pending, backlog)
            elif kind == zmq.EVENT_DISCONNECTED:
                self._set_state(False, f"disconnected from {self.endpoint}")
                self._orphaned(pending, deadlines, backlog)
            elif kind == zmq.EVENT_CONNECT_RETRIED:
                if self._state is None:
                    self._set_state(False, f"cannot connect to {self.endpoint}; retrying")
            else:
                detail = HANDSHAKE_FAILURES.get(kind, "no detail")
                self._set_state(False, f"handshake with {self.endpoint} failed: {detail}")

    def _orphaned(
        self, pending: dict[int, _Call], deadlines: _Deadlines, backlog: collections.deque[_Call]
    ) -> None:
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
            deadlines.remove(call)
            call.finish(error=self._peer_down_error(call, call.attempts))

    def _unseen(self, pending: dict[int, _Call], backlog: collections.deque[_Call]) -> None:
        """Once connected again, send again the idempotent calls sent after the connection
        dropped and before this: such a send may have gone into the dropped connection's pipe
        (the socket learns of the drop after its monitor does), and be lost without a word.
        Sent twice at worst, with one id, so one reply completes the call. The others may have
        reached the new peer; they keep their deadline."""
        for call in pending.values():
            if call.sent and call.blind and call.method in self.idempotent:
                call.sent = call.blind = False
                backlog.append(call)

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
