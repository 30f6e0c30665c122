"""Serve any object at a ZeroMQ endpoint and call it from elsewhere: JSON-RPC 2.0 over
ROUTER (server) / DEALER (client), one UTF-8 JSON object per message.

ZeroMQ sockets are not thread-safe, so on each side one I/O thread owns the socket. Other
threads hand it work through a deque and wake it by writing a byte to a pipe that its
`zmq.Poller` watches (writes are coalesced: one byte per batch, not per message).

- `RpcServer`: the I/O thread parses requests, answers built-ins (`rpc.ping`,
  `rpc.methods`) and garbage itself, and hands real calls to a pool of worker threads, so a
  slow handler does not hold up the others. Nothing a client sends can kill it.
- `RemoteRef`: many threads call concurrently over one DEALER connection; replies are
  matched to calls by id. Every call has a deadline; only idempotent methods are retried.
  ZMTP heartbeats and a socket monitor tell it when the peer goes away or comes back.
- CURVE: encryption plus client authentication through pyzmq's ZAP authenticator.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import inspect
import itertools
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pykka
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from actors.jsonrpc import (
    BadMessage,
    Request,
    encode_error,
    encode_request,
    encode_result,
    parse_reply,
    parse_request,
)
from actors.rpc_errors import (
    ACTOR_NOT_RUNNING,
    ACTOR_TIMEOUT,
    APPLICATION_ERROR,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    AddressInUse,
    PeerDown,
    RemoteError,
    RpcClosed,
    RpcError,
    RpcTimeout,
)

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "CurveClientConfig",
    "CurveServerConfig",
    "Handler",
    "RemoteRef",
    "RpcServer",
    "generate_keypair",
    "load_keypair",
    "serve_actor",
]

logger = logging.getLogger("actors.remote")

Handler = Callable[[dict[str, Any]], Any]
"""Takes the request's params object, returns a JSON-serialisable result."""

BUILTINS = ("rpc.methods", "rpc.ping")
_BATCH = 256  # messages taken off a socket per turn of an I/O loop, for fairness


# -- CURVE ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CurveServerConfig:
    """The server's CURVE keypair (Z85) and the directory of client public keys it accepts.

    `authorized_keys_dir=None` accepts any client key: encryption without authentication.
    The directory is read when the server starts.
    """

    public_key: bytes
    secret_key: bytes
    authorized_keys_dir: str | None


@dataclass(frozen=True)
class CurveClientConfig:
    """The client's CURVE keypair and the server's public key (all Z85)."""

    public_key: bytes
    secret_key: bytes
    server_key: bytes


def generate_keypair(directory: str | os.PathLike[str], name: str) -> tuple[str, str]:
    """Write `name.key` (public) and `name.key_secret` into `directory`; return their paths."""
    os.makedirs(directory, exist_ok=True)
    return zmq.auth.create_certificates(directory, name)


def load_keypair(path: str | os.PathLike[str]) -> tuple[bytes, bytes | None]:
    """Read (public, secret) Z85 keys from a certificate file; secret is None for `.key`."""
    return zmq.auth.load_certificate(path)


# -- shared plumbing -----------------------------------------------------------------------


