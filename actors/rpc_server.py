"""`RpcServer`: serve a table of JSON-RPC 2.0 handlers at a ZeroMQ ROUTER endpoint, and
`serve_actor` to serve a Pykka actor that way.

Threads take turns to lead (actors/leader_followers.py): the leader reads requests, answers
built-ins (`rpc.ping`, `rpc.methods`) and garbage, and runs each call itself; if a handler is
slow, another thread takes over the socket, so a slow handler does not hold up the others.
Nothing a client sends can kill it.
"""

from __future__ import annotations

import collections
import contextlib
import glob
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pykka
import zmq
import zmq.auth
import zmq.utils.z85
from zmq.auth.thread import ThreadAuthenticator

from actors.curve import CurveServerConfig
from actors.jsonrpc import (
    MAX_MESSAGE_BYTES,
    BadMessage,
    Request,
    encode_error,
    encode_request,
    encode_result,
    parse_reply,
    parse_request,
    request_id,
)
from actors.leader_followers import LeaderFollowers, Replies
from actors.rpc_caller import caller
from actors.rpc_errors import (
    ACTOR_NOT_RUNNING,
    ACTOR_TIMEOUT,
    APPLICATION_ERROR,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    AddressInUse,
    RpcError,
    too_large_message,
)
from actors.unix_socket import release_stale
from actors.zmq_dealer import set_heartbeat
from actors.zmq_io import BATCH, logger

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "BUILTINS",
    "Handler",
    "LogLimiter",
    "RpcServer",
    "answer",
    "serve_actor",
]

Handler = Callable[[dict[str, Any]], Any]
"""Takes the request's params object, returns a JSON-serialisable result."""

BUILTINS = ("rpc.methods", "rpc.ping")


class _NamingAuthenticator(ThreadAuthenticator):
    """pyzmq's authenticator, giving each authorized client key its file's name as the
    message's User-Id (instead of the key itself)."""

    names: dict[bytes, str]

    def name_keys(self, directory: str) -> None:
        self.names = {}
        for path in sorted(glob.glob(os.path.join(glob.escape(directory), "*.key"))):
            with contextlib.suppress(OSError, ValueError):
                public, _ = zmq.auth.load_certificate(path)
                if public:
                    self.names[public] = os.path.basename(path)[: -len(".key")]

    def curve_user_id(self, client_public_key: bytes) -> str:
        encoded = zmq.utils.z85.encode(client_public_key)
        return getattr(self, "names", {}).get(encoded) or f"key {encoded[:8].decode()}"


HARD_LIMIT_FACTOR = 4
"""ZeroMQ drops a message over this many times `max_message_bytes`, and its connection."""


