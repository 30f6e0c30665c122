"""JSON-RPC 2.0 over HTTP/1.1 POST on a unix socket: the wire of Go InfraKit's plugins
(gorilla/rpc json2), beside the ZeroMQ one of `actors.remote`.

- `HttpRpcServer` serves the same handler tables as `RpcServer`, with the same codec and
  error codes: any URL path, `Content-Type: application/json`, every JSON-RPC answer (errors
  too) with HTTP 200, as Go's server does; a notification gets 204 and no body.
- `HttpRef` calls one, with the public face of `RemoteRef` that callers rely on.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import os
import select
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Collection, Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actors.http_probe import JSON, probe_http, socket_path
from actors.jsonrpc import (
    MAX_MESSAGE_BYTES,
    BadMessage,
    encode_error,
    encode_request,
    encode_result,
    parse_reply,
    parse_request,
    request_id,
)
from actors.rpc_errors import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    AddressInUse,
    MessageTooLarge,
    PeerDown,
    RemoteError,
    RpcClosed,
    RpcTimeout,
    too_large_message,
)
from actors.rpc_server import BUILTINS, Handler, LogLimiter, answer
from actors.unix_socket import accepting, release_stale
from actors.zmq_io import logger

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["HttpRef", "HttpRpcServer", "UnixHTTPConnection", "probe_http"]


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A thread per connection, at most `max_connections` of them; the rest are closed."""

    daemon_threads = True
    block_on_close = False
    owner: HttpRpcServer

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.owner._admit(request):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.owner._release(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.owner._log.error("%s: connection failed", self.owner.name, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    """One HTTP connection (keep-alive): each POST body is one JSON-RPC request."""

    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "infrakit-http-rpc"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.owner.idle_timeout)

    def do_POST(self) -> None:
        owner = self.server.owner
        if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            self._reply(411, encode_error(None, INVALID_REQUEST, "send a Content-Length"), True)
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self._reply(411, encode_error(None, INVALID_REQUEST, "send a Content-Length"), True)
            return
        if length > owner.max_message_bytes:
            owner._log.warning("%s: message of %d bytes refused", owner.name, length)
            body = encode_error(
                None, INVALID_REQUEST, too_large_message(length, owner.max_message_bytes)
            )
            self._reply(413, body, True)  # the body is not read: the connection must go
            return
        status, reply = owner._respond(self.rfile.read(length))
        self._reply(status, reply)

    def _not_post(self) -> None:
        message = f"POST a JSON-RPC request, not {self.command}"
        self._reply(405, encode_error(None, INVALID_REQUEST, message), True)

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = _not_post

    def _reply(self, status: int, body: bytes | None, close: bool = False) -> None:
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", f"{JSON}; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Content-Length", "0")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if body is not None and self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Garbage that is not HTTP gets a JSON-RPC error too, and the connection is closed."""
        self.server.owner._log.warning("%s: bad HTTP request: %s", self.server.owner.name, message)
        text = f"bad HTTP request: {message or code}"
        with contextlib.suppress(OSError):
            if not hasattr(self, "command") or self.command is None:
                self.command = "POST"
            self._reply(code, encode_error(None, INVALID_REQUEST, text), True)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s: " + format, self.server.owner.name, *args)


class HttpRpcServer:
    """Serves a table of handlers (method name -> `Handler`, as `RpcServer` takes) as JSON-RPC
    2.0 over HTTP POST on the unix socket `path`.

    Use `start()`/`stop()` or `with`. A socket file nobody listens on is taken over; one a live
    process listens on raises `AddressInUse`. Up to `workers` handlers run at once (built-ins
    and errors are answered regardless); up to `max_connections` connections are kept, each
    closed after `idle_timeout` seconds without a request. A body over `max_message_bytes` gets
    HTTP 413 with an INVALID_REQUEST error; nothing a client sends kills the server.
    """

    def __init__(
        self,
        path: str | Path,
        handlers: Mapping[str, Handler],
        *,
        workers: int = 8,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        name: str = "http-rpc",
        max_connections: int = 128,
        idle_timeout: float = 60.0,
    ) -> None:
        reserved = sorted(method for method in handlers if method.startswith("rpc."))
        if reserved:
            raise ValueError(f"method names starting with 'rpc.' are reserved: {reserved}")
        if workers < 1 or max_message_bytes < 1 or max_connections < 1 or idle_timeout <= 0:
            raise ValueError("need workers, max_message_bytes, max_connections >= 1 and a timeout")
        self.path = Path(path).absolute()
        self.name = name
        self.max_message_bytes = max_message_bytes
        self.idle_timeout = idle_timeout
        self._handlers = dict(handlers)
        self._methods = sorted([*self._handlers, *BUILTINS])
        self._slots = threading.BoundedSemaphore(workers)
        self._max_connections = max_connections
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._inode: int | None = None
        self._log = LogLimiter()

    @property
    def endpoint(self) -> str:
        """`unix://` and the socket's absolute path."""
        return f"unix://{self.path}"

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> HttpRpcServer:
        """Bind and start serving; a no-op if already started."""
        with self._lock:
            if self._server is not None:
                return self
            self._claim_path()
            try:
                server = _Server(str(self.path), _Handler, bind_and_activate=False)
                server.owner = self
                server.server_bind()
                server.server_activate()
            except OSError as error:
                server.server_close()
                if error.errno == errno.EADDRINUSE:
                    raise AddressInUse(self.endpoint, str(error)) from error
                raise
            self._inode = os.stat(self.path).st_ino
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.2}, name=self.name
            )
            self._thread.daemon = True
            self._thread.start()
            logger.info("%s serving at %s", self.name, self.endpoint)
            return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close every connection, remove the socket file. Idempotent.

        Handlers still running get up to `timeout` seconds to send their replies.
        """
        with self._lock:
            server, self._server = self._server, None
            if server is None:
                return
            server.shutdown()
            server.server_close()
            if self._thread is not None:
                self._thread.join(timeout)
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_ino == self._inode:
                    os.unlink(self.path)
            with self._connections_lock:
                connections = list(self._connections)
            for conn in connections:  # idle readers see EOF; a running handler still replies
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RD)
            deadline = time.monotonic() + timeout
            while self._connections and time.monotonic() < deadline:
                time.sleep(0.01)
            logger.info("%s stopped serving at %s", self.name, self.endpoint)

    def __enter__(self) -> HttpRpcServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _claim_path(self) -> None:
        """Refuse a path a live process listens on; unlink a stale socket file."""
        try:
            if release_stale(str(self.path), 0.5, self.name):
                return
        except OSError as error:
            raise AddressInUse(self.endpoint, f"cannot probe it: {error}") from error
        raise AddressInUse(self.endpoint, "a process listens there")

    def _admit(self, conn: socket.socket) -> bool:
        with self._connections_lock:
            if len(self._connections) >= self._max_connections:
                self._log.warning("%s: too many connections; one refused", self.name)
                return False
            self._connections.add(conn)
            return True

    def _release(self, conn: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(conn)

    def _respond(self, body: bytes) -> tuple[int, bytes | None]:
        """The HTTP status and body that answer one request body."""
        try:
            request = parse_request(body)
        except BadMessage as error:
            self._log.warning("%s: bad request: %s", self.name, error.message)
            return 200, encode_error(error.id, error.code, error.message)
        except Exception:  # the codec must not take the connection down
            self._log.error("%s: cannot parse a request", self.name, exc_info=True)
            return 200, encode_error(request_id(body), INTERNAL_ERROR, "cannot parse it")
        handler = self._handlers.get(request.method)
        if handler is not None:
            with self._slots:
                reply = answer(request, handler, self.name, self._log)
            return (204, None) if reply is None else (200, reply)
        if request.notification:
            return 204, None
        if request.method == "rpc.ping":
            return 200, encode_result(request.id, "pong")
        if request.method == "rpc.methods":
            return 200, encode_result(request.id, self._methods)
        self._log.warning("%s: method not found: %.200s", self.name, request.method)
        message = f"method not found: {request.method:.200}"
        return 200, encode_error(request.id, METHOD_NOT_FOUND, message)


# -- client ---------------------------------------------------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    """An `HTTPConnection` to the unix socket `path` (the Host header says `localhost`)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def stale(self) -> bool:
        """Whether an idle kept-alive connection was closed by the server (readable = EOF)."""
        if self.sock is None:
            return False
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)