class _Wakeup:
    """A pipe that any thread writes to wake an I/O thread blocked in `zmq.Poller.poll`.

    `set()` writes only if no wakeup is pending, so a burst of work costs one syscall.
    """

    def __init__(self) -> None:
        self.fd, self._write_fd = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._write_fd, False)
        self._pending = False

    def set(self) -> None:
        if self._pending:
            return
        self._pending = True
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._write_fd, b"\0")

    def clear(self) -> None:
        """Called by the I/O thread before it takes the work queued so far."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.read(self.fd, 4096)
        self._pending = False

    def close(self) -> None:
        for fd in (self.fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class _LogLimiter:
    """Logs at most `burst` warnings per `period` seconds; the rest go to debug, counted."""

    def __init__(self, burst: int = 10, period: float = 10.0) -> None:
        self._burst = burst
        self._period = period
        self._window = 0.0
        self._count = 0
        self._suppressed = 0

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._window > self._period:
            if self._suppressed:
                logger.warning("%d more such messages were logged at debug level", self._suppressed)
            self._window, self._count, self._suppressed = now, 0, 0
        self._count += 1
        if self._count <= self._burst:
            logger.warning(message, *args)
        else:
            self._suppressed += 1
            logger.debug(message, *args)


def _set_heartbeat(sock: zmq.Socket[bytes], heartbeat: float) -> None:
    if heartbeat > 0:
        interval = max(1, int(heartbeat * 1000))
        sock.setsockopt(zmq.HEARTBEAT_IVL, interval)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * interval)
        sock.setsockopt(zmq.HEARTBEAT_TTL, 3 * interval)


def _ipc_path(endpoint: str) -> str | None:
    return endpoint[len("ipc://") :] if endpoint.startswith("ipc://") else None


# -- server --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Job:
    envelope: list[bytes]
    request: Request
    handler: Handler


class RpcServer:
    """Serves a table of handlers (method name -> handler) at one ZeroMQ endpoint.

    Use `start()`/`stop()` or `with`. For `tcp://host:0`, `endpoint` is the bound one after
    start. An ipc:// path held by a live server raises `AddressInUse`; a stale socket file
    is taken over. Clients may be DEALER (one body frame) or REQ (empty delimiter + body).

    Handlers run on `workers` threads. Methods listed in `inline` run on the I/O thread
    instead, which saves two thread hand-offs per call; only for handlers that never block
    (a blocked inline handler stalls the whole server).
    """

    def __init__(
        self,
        endpoint: str,
        handlers: Mapping[str, Handler],
        *,
        workers: int = 8,
        max_message_bytes: int = 1 << 20,
        curve: CurveServerConfig | None = None,
        name: str = "rpc",
        heartbeat: float = 1.0,
        probe_timeout: float = 0.5,
        inline: Collection[str] = (),
    ) -> None:
        reserved = sorted(method for method in handlers if method.startswith("rpc."))
        if reserved:
            raise ValueError(f"method names starting with 'rpc.' are reserved: {reserved}")
        if workers < 1 or max_message_bytes < 1:
            raise ValueError(f"need workers >= 1 and max_message_bytes >= 1, not {workers}")
        self._requested = endpoint
        self._handlers = dict(handlers)
        unknown = sorted(set(inline) - set(self._handlers))
        if unknown:
            raise ValueError(f"inline methods without a handler: {unknown}")
        self._inline = frozenset(inline)
        self._methods = sorted([*self._handlers, *BUILTINS])
        self._workers = workers
        self._max_bytes = max_message_bytes
        self._curve = curve
        self.name = name
        self._heartbeat = heartbeat
        self._probe_timeout = probe_timeout
        self._bound: str | None = None
        self._ipc_inode: int | None = None
        self._lock = threading.Lock()
        self._io_thread: threading.Thread | None = None
        self._worker_threads: list[threading.Thread] = []
        self._stopping = False
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._wakeup: _Wakeup | None = None
        self._replies: collections.deque[list[bytes]] = collections.deque()
        self._log = _LogLimiter()

    @property
    def endpoint(self) -> str:
        """The bound endpoint once started (with the real port for tcp://...:0)."""
        return self._bound or self._requested

    @property
    def running(self) -> bool:
        """Whether the I/O thread is serving."""
        return self._io_thread is not None and self._io_thread.is_alive()

    def start(self) -> RpcServer:
        """Bind and start serving; a no-op if already started."""
        with self._lock:
            if self._io_thread is not None:
                return self
            own_context = self._curve is not None
            # A CURVE server gets a context of its own: ZAP is per context, and only one
            # authenticator can serve a context.
            context = zmq.Context() if own_context else zmq.Context.instance()
            auth: ThreadAuthenticator | None = None
            sock: zmq.Socket[bytes] | None = None
            try:
                if self._curve is not None:
                    auth = ThreadAuthenticator(context, log=logging.getLogger("actors.remote.auth"))
                    auth.start()
                    location = self._curve.authorized_keys_dir or zmq.auth.CURVE_ALLOW_ANY
                    auth.configure_curve(domain="*", location=location)
                path = _ipc_path(self._requested)
                if path is not None:
                    self._claim_ipc_path(context, path)
                sock = context.socket(zmq.ROUTER)
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
                sock.setsockopt(zmq.MAXMSGSIZE, self._max_bytes)
                _set_heartbeat(sock, self._heartbeat)
                if self._curve is not None:
                    sock.setsockopt(zmq.CURVE_SERVER, 1)
                    sock.setsockopt(zmq.CURVE_PUBLICKEY, self._curve.public_key)
                    sock.setsockopt(zmq.CURVE_SECRETKEY, self._curve.secret_key)
                try:
                    sock.bind(self._requested)
                except zmq.ZMQError as error:
                    if error.errno == zmq.EADDRINUSE:
                        raise AddressInUse(self._requested, str(error)) from error
                    raise
                self._bound = sock.getsockopt_string(zmq.LAST_ENDPOINT)
                if path is not None and not path.startswith("@"):
                    self._ipc_inode = os.stat(path).st_ino
            except BaseException:
                if sock is not None:
                    sock.close(linger=0)
                if auth is not None:
                    auth.stop()
                if own_context:
                    context.term()
                raise
            self._stopping = False
            self._wakeup = wakeup = _Wakeup()
            jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
            self._jobs = jobs
            self._io_thread = threading.Thread(
                target=self._serve,
                args=(sock, wakeup, auth, context if own_context else None),
                name=f"{self.name}-io",
                daemon=True,
            )
            self._worker_threads = [
                threading.Thread(
                    target=self._work, args=(jobs, wakeup), name=f"{self.name}-{n}", daemon=True
                )
                for n in range(self._workers)
            ]
            for thread in self._worker_threads:
                thread.start()
            self._io_thread.start()
            logger.info("%s serving at %s", self.name, self._bound)
            return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close the socket and remove the ipc socket file. Idempotent.

        Waits up to `timeout` for handlers still running; replies they produce later are lost.
        """
        with self._lock:
            io_thread, self._io_thread = self._io_thread, None
            if io_thread is None:
                return
            self._stopping = True
            for _ in self._worker_threads:
                self._jobs.put(None)
            wakeup = self._wakeup
            assert wakeup is not None
            wakeup.set()
            io_thread.join(timeout)
            deadline = time.monotonic() + timeout
            for thread in self._worker_threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            self._worker_threads = []
            self._replies.clear()
            if not io_thread.is_alive():
                wakeup.close()
            path = _ipc_path(self._bound or "")
            if path is not None and self._ipc_inode is not None:
                with contextlib.suppress(OSError):
                    if os.stat(path).st_ino == self._ipc_inode:
                        os.unlink(path)
            self._ipc_inode = None
            logger.info("%s stopped serving at %s", self.name, self._bound)

    def __enter__(self) -> RpcServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- binding ---------------------------------------------------------------------

    def _claim_ipc_path(self, context: zmq.Context[Any], path: str) -> None:
        """Refuse a path a live process listens on; unlink a stale socket file."""
        if path.startswith("@"):
            return  # abstract socket: the kernel refuses a second bind itself
        if not os.path.exists(path):
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(self._probe_timeout)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            logger.info("%s: taking over stale socket file %s", self.name, path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        except OSError as error:
            raise AddressInUse(self._requested, f"cannot probe it: {error}") from error
        finally:
            probe.close()
        if _ping(context, self._requested, self._probe_timeout):
            raise AddressInUse(self._requested, "a live RPC server answers rpc.ping there")
        raise AddressInUse(self._requested, "a process listens there but does not answer rpc.ping")

    # -- I/O thread ------------------------------------------------------------------

    def _serve(
        self,
        sock: zmq.Socket[bytes],
        wakeup: _Wakeup,
        auth: ThreadAuthenticator | None,
        own_context: zmq.Context[Any] | None,
    ) -> None:
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(wakeup.fd, zmq.POLLIN)
        try:
            while not self._stopping:
                try:
                    ready = dict(poller.poll())
                    if wakeup.fd in ready:
                        wakeup.clear()
                    if sock in ready:
                        self._receive(sock)
                    self._send_replies(sock)
                except zmq.ContextTerminated:
                    logger.error("%s: zmq context terminated under the server", self.name)
                    return
                except Exception as error:  # never let the loop die
                    self._log.warning("%s: I/O loop error: %r", self.name, error)
        finally:
            sock.close(linger=0)
            if auth is not None:
                auth.stop()
            if own_context is not None:
                own_context.term()

    def _send_replies(self, sock: zmq.Socket[bytes]) -> None:
        replies = self._replies
        while replies:
            frames = replies.popleft()
            try:
                sock.send_multipart(frames, zmq.NOBLOCK)
            except zmq.ZMQError as error:  # client gone (ROUTER_MANDATORY) or its queue full
                logger.debug("%s: reply dropped: %s", self.name, error)

    def _receive(self, sock: zmq.Socket[bytes]) -> None:
        for _ in range(_BATCH):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self._dispatch(frames)
            except Exception as error:
                self._log.warning("%s: failed to dispatch a message: %r", self.name, error)

    def _dispatch(self, frames: list[bytes]) -> None:
        if len(frames) == 2:
            envelope, body = frames[:1], frames[1]
        elif len(frames) == 3 and not frames[1]:
            envelope, body = frames[:2], frames[2]  # a REQ client's delimiter
        else:
            self._log.warning("%s: message with %d frames dropped", self.name, len(frames))
            self._reply_error(frames[:1], None, INVALID_REQUEST, "expected one body frame")
            return
        if len(body) > self._max_bytes:
            self._log.warning("%s: message of %d bytes refused", self.name, len(body))
            self._reply_error(envelope, None, INVALID_REQUEST, "message too large")
            return
        try:
            request = parse_request(body)
        except BadMessage as error:
            self._log.warning("%s: bad request: %s", self.name, error.message)
            self._reply_error(envelope, error.id, error.code, error.message)
            return
        handler = self._handlers.get(request.method)
        if handler is not None:
            job = _Job(envelope, request, handler)
            if request.method not in self._inline:
                self._jobs.put(job)
            elif (reply := self._run(job)) is not None:
                self._replies.append([*envelope, reply])
        elif request.notification:
            return
        elif request.method == "rpc.ping":
            self._replies.append([*envelope, encode_result(request.id, "pong")])
        elif request.method == "rpc.methods":
            self._replies.append([*envelope, encode_result(request.id, self._methods)])
        else:
            self._log.warning("%s: method not found: %.200s", self.name, request.method)
            message = f"method not found: {request.method:.200}"
            self._reply_error(envelope, request.id, METHOD_NOT_FOUND, message)

    def _reply_error(
        self, envelope: list[bytes], id: Any, code: int, message: str, data: Any = None
    ) -> None:
        self._replies.append([*envelope, encode_error(id, code, message, data)])

    # -- workers ---------------------------------------------------------------------

    def _work(self, jobs: queue.SimpleQueue[_Job | None], wakeup: _Wakeup) -> None:
        while (job := jobs.get()) is not None:
            reply = self._run(job)
            if reply is not None and not self._stopping:
                self._replies.append([*job.envelope, reply])
                wakeup.set()

    def _run(self, job: _Job) -> bytes | None:
        request = job.request
        try:
            result = job.handler(request.params)
        except RpcError as error:
            logger.info("%s: %s failed: %s", self.name, request.method, error)
            if request.notification:
                return None
            return encode_error(request.id, error.code, error.message, error.data)
        except BaseException as error:  # a handler must not take a worker down with it
            kind = type(error).__name__
            self._log.warning("%s: %s raised %s: %s", self.name, request.method, kind, error)
            logger.debug("%s: %s traceback", self.name, request.method, exc_info=True)
            if request.notification:
                return None
            message = str(error) or kind
            return encode_error(request.id, APPLICATION_ERROR, message, {"type": kind})
        if request.notification:
            return None
        try:
            return encode_result(request.id, result)
        except (TypeError, ValueError, RecursionError) as error:
            message = f"result of {request.method} is not JSON-serialisable: {error}"
            self._log.warning("%s: %s", self.name, message)
            return encode_error(request.id, INTERNAL_ERROR, message)


def _ping(context: zmq.Context[Any], endpoint: str, timeout: float) -> bool:
    """Whether an RPC server at `endpoint` answers `rpc.ping` within `timeout` seconds."""
    probe = context.socket(zmq.DEALER)
    probe.setsockopt(zmq.LINGER, 0)
    try:
        probe.connect(endpoint)
        probe.send(encode_request("probe", "rpc.ping", {}))
        if probe.poll(int(timeout * 1000)):
            return bool(parse_reply(probe.recv()).result == "pong")
        return False
    except (zmq.ZMQError, BadMessage):
        return False
    finally:
        probe.close(linger=0)


# -- client --------------------------------------------------------------------------------


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
            _set_heartbeat(sock, heartbeat)
            if curve is not None:
                sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.public_key)
                sock.setsockopt(zmq.CURVE_SECRETKEY, curve.secret_key)
                sock.setsockopt(zmq.CURVE_SERVERKEY, curve.server_key)
            monitor = sock.get_monitor_socket(_MONITOR_EVENTS)
            sock.connect(endpoint)
        except BaseException:
            sock.close(linger=0)
            raise
        self._wakeup = _Wakeup()
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
        for _ in range(_BATCH):
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


# -- serving an actor ----------------------------------------------------------------------


def serve_actor(
    ref: pykka.ActorRef[Any],
    endpoint: str,
    methods: Mapping[str, str],
    *,
    call_timeout: float = 30.0,
    **server_kwargs: Any,
) -> RpcServer:
    """Serve a Pykka actor: RPC method name -> actor method name; returns the started server.

    Params are passed as keyword arguments; ones that do not fit the method's signature get
    INVALID_PARAMS. A stopped actor gets ACTOR_NOT_RUNNING, one that does not answer within
    `call_timeout` seconds ACTOR_TIMEOUT. Other exceptions are handled as for any handler.
    """
    actor_class = ref.actor_class
    missing = sorted(a for a in methods.values() if not callable(getattr(actor_class, a, None)))
    if missing:
        raise ValueError(f"{actor_class.__name__} has no methods {missing}")
    proxy_box: list[Any] = []

    def proxy() -> Any:
        if not proxy_box:
            proxy_box.append(ref.proxy())
        return proxy_box[0]

    def make_handler(rpc_method: str, attr: str) -> Handler:
        signature = inspect.signature(getattr(actor_class, attr))

        def handler(params: dict[str, Any]) -> Any:
            try:
                signature.bind(None, **params)
            except TypeError as error:
                message = f"invalid params for {rpc_method}: {error}"
                raise RpcError(INVALID_PARAMS, message) from None
            try:
                return getattr(proxy(), attr)(**params).get(timeout=call_timeout)
            except pykka.ActorDeadError:
                raise RpcError(ACTOR_NOT_RUNNING, "actor is not running") from None
            except pykka.Timeout:
                message = f"actor did not answer {rpc_method} within {call_timeout:g}s"
                raise RpcError(ACTOR_TIMEOUT, message) from None

        return handler

    handlers = {name: make_handler(name, attr) for name, attr in methods.items()}
    return RpcServer(endpoint, handlers, **server_kwargs).start()