class LogLimiter:
    """Logs at most `burst` records per `period` seconds; the rest go to debug, counted."""

    def __init__(self, burst: int = 10, period: float = 10.0) -> None:
        self._burst = burst
        self._period = period
        self._window = 0.0
        self._count = 0
        self._suppressed = 0

    def warning(self, message: str, *args: Any) -> None:
        self.log(logging.WARNING, message, *args)

    def error(self, message: str, *args: Any, exc_info: bool = False) -> None:
        self.log(logging.ERROR, message, *args, exc_info=exc_info)

    def log(self, level: int, message: str, *args: Any, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._window > self._period:
            if self._suppressed:
                logger.warning("%d more such messages were logged at debug level", self._suppressed)
            self._window, self._count, self._suppressed = now, 0, 0
        self._count += 1
        if self._count <= self._burst:
            logger.log(level, message, *args, exc_info=exc_info)
        else:
            self._suppressed += 1
            logger.debug(message, *args, exc_info=exc_info)


def _ipc_path(endpoint: str) -> str | None:
    return endpoint[len("ipc://") :] if endpoint.startswith("ipc://") else None


@dataclass(slots=True)
class _Job:
    envelope: list[bytes]
    request: Request
    handler: Handler
    user: str | None = None


class RpcServer:
    """Serves a table of handlers (method name -> handler) at one ZeroMQ endpoint.

    Use `start()`/`stop()` or `with`. For `tcp://host:0`, `endpoint` is the bound one after
    start. An ipc:// path held by a live server raises `AddressInUse`; a stale socket file
    is taken over. Clients may be DEALER (one body frame) or REQ (empty delimiter + body).

    Up to `workers` handlers run at once, each on a thread of the server's. A quick call
    runs on the thread that read it; one that takes longer than `handover_after` seconds
    leaves the socket to another thread. Built-ins and errors are answered even while
    `workers` calls are running.

    A request over `max_message_bytes` gets an INVALID_REQUEST error saying so; one over
    `HARD_LIMIT_FACTOR` times that is dropped by ZeroMQ with its connection (protection
    against a peer that sends without end).
    """

    def __init__(
        self,
        endpoint: str,
        handlers: Mapping[str, Handler],
        *,
        workers: int = 8,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        curve: CurveServerConfig | None = None,
        name: str = "rpc",
        heartbeat: float = 1.0,
        probe_timeout: float = 0.5,
        handover_after: float = 0.005,
    ) -> None:
        reserved = sorted(method for method in handlers if method.startswith("rpc."))
        if reserved:
            raise ValueError(f"method names starting with 'rpc.' are reserved: {reserved}")
        if workers < 1 or max_message_bytes < 1 or handover_after <= 0:
            raise ValueError(
                "need workers >= 1, max_message_bytes >= 1 and handover_after > 0, not"
                f" {workers}, {max_message_bytes} and {handover_after}"
            )
        self._requested = endpoint
        self._handlers = dict(handlers)
        self._handover_after = handover_after
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
        self._serving: LeaderFollowers[_Job] | None = None
        self._log = LogLimiter()

    @property
    def endpoint(self) -> str:
        """The bound endpoint once started (with the real port for tcp://...:0)."""
        return self._bound or self._requested

    @property
    def running(self) -> bool:
        """Whether the server is serving: started, not stopped, and a thread leads."""
        serving = self._serving
        return serving is not None and serving.alive

    def start(self) -> RpcServer:
        """Bind and start serving; a no-op if already started."""
        with self._lock:
            if self._serving is not None:
                return self
            own_context = self._curve is not None
            # A CURVE server gets a context of its own: ZAP is per context, and only one
            # authenticator can serve a context.
            context = zmq.Context() if own_context else zmq.Context.instance()
            auth: _NamingAuthenticator | None = None
            sock: zmq.Socket[bytes] | None = None
            try:
                if self._curve is not None:
                    auth = _NamingAuthenticator(
                        context, log=logging.getLogger("actors.remote.auth")
                    )
                    auth.start()
                    location = self._curve.authorized_keys_dir or zmq.auth.CURVE_ALLOW_ANY
                    if self._curve.authorized_keys_dir is not None:
                        auth.name_keys(self._curve.authorized_keys_dir)
                    auth.configure_curve(domain="*", location=location)
                path = _ipc_path(self._requested)
                if path is not None:
                    self._claim_ipc_path(context, path)
                sock = context.socket(zmq.ROUTER)
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
                sock.setsockopt(zmq.MAXMSGSIZE, self._max_bytes * HARD_LIMIT_FACTOR)
                set_heartbeat(sock, self._heartbeat)
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

            def close(sock: zmq.Socket[bytes] = sock) -> None:
                sock.close(linger=0)
                if auth is not None:
                    auth.stop()
                if own_context:
                    context.term()

            self._serving = LeaderFollowers(
                sock,
                self._receive,
                self._run,
                close,
                workers=self._workers,
                name=self.name,
                log=logger,
                handover_after=self._handover_after,
            )
            self._serving.start()
            logger.info("%s serving at %s", self.name, self._bound)
            return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close the socket and remove the ipc socket file. Idempotent.

        Waits up to `timeout` for handlers still running; replies they produce later are lost.
        """
        with self._lock:
            serving, self._serving = self._serving, None
            if serving is None:
                return
            serving.stop(timeout)
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
        try:
            if release_stale(path, self._probe_timeout, self.name):
                return
        except OSError as error:
            raise AddressInUse(self._requested, f"cannot probe it: {error}") from error
        if _ping(context, self._requested, self._probe_timeout):
            raise AddressInUse(self._requested, "a live RPC server answers rpc.ping there")
        raise AddressInUse(self._requested, "a process listens there but does not answer rpc.ping")

    # -- requests --------------------------------------------------------------------

    def _receive(
        self, sock: zmq.Socket[bytes], jobs: collections.deque[_Job], replies: Replies
    ) -> None:
        """Take what is waiting off the socket: calls to run, answers to send at once."""
        authenticated = self._curve is not None and self._curve.authorized_keys_dir is not None
        for _ in range(BATCH):
            user = None
            try:
                if authenticated:
                    # Frames, not bytes: only a frame carries the ZAP User-Id of its sender.
                    raw = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    user = _user_id(raw[-1])
                    frames = [frame.bytes for frame in raw]
                else:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self._dispatch(frames, jobs, replies, user)
            except Exception as error:
                self._log.warning("%s: failed to dispatch a message: %r", self.name, error)

    def _dispatch(
        self,
        frames: list[bytes],
        jobs: collections.deque[_Job],
        replies: Replies,
        user: str | None = None,
    ) -> None:
        if len(frames) == 2:
            envelope, body = frames[:1], frames[1]
        elif len(frames) == 3 and not frames[1]:
            envelope, body = frames[:2], frames[2]  # a REQ client's delimiter
        else:
            self._log.warning("%s: message with %d frames dropped", self.name, len(frames))
            replies.append(_error(frames[:1], None, INVALID_REQUEST, "expected one body frame"))
            return
        if len(body) > self._max_bytes:
            self._log.warning("%s: message of %d bytes refused", self.name, len(body))
            message = too_large_message(len(body), self._max_bytes)
            replies.append(_error(envelope, request_id(body), INVALID_REQUEST, message))
            return
        try:
            request = parse_request(body)
        except BadMessage as error:
            self._log.warning("%s: bad request: %s", self.name, error.message)
            replies.append(_error(envelope, error.id, error.code, error.message))
            return
        handler = self._handlers.get(request.method)
        if handler is not None:
            jobs.append(_Job(envelope, request, handler, user))
        elif request.notification:
            return
        elif request.method == "rpc.ping":
            replies.append([*envelope, encode_result(request.id, "pong")])
        elif request.method == "rpc.methods":
            replies.append([*envelope, encode_result(request.id, self._methods)])
        else:
            self._log.warning("%s: method not found: %.200s", self.name, request.method)
            message = f"method not found: {request.method:.200}"
            replies.append(_error(envelope, request.id, METHOD_NOT_FOUND, message))

    def _run(self, job: _Job) -> list[bytes] | None:
        """Run a call's handler; the reply's frames, or None for a notification."""
        try:
            body = self._answer(job)
        except BaseException:  # a bug here must not leave the caller waiting for its timeout
            self._log.error("%s: cannot answer %s", self.name, job.request.method, exc_info=True)
            if job.request.notification:
                return None
            body = encode_error(job.request.id, INTERNAL_ERROR, "the server could not answer")
        return None if body is None else [*job.envelope, body]

    def _answer(self, job: _Job) -> bytes | None:
        token = caller.set(job.user)  # what `authenticated_user()` answers the handler
        try:
            return answer(job.request, job.handler, self.name, self._log)
        finally:
            caller.reset(token)


def _user_id(frame: zmq.Frame) -> str | None:
    """The ZAP User-Id a frame arrived with, if any."""
    try:
        user = frame.get("User-Id")
    except (zmq.ZMQError, KeyError):
        return None
    return user if isinstance(user, str) and user else None


def answer(request: Request, handler: Handler, name: str, log: LogLimiter) -> bytes | None:
    """Run `handler` for `request` and encode its reply (None for a notification): an
    `RpcError` is sent as it is, any other exception as APPLICATION_ERROR, a result that is
    not JSON as INTERNAL_ERROR. Shared by every transport that serves handlers."""
    try:
        result = handler(request.params)
    except RpcError as error:
        logger.info("%s: %s failed: %s", name, request.method, _text(error))
        if request.notification:
            return None
        return _encode_error(request.id, error.code, error.message, error.data)
    except BaseException as error:  # a handler must not take a worker down with it
        kind = type(error).__name__
        log.error("%s: %s raised %s", name, request.method, kind, exc_info=True)
        if request.notification:
            return None
        message = _text(error) or kind
        return _encode_error(request.id, APPLICATION_ERROR, message, {"type": kind})
    if request.notification:
        return None
    try:
        return encode_result(request.id, result)
    except (TypeError, ValueError, RecursionError) as error:
        message = f"result of {request.method} is not JSON-serialisable: {error}"
        log.error("%s: %s", name, message, exc_info=True)
        return _encode_error(request.id, INTERNAL_ERROR, message)


def _text(error: BaseException) -> str:
    """What an exception says, even if its `__str__` fails."""
    try:
        return str(error)
    except Exception:
        return type(error).__name__


def _encode_error(id: Any, code: int, message: str, data: Any = None) -> bytes:
    """An error reply, even for a message that is not UTF-8 (lone surrogates are escaped)."""
    try:
        return encode_error(id, code, message, data)
    except (TypeError, ValueError):
        escaped = message.encode("utf-8", "backslashreplace").decode("utf-8")
        return encode_error(id, code, escaped, None if data is None else ascii(data))


def _error(envelope: list[bytes], id: Any, code: int, message: str) -> list[bytes]:
    return [*envelope, encode_error(id, code, message)]


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