class _NotSent(Exception):
    """The connection could not be made: the request never left."""


class HttpRef:
    """A client for an HTTP JSON-RPC server on a unix socket (`HttpRpcServer`, or a Go
    InfraKit plugin), with the face of `RemoteRef`: blocking `call`, `alive`, `close`.

    Connections are kept alive, one per calling thread at a time. A call waits for the
    server (a socket not there yet, or refusing) until its deadline, `timeout` seconds per
    attempt; methods in `idempotent` are sent again, up to `retries` more times, when a reply
    is lost or late. A connection lost while a call is in flight fails a non-idempotent call
    with `PeerDown` (it may or may not have taken effect). `on_down(reason)` and
    `on_up(reason)` run on transitions (the first connection included), from a caller's thread
    or from the light probe that, while the server is down, connects every 100 ms to 1 s.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        idempotent: Collection[str] = (),
        on_down: Callable[[str], None] | None = None,
        on_up: Callable[[str], None] | None = None,
        name: str = "http-remote",
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        pool: int = 4,
    ) -> None:
        if timeout <= 0 or retries < 0:
            raise ValueError(f"need timeout > 0 and retries >= 0, not {timeout} and {retries}")
        self.endpoint = endpoint if endpoint.startswith("unix://") else f"unix://{endpoint}"
        self.path = socket_path(endpoint)
        self.timeout = timeout
        self.retries = retries
        self.idempotent = frozenset(idempotent)
        self.max_message_bytes = max_message_bytes
        self.name = name
        self._on_down = on_down
        self._on_up = on_up
        self._pool_size = pool
        self._idle: list[UnixHTTPConnection] = []
        self._lock = threading.Lock()
        self._state: bool | None = None
        self._down_reason = "not connected yet"
        self._ids = 0
        self._closed = False
        self._wake = threading.Event()
        self._prober = threading.Thread(target=self._probe, name=f"{name}-probe", daemon=True)
        self._prober.start()

    @property
    def alive(self) -> bool:
        """Whether the last connection attempt or call reached the server."""
        return self._state is True

    def call(
        self, method: str, params: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """Call `method` and wait for its result; raises RemoteError, RpcTimeout (PeerDown)
        or RpcClosed."""
        if timeout is None:
            timeout = self.timeout
        elif timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        with self._lock:
            if self._closed:
                raise RpcClosed(f"HttpRef to {self.endpoint} is closed")
            self._ids += 1
            id = self._ids
        body = encode_request(id, method, {} if params is None else dict(params))
        if len(body) > self.max_message_bytes:
            raise MessageTooLarge(len(body), self.max_message_bytes, method)
        attempts = 1 + (self.retries if method in self.idempotent else 0)
        for attempt in range(1, attempts + 1):
            deadline = time.monotonic() + timeout
            while True:
                if self._closed:
                    raise RpcClosed(f"HttpRef to {self.endpoint} is closed")
                try:
                    return self._attempt(method, body, deadline)
                except _NotSent as error:  # nothing left: wait for the server until the deadline
                    self._went_down(str(error.__cause__ or error))
                    if time.monotonic() + 0.05 >= deadline:
                        if attempt == attempts:
                            raise RpcTimeout(
                                method, self.endpoint, timeout, attempts, self._reason()
                            ) from None
                        break
                    time.sleep(0.05)
                except TimeoutError:
                    if attempt == attempts:
                        raise RpcTimeout(
                            method, self.endpoint, timeout, attempts, self._reason()
                        ) from None
                    break
                except (OSError, http.client.HTTPException) as error:  # lost in flight
                    self._went_down(f"connection lost: {error!r}")
                    if method not in self.idempotent:
                        reason = f"{self._reason()}; it may or may not have taken effect"
                        raise PeerDown(method, self.endpoint, timeout, attempt, reason) from None
                    if time.monotonic() >= deadline and attempt == attempts:
                        raise RpcTimeout(
                            method, self.endpoint, timeout, attempts, self._reason()
                        ) from None
                    time.sleep(0.05)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self, timeout: float = 5.0) -> None:
        """Close the connections and stop the probe; later calls raise RpcClosed. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        self._wake.set()
        if threading.current_thread() is not self._prober:
            self._prober.join(timeout)

    def __enter__(self) -> HttpRef:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------

    def _reason(self) -> str:
        return "" if self._state else f"peer down: {self._down_reason}"

    def _take(self, timeout: float) -> UnixHTTPConnection:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not conn.stale():
                    conn.timeout = timeout
                    if conn.sock is not None:
                        conn.sock.settimeout(timeout)
                    return conn
                conn.close()
        return UnixHTTPConnection(self.path, timeout)

    def _give_back(self, conn: UnixHTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._pool_size:
                self._idle.append(conn)
                return
        conn.close()

    def _attempt(self, method: str, body: bytes, deadline: float) -> Any:
        """One request and its reply; `_NotSent` if no connection could be made."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        conn = self._take(remaining)
        if conn.sock is None:
            try:
                conn.connect()
            except OSError as error:
                conn.close()
                if isinstance(error, TimeoutError):
                    raise
                raise _NotSent(str(error)) from error
        try:
            conn.request("POST", "/", body, {"Content-Type": JSON})
            response = conn.getresponse()
            data = response.read()
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        else:
            self._give_back(conn)
        self._went_up("connected")
        return self._result(method, response.status, data)

    def _result(self, method: str, status: int, data: bytes) -> Any:
        try:
            reply = parse_reply(data)
        except BadMessage:
            text = data[:200].decode("utf-8", "replace").strip()
            raise RemoteError(INTERNAL_ERROR, f"HTTP {status}: {text}", None, method) from None
        if reply.error is None:
            return reply.result
        code, message, data_ = reply.error
        if message.startswith("rpc: can't find"):  # Go's gorilla/rpc for an unknown method
            code = METHOD_NOT_FOUND
        raise RemoteError(code, message, data_, method)

    def _went_up(self, reason: str) -> None:
        with self._lock:
            was, self._state = self._state, True
        if was is not True and self._on_up is not None:
            self._notify(self._on_up, reason)

    def _went_down(self, reason: str) -> None:
        with self._lock:
            was, self._state = self._state, False
            self._down_reason = reason
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        if was is not False:
            if self._on_down is not None:
                self._notify(self._on_down, reason)
            self._wake.set()

    def _notify(self, callback: Callable[[str], None], reason: str) -> None:
        try:
            callback(reason)
        except Exception:
            logger.warning("%s: a connection callback failed", self.name, exc_info=True)

    def _probe(self) -> None:
        """While the server is not known to be up, connect now and then to find out."""
        delay = 0.1
        while not self._closed:
            if self._state is True:
                self._wake.wait()
                self._wake.clear()
                delay = 0.1
                continue
            try:
                up, why = accepting(self.path, 1.0), "nothing listens there"
            except OSError as error:
                up, why = False, str(error.strerror or error)
            if not up:
                self._went_down(f"cannot connect to {self.path}: {why}")
                self._wake.wait(delay)
                self._wake.clear()
                delay = min(delay * 2, 1.0)
                continue
            if not self._closed:
                self._went_up("connected")
