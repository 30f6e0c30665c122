"""Tests for actors.remote: JSON-RPC over real ZeroMQ sockets (ipc:// and tcp://127.0.0.1)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pykka
import pytest
import zmq
from support import MIN_DEADLINE, Router, start_hanging_server, wait_for

from actors.remote import (
    CurveClientConfig,
    CurveServerConfig,
    RemoteRef,
    RpcServer,
    generate_keypair,
    load_keypair,
    serve_actor,
)
from actors.rpc_errors import (
    AddressInUse,
    MessageTooLarge,
    PeerDown,
    RemoteError,
    RpcClosed,
    RpcError,
    RpcTimeout,
)

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def ipc(tmp_path: Path) -> str:
    endpoint = f"ipc://{tmp_path}/rpc.sock"
    assert len(endpoint) < 100, "AF_UNIX paths are limited to 107 bytes"
    return endpoint


def echo(params: dict[str, Any]) -> Any:
    return params


def start(endpoint: str, handlers: dict[str, Any] | None = None, **kwargs: Any) -> RpcServer:
    return RpcServer(endpoint, {"Echo.Echo": echo, **(handlers or {})}, **kwargs).start()


class Raw:
    """A bare DEALER for sending crafted messages and reading raw replies."""

    def __init__(self, endpoint: str) -> None:
        self.sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(endpoint)

    def send(self, *frames: bytes) -> None:
        self.sock.send_multipart(list(frames))

    def reply(self, timeout: float = 5.0) -> dict[str, Any]:
        assert self.sock.poll(int(timeout * 1000)), "no reply"
        message: dict[str, Any] = json.loads(self.sock.recv())
        return message

    def ask(self, body: bytes) -> dict[str, Any]:
        self.send(body)
        return self.reply()

    def close(self) -> None:
        self.sock.close(linger=0)


@pytest.fixture
def raw_server(ipc: str) -> Iterator[tuple[RpcServer, Raw]]:
    def fail(params: dict[str, Any]) -> Any:
        raise ValueError(f"bad size {params.get('size')!r}")

    def refuse(params: dict[str, Any]) -> Any:
        raise RpcError(-32042, "no capacity", {"zone": "a"})

    handlers = {
        "Fail.Value": fail,
        "Fail.Rpc": refuse,
        "Bad.Result": lambda params: {1, 2},
        "Bad.Nan": lambda params: float("nan"),
    }
    server = start(ipc, handlers)
    raw = Raw(server.endpoint)
    yield server, raw
    raw.close()
    server.stop()


# -- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_round_trip(transport: str, ipc: str) -> None:
    endpoint = ipc if transport == "ipc" else "tcp://127.0.0.1:0"
    with start(endpoint) as server, RemoteRef(server.endpoint, timeout=5) as ref:
        if transport == "tcp":
            assert not server.endpoint.endswith(":0")
        assert ref.call("Echo.Echo", {"ID": "i-1", "Tags": {"a": "b"}}) == {
            "ID": "i-1",
            "Tags": {"a": "b"},
        }
        assert ref.call("Echo.Echo") == {}
        assert ref.call("rpc.ping") == "pong"
        assert ref.call("rpc.methods") == ["Echo.Echo", "rpc.methods", "rpc.ping"]
        assert ref.call_async("Echo.Echo", {"n": 1}).result(5) == {"n": 1}
        assert ref.alive


def test_many_threads_share_one_ref(ipc: str) -> None:
    results: dict[int, Any] = {}
    barrier = threading.Barrier(64)
    with start(ipc) as server, RemoteRef(server.endpoint, timeout=10) as ref:

        def caller(n: int) -> None:
            barrier.wait()
            results[n] = ref.call("Echo.Echo", {"n": n, "payload": "x" * n})

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
    assert results == {n: {"n": n, "payload": "x" * n} for n in range(64)}


@pytest.mark.parametrize("slow_call", ["async", "blocking"])
def test_slow_handler_does_not_block_a_fast_one(ipc: str, slow_call: str) -> None:
    """Neither on the server, nor on the client: a blocking caller holds one connection of
    its own while it waits, and the others carry on."""
    started, release = threading.Event(), threading.Event()

    def slow(params: dict[str, Any]) -> str:
        started.set()
        release.wait(10)
        return "slow"

    with start(ipc, {"Slow.Call": slow}) as server, RemoteRef(server.endpoint) as ref:
        wait_for(lambda: direct_connected(ref), what="the direct connection")
        if slow_call == "async":
            pending = ref.call_async("Slow.Call")
        else:
            pending = call_in_thread(ref, "Slow.Call")
        assert started.wait(5)
        for n in range(20):
            assert ref.call("Echo.Echo", {"n": n}) == {"n": n}
        assert not pending.done()
        release.set()
        assert pending.result(5) == "slow"


def test_notification_runs_the_handler_and_gets_no_reply(ipc: str) -> None:
    seen = threading.Event()

    def record(params: dict[str, Any]) -> None:
        if params == {"x": 1}:
            seen.set()

    with start(ipc, {"Note.Record": record}) as server, RemoteRef(server.endpoint) as ref:
        ref.notify("Note.Record", {"x": 1})
        assert seen.wait(5)
        ref.notify("No.Such")  # unknown method: silently ignored for a notification
        assert ref.call("rpc.ping") == "pong"


# -- timeouts and retries --------------------------------------------------------------


def test_timeout_raises_rpc_timeout(ipc: str) -> None:
    release = threading.Event()
    with (
        start(ipc, {"Instance.Provision": lambda params: release.wait(10)}) as server,
        RemoteRef(server.endpoint, timeout=0.2) as ref,
    ):
        with pytest.raises(RpcTimeout) as caught:
            ref.call("Instance.Provision", {})
        release.set()
        assert isinstance(caught.value, TimeoutError)
        assert str(caught.value) == f"Instance.Provision to {server.endpoint} timed out after 0.2s"
        assert ref.call("Echo.Echo", {"after": 1}, timeout=60) == {"after": 1}


@pytest.fixture
def router() -> Iterator[Router]:
    router = Router()
    yield router
    router.close()


def test_only_idempotent_methods_are_retried(router: Router) -> None:
    with RemoteRef(
        router.endpoint, timeout=0.2, retries=2, idempotent={"Instance.DescribeInstances"}
    ) as ref:
        wait_for(lambda: ref.alive, 5, "connection")
        provision = ref.call_async("Instance.Provision", {"n": 1})
        assert router.receive()[1]["method"] == "Instance.Provision"
        with pytest.raises(RpcTimeout) as caught:
            provision.result(10)
        assert caught.value.attempts == 1

        describe = ref.call_async("Instance.DescribeInstances", {})
        ids = [router.receive()[1]["id"] for _ in range(3)]
        with pytest.raises(RpcTimeout) as caught:
            describe.result(10)
        assert caught.value.attempts == 3
        assert len(set(ids)) == 1, "retries reuse the call's id"

        ref.notify("Marker")  # one connection is FIFO: nothing else may come before it
        assert router.receive()[1]["method"] == "Marker"


def test_an_idempotent_call_succeeds_on_a_retry(router: Router) -> None:
    with RemoteRef(router.endpoint, timeout=0.3, retries=2, idempotent={"Flavor.Healthy"}) as ref:
        pending = ref.call_async("Flavor.Healthy", {})
        router.receive()  # first attempt: dropped
        identity, request = router.receive()
        reply = {"jsonrpc": "2.0", "id": request["id"], "result": {"Health": 1}}
        router.sock.send_multipart([identity, json.dumps(reply).encode()])
        assert pending.result(10) == {"Health": 1}


# -- JSON-RPC errors -------------------------------------------------------------------


def request(method: Any, params: Any = None, id: Any = 7, **extra: Any) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method, **extra}
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode()


@pytest.mark.parametrize(
    ("body", "code", "id", "text"),
    [
        (b"{not json", -32700, None, "parse error"),
        (b"\xff\xfe{}", -32700, None, "not valid UTF-8"),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "rpc.ping", "x": NaN}', -32700, None, "column 56"),
        (b"", -32700, None, "empty message"),
        (b"42", -32600, None, "not a JSON object"),
        (b'[{"jsonrpc": "2.0", "id": 1, "method": "rpc.ping"}]', -32600, None, "batch"),
        (b'{"jsonrpc": "1.0", "id": 3, "method": "rpc.ping"}', -32600, 3, '"jsonrpc"'),
        (b'{"id": 3, "method": "rpc.ping"}', -32600, 3, '"jsonrpc"'),
        (request(5), -32600, 7, '"method"'),
        (request("rpc.ping", id=1.5), -32600, None, "id must be"),
        (request("rpc.ping", id=[1]), -32600, None, "id must be"),
        (request("rpc.ping", id=True), -32600, None, "id must be"),
        (request("Foo.Bar"), -32601, 7, "method not found: Foo.Bar"),
        (request("Echo.Echo", [1, 2]), -32602, 7, "not an array"),
        (request("Echo.Echo", "x"), -32602, 7, "must be an object"),
        (request("Fail.Value", {"size": -1}), -32000, 7, "bad size -1"),
        (request("Fail.Rpc", {}), -32042, 7, "no capacity"),
        (request("Bad.Result", {}), -32603, 7, "not JSON-serialisable"),
    ],
)
def test_error_replies(
    raw_server: tuple[RpcServer, Raw], body: bytes, code: int, id: Any, text: str
) -> None:
    _, raw = raw_server
    reply = raw.ask(body)
    assert reply["jsonrpc"] == "2.0"
    assert reply["id"] == id
    assert reply["error"]["code"] == code
    assert text in reply["error"]["message"]
    assert raw.ask(request("rpc.ping"))["result"] == "pong"


def test_a_nan_result_is_sent_as_null(raw_server: tuple[RpcServer, Raw]) -> None:
    """JSON has no NaN; like JavaScript's JSON.stringify, the server sends null."""
    _, raw = raw_server
    assert raw.ask(request("Bad.Nan", {})) == {"jsonrpc": "2.0", "id": 7, "result": None}


def test_error_data(raw_server: tuple[RpcServer, Raw]) -> None:
    _, raw = raw_server
    assert raw.ask(request("Fail.Value", {}))["error"]["data"] == {"type": "ValueError"}
    assert raw.ask(request("Fail.Rpc", {}))["error"]["data"] == {"zone": "a"}


def test_string_ids_and_req_style_delimiters(raw_server: tuple[RpcServer, Raw]) -> None:
    _, raw = raw_server
    assert raw.ask(request("rpc.ping", id="abc")) == {
        "jsonrpc": "2.0",
        "id": "abc",
        "result": "pong",
    }
    raw.send(b"", request("Echo.Echo", {"a": 1}))  # what a REQ socket sends
    assert raw.sock.poll(MIN_DEADLINE * 1000)
    delimiter, body = raw.sock.recv_multipart()
    assert delimiter == b""
    assert json.loads(body)["result"] == {"a": 1}


def test_multi_frame_junk_and_oversized_messages(ipc: str) -> None:
    with start(ipc, max_message_bytes=1000) as server:
        raw = Raw(server.endpoint)
        try:
            raw.send(b"a", b"b", b"c")
            assert raw.reply()["error"]["code"] == -32600
            raw.send(request("Echo.Echo", {"pad": "x" * 900}))
            assert raw.reply()["result"]["pad"] == "x" * 900
        finally:
            raw.close()
        # libzmq drops the connection of a peer that sends more than its hard ceiling.
        big = Raw(server.endpoint)
        big.send(request("Echo.Echo", {"pad": "x" * 5000}))
        big.close()
        with RemoteRef(server.endpoint) as ref:
            assert ref.call("rpc.ping") == "pong"


def test_a_message_over_the_limit_is_answered_with_its_size_not_dropped(ipc: str) -> None:
    """A client in another language learns why, instead of seeing its connection vanish."""
    with start(ipc, max_message_bytes=1000) as server:
        raw = Raw(server.endpoint)
        try:
            body = request("Echo.Echo", {"pad": "x" * 1500})
            reply = raw.ask(body)
            assert reply["id"] == 7
            assert reply["error"]["code"] == -32600
            assert reply["error"]["message"] == (
                f"message too large ({len(body)} bytes; at most 1000)"
            )
        finally:
            raw.close()


def test_remote_ref_refuses_a_message_too_large_before_sending(ipc: str) -> None:
    seen: list[Any] = []
    with (
        start(ipc, {"Keep.It": seen.append}, max_message_bytes=1000) as server,
        RemoteRef(server.endpoint, max_message_bytes=1000) as ref,
    ):
        with pytest.raises(MessageTooLarge) as caught:
            ref.call("Keep.It", {"pad": "x" * 2000})
        assert isinstance(caught.value, RemoteError)  # callers handle both alike
        assert caught.value.message.startswith("message too large (")
        assert caught.value.message.endswith(" bytes; at most 1000)")
        future = ref.call_async("Keep.It", {"pad": "x" * 2000})
        with pytest.raises(MessageTooLarge):
            future.result(timeout=5)
        assert ref.call("Keep.It", {"small": 1}) is None
    assert seen == [{"small": 1}]


@pytest.mark.parametrize(
    ("params", "where"),
    [
        (b'{"Size": 1, "Size": 1000000000}', "params.Size: given more than once"),
        (b'{"Size": 18446744073709551616}', "params.Size: an integer beyond 64 bits"),
        (b'{"Spec": ' + b"[" * 80 + b"]" * 80 + b"}", "nested deeper than 72 levels"),
    ],
)
def test_requests_that_json_parsers_would_take_are_refused_with_their_id(
    ipc: str, params: bytes, where: str
) -> None:
    """Duplicate keys (the last would win), integers beyond 64 bits (orjson makes floats of
    them) and deep nesting never reach a handler."""
    seen: list[Any] = []
    with start(ipc, {"Keep.It": seen.append}) as server:
        raw = Raw(server.endpoint)
        try:
            body = b'{"jsonrpc": "2.0", "id": 9, "method": "Keep.It", "params": ' + params + b"}"
            reply = raw.ask(body)
        finally:
            raw.close()
    assert reply["id"] == 9
    assert reply["error"]["code"] == -32602
    assert where in reply["error"]["message"]
    assert seen == []


def test_remote_error_carries_the_servers_message(raw_server: tuple[RpcServer, Raw]) -> None:
    server, _ = raw_server
    with RemoteRef(server.endpoint) as ref:
        with pytest.raises(RemoteError) as caught:
            ref.call("Fail.Value", {"size": 3})
        error = caught.value
        assert (error.code, error.message, error.data) == (
            -32000,
            "bad size 3",
            {"type": "ValueError"},
        )
        assert error.method == "Fail.Value"
        assert isinstance(error, RpcError)
        assert "Fail.Value: bad size 3" in str(error)
        with pytest.raises(RemoteError, match=r"method not found: No\.Such"):
            ref.call("No.Such")


def test_reserved_and_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="reserved"):
        RpcServer("tcp://127.0.0.1:0", {"rpc.ping": echo})
    with pytest.raises(ValueError):
        RpcServer("tcp://127.0.0.1:0", {}, workers=0)


# -- binding ---------------------------------------------------------------------------


def test_second_bind_to_a_live_ipc_server_is_refused(ipc: str) -> None:
    with start(ipc) as server:
        with pytest.raises(AddressInUse, match=r"answers rpc\.ping"):
            start(ipc)
        with RemoteRef(server.endpoint) as ref:
            assert ref.call("rpc.ping") == "pong"


def test_second_bind_to_a_live_tcp_server_is_refused() -> None:
    with start("tcp://127.0.0.1:0") as server, pytest.raises(AddressInUse):
        start(server.endpoint)


def test_a_stale_socket_file_is_taken_over(tmp_path: Path, ipc: str) -> None:
    path = ipc.removeprefix("ipc://")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.listen()
    stale.close()  # the file stays, nothing listens: as after a kill -9
    assert os.path.exists(path)
    with start(ipc) as server, RemoteRef(server.endpoint) as ref:
        assert ref.call("rpc.ping") == "pong"
    assert not os.path.exists(path), "stop() removes the socket file"


def test_a_listener_that_is_not_an_rpc_server_is_not_stolen(ipc: str) -> None:
    other: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PULL)
    other.linger = 0
    other.bind(ipc)
    try:
        with pytest.raises(AddressInUse, match="does not answer"):
            start(ipc, probe_timeout=0.2)
    finally:
        other.close()


# -- peer death ------------------------------------------------------------------------

SERVER_SCRIPT = textwrap.dedent(
    """
    import sys
    from actors.remote import RpcServer

    server = RpcServer(sys.argv[1], {"Echo.Echo": lambda params: params}).start()
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def spawn_server(endpoint: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT, endpoint],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def test_peer_death_is_reported_and_the_ref_recovers(ipc: str) -> None:
    events: list[tuple[str, str]] = []
    process = spawn_server(ipc)
    try:
        # The peer's death is seen by its socket closing, not by missed heartbeats: a slow
        # heartbeat keeps a busy machine from missing some and reporting a death too early.
        with RemoteRef(
            ipc,
            timeout=0.5,
            heartbeat=1.0,
            on_down=lambda reason: events.append(("down", reason)),
            on_up=lambda reason: events.append(("up", reason)),
        ) as ref:
            assert ref.call("Echo.Echo", {"n": 1}, timeout=60) == {"n": 1}
            assert ref.alive
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            wait_for(lambda: not ref.alive, 10, "peer seen down")
            assert events[0][0] == "up"
            assert events[1] == ("down", f"disconnected from {ipc}")
            with pytest.raises(RpcTimeout, match="peer down"):
                ref.call("Echo.Echo", {"n": 2})

            process = spawn_server(ipc)  # takes over the stale socket file
            wait_for(lambda: ref.alive, 10, "peer seen back")
            assert events[-1] == ("up", f"connected to {ipc}")
            assert ref.call("Echo.Echo", {"n": 3}, timeout=60) == {"n": 3}
    finally:
        process.kill()
        process.wait(10)


def test_close_fails_pending_calls_and_does_not_hang(tmp_path: Path) -> None:
    ref = RemoteRef(f"ipc://{tmp_path}/nobody.sock", timeout=30)
    pending = ref.call_async("Echo.Echo", {})
    ref.close()
    with pytest.raises(RpcClosed):
        pending.result(5)
    with pytest.raises(RpcClosed):
        ref.call("Echo.Echo")


def test_down_is_reported_when_nothing_listens(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    reasons: list[str] = []
    with RemoteRef(f"ipc://{path}", on_down=reasons.append, timeout=0.2) as ref:
        wait_for(lambda: reasons, 10, "on_down")
        assert "cannot connect" in reasons[0]
        assert not ref.alive
        with pytest.raises(RpcTimeout, match="peer down: cannot connect"):
            ref.call("rpc.ping")


# -- CURVE -----------------------------------------------------------------------------


def test_curve_admits_only_authorized_keys(tmp_path: Path) -> None:
    authorized = tmp_path / "authorized"
    server_public, server_secret = generate_keypair(tmp_path / "server", "server")
    client_public, _ = generate_keypair(tmp_path / "client", "client")
    authorized.mkdir()
    shutil.copy(client_public, authorized)  # only the client's public key is authorized
    generate_keypair(tmp_path / "intruder", "intruder")

    def client_config(name: str) -> CurveClientConfig:
        public, secret = load_keypair(tmp_path / name / f"{name}.key_secret")
        assert secret is not None
        return CurveClientConfig(public, secret, load_keypair(server_public)[0])

    public, secret = load_keypair(server_secret)
    assert secret is not None
    curve = CurveServerConfig(public, secret, str(authorized))
    with start("tcp://127.0.0.1:0", curve=curve) as server:
        reasons: list[str] = []
        with RemoteRef(
            server.endpoint, curve=client_config("intruder"), timeout=0.3, on_down=reasons.append
        ) as intruder:
            with pytest.raises(RpcTimeout):
                intruder.call("Echo.Echo", {"secret": True})
            wait_for(lambda: reasons, 5, "handshake failure reported")
            assert "handshake" in reasons[0]
        with RemoteRef(server.endpoint, timeout=0.3) as plain, pytest.raises(RpcTimeout):
            plain.call("Echo.Echo", {"secret": True})
        with RemoteRef(server.endpoint, curve=client_config("client"), timeout=5) as client:
            assert client.call("Echo.Echo", {"secret": True}) == {"secret": True}
        assert server.running


# -- serving an actor ------------------------------------------------------------------


class Inventory(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.items: dict[str, int] = {}

    def add(self, name: str, count: int = 1) -> int:
        if count < 0:
            raise ValueError(f"negative count {count}")
        self.items[name] = self.items.get(name, 0) + count
        return self.items[name]

    def describe(self) -> dict[str, int]:
        return dict(self.items)


def test_serve_actor(ipc: str) -> None:
    actor = Inventory.start()
    methods = {"Inventory.Add": "add", "Inventory.Describe": "describe"}
    server = serve_actor(actor, ipc, methods)
    try:
        with RemoteRef(server.endpoint) as ref:
            assert ref.call("Inventory.Add", {"name": "disk", "count": 2}) == 2
            assert ref.call("Inventory.Add", {"name": "disk"}) == 3
            assert ref.call("Inventory.Describe") == {"disk": 3}
            with pytest.raises(RemoteError) as caught:
                ref.call("Inventory.Add", {"nmae": "disk"})
            assert caught.value.code == -32602
            with pytest.raises(RemoteError, match="negative count -1") as caught:
                ref.call("Inventory.Add", {"name": "disk", "count": -1})
            assert caught.value.code == -32000
            actor.stop()
            with pytest.raises(RemoteError, match="actor is not running") as caught:
                ref.call("Inventory.Describe")
            assert caught.value.code == -32001
    finally:
        server.stop()
        pykka.ActorRegistry.stop_all()


def test_serve_actor_refuses_unknown_methods(ipc: str) -> None:
    actor = Inventory.start()
    try:
        with pytest.raises(ValueError, match="no_such"):
            serve_actor(actor, ipc, {"Inventory.X": "no_such"})
    finally:
        actor.stop()


def test_slow_handlers_run_side_by_side_up_to_workers(ipc: str) -> None:
    """Each handler that blocks leaves the socket to another thread, so `workers` of them run
    at once (the barrier opens only then); past that, calls wait, and built-ins are still
    answered meanwhile."""
    barrier = threading.Barrier(3, timeout=10)
    release = threading.Event()
    echoed = threading.Event()
    entered: list[int] = []

    def hold(params: dict[str, Any]) -> bool:
        entered.append(1)
        return release.wait(10)

    def echo_and_mark(params: dict[str, Any]) -> Any:
        echoed.set()
        return params

    handlers = {
        "Wait.Barrier": lambda params: barrier.wait() >= 0,
        "Wait.Release": hold,
        "Echo.Echo": echo_and_mark,
    }
    with start(ipc, handlers, workers=3) as server, RemoteRef(server.endpoint) as ref:
        met = [ref.call_async("Wait.Barrier") for _ in range(3)]
        assert [future.result(15) for future in met] == [True] * 3

        held = [ref.call_async("Wait.Release") for _ in range(3)]
        wait_for(lambda: len(entered) == 3, 10, "three calls running")
        echo = ref.call_async("Echo.Echo", {"n": 1})
        for _ in range(5):  # answered by whichever thread leads, with every worker busy
            assert ref.call("rpc.ping") == "pong"
        assert not echoed.is_set(), "a fourth call ran while three workers were busy"
        release.set()
        assert echo.result(10) == {"n": 1}
        assert [future.result(10) for future in held] == [True] * 3


def test_a_handler_may_stop_its_own_server(ipc: str) -> None:
    """As a runtime does when it stops from a request: stop() from a handler's thread."""
    stopped = threading.Event()
    box: list[RpcServer] = []

    def stop(params: dict[str, Any]) -> str:
        box[0].stop(timeout=1)
        stopped.set()
        return "stopped"

    server = start(ipc, {"Server.Stop": stop})
    box.append(server)
    with RemoteRef(server.endpoint, timeout=5) as ref:
        ref.call_async("Server.Stop")  # its reply is lost with the server
        assert stopped.wait(10)
        assert not server.running
        assert not Path(ipc[len("ipc://") :]).exists()


def test_a_handler_that_raises_does_not_stop_the_server(ipc: str) -> None:
    def fail(params: dict[str, Any]) -> Any:
        raise KeyError("gone")

    with start(ipc, {"Fail.Key": fail}) as server, RemoteRef(server.endpoint) as ref:
        for _ in range(3):
            with pytest.raises(RemoteError, match="gone"):
                ref.call("Fail.Key")
        assert ref.call("Echo.Echo", {"after": True}) == {"after": True}
    with pytest.raises(ValueError, match="handover_after"):
        RpcServer(ipc, {}, handover_after=0)


def test_a_bad_request_is_logged(
    raw_server: tuple[RpcServer, Raw], caplog: pytest.LogCaptureFixture
) -> None:
    _, raw = raw_server
    with caplog.at_level("WARNING", logger="actors.remote"):
        raw.ask(b"{oops")
    assert any("parse error" in record.getMessage() for record in caplog.records)


def test_a_call_in_flight_when_the_peer_dies_fails_at_once_with_peer_down(
    tmp_path: Path,
) -> None:
    """A non-idempotent call sent to a server that then dies fails when the connection drops,
    long before its own deadline; an idempotent one is sent again to the server that returns."""

    endpoint = f"ipc://{tmp_path}/dying"
    process = start_hanging_server(endpoint)
    try:
        with RemoteRef(endpoint, timeout=60.0, heartbeat=0.2) as ref:
            provision = ref.call_async("Slow.Provision", {})
            # In flight: the server has it (killed before that, it would be a call never sent,
            # which waits for the server to come back, as it should).
            assert process.stdout.readline().strip() == "called"
            process.kill()
            process.wait(10)
            with pytest.raises(PeerDown, match="may or may not have taken effect"):
                provision.result(timeout=20)  # far less than the call's own 60 s
    finally:
        if process.poll() is None:
            process.kill()


# -- blocking calls on the caller's own connection -------------------------------------


def direct_connected(ref: RemoteRef) -> bool:
    """Whether the ref's idle direct connection is up, so that the next `call` goes out on
    the caller's thread (white box: only for tests that must take that path)."""
    idle = ref._direct_idle
    return bool(idle) and all(direct.check() for direct in idle)


def answer(router: Router, result: Any, *, drop: int = 0) -> list[dict[str, Any]]:
    """Let the router drop `drop` requests, answer the next with `result`; return them all."""
    seen = []
    for _ in range(drop):
        seen.append(router.receive()[1])
    identity, request = router.receive()
    seen.append(request)
    reply = {"jsonrpc": "2.0", "id": request["id"], "result": result}
    router.sock.send_multipart([identity, json.dumps(reply).encode()])
    return seen


def call_in_thread(
    ref: RemoteRef, method: str, params: Any = None, timeout: float | None = None
) -> Future[Any]:
    """`ref.call` on a thread of its own, its outcome in a future."""
    outcome: Future[Any] = Future()

    def run() -> None:
        try:
            outcome.set_result(ref.call(method, params, timeout=timeout))
        except BaseException as error:
            outcome.set_exception(error)

    threading.Thread(target=run, daemon=True).start()
    return outcome


def test_a_blocking_call_is_retried_and_times_out_like_any_other(router: Router) -> None:
    with RemoteRef(router.endpoint, timeout=0.3, retries=2, idempotent={"Flavor.Healthy"}) as ref:
        wait_for(lambda: direct_connected(ref), what="the direct connection")
        healthy = call_in_thread(ref, "Flavor.Healthy", {"n": 1})
        attempts = answer(router, {"Health": 1}, drop=1)
        assert healthy.result(10) == {"Health": 1}
        assert [a["id"] for a in attempts] == [attempts[0]["id"]] * 2, "a retry reuses the id"

        with pytest.raises(RpcTimeout) as caught:
            ref.call("Instance.Provision", {"n": 2})
        assert caught.value.attempts == 1
        assert router.receive()[1]["method"] == "Instance.Provision"
        assert not router.sock.poll(100), "a call that is not idempotent is sent once"


def test_a_late_reply_to_a_timed_out_call_does_not_answer_the_next(router: Router) -> None:
    with RemoteRef(router.endpoint, timeout=0.3) as ref:
        wait_for(lambda: direct_connected(ref), what="the direct connection")
        with pytest.raises(RpcTimeout):
            ref.call("Instance.Provision", {"n": 1})
        identity, late = router.receive()
        stale = {"jsonrpc": "2.0", "id": late["id"], "result": "stale"}
        router.sock.send_multipart([identity, json.dumps(stale).encode()])
        echo = call_in_thread(ref, "Echo.Echo", {"n": 2}, timeout=60)  # a slow test thread
        answer(router, "fresh")
        assert echo.result(120) == "fresh"


def test_close_wakes_a_blocking_call(ipc: str) -> None:
    started, release = threading.Event(), threading.Event()

    def slow(params: dict[str, Any]) -> None:
        started.set()
        release.wait(30)

    with start(ipc, {"Slow.Call": slow}) as server:
        ref = RemoteRef(server.endpoint, timeout=60)
        wait_for(lambda: direct_connected(ref), what="the direct connection")
        waiting = call_in_thread(ref, "Slow.Call", {})
        assert started.wait(10)
        ref.close()
        with pytest.raises(RpcClosed):
            waiting.result(10)  # not the call's own 60 s
        release.set()


def test_blocking_calls_in_flight_when_the_peer_dies(tmp_path: Path) -> None:
    """On the caller's own connection too: a call that is not idempotent fails at once with
    PeerDown; an idempotent one is sent again to the server that comes back."""
    endpoint = f"ipc://{tmp_path}/dying"
    script = (
        "import sys, threading\n"
        "from actors.remote import RpcServer\n"
        "hang = threading.Event()\n"
        "def describe(p):\n"
        "    if sys.argv[2] == 'hang':\n"
        "        print('describing', flush=True)\n"
        "        hang.wait()\n"
        "    return {'Descriptions': []}\n"
        "def provision(p):\n"
        "    print('provisioning', flush=True)\n"
        "    hang.wait()\n"
        "handlers = {'Slow.Provision': provision, 'Instance.DescribeInstances': describe}\n"
        "RpcServer(sys.argv[1], handlers).start()\n"
        "print('ready', flush=True)\n"
        "hang.wait()\n"
    )

    def serve(mode: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", script, endpoint, mode],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        return process

    process = serve("hang")
    options: dict[str, Any] = {"timeout": 60.0, "heartbeat": 0.2}
    try:
        with (
            RemoteRef(endpoint, **options) as ref,
            RemoteRef(endpoint, idempotent={"Instance.DescribeInstances"}, **options) as other,
        ):
            wait_for(lambda: direct_connected(ref) and direct_connected(other), what="both")
            provision = call_in_thread(ref, "Slow.Provision", {})
            describe = call_in_thread(other, "Instance.DescribeInstances", {"Tags": {}})
            assert process.stdout is not None
            assert {process.stdout.readline().strip() for _ in range(2)} == {
                "provisioning",
                "describing",
            }
            process.kill()
            process.wait(10)
            with pytest.raises(PeerDown, match="may or may not have taken effect"):
                provision.result(timeout=20)  # far less than the call's own 60 s
            assert not describe.done()
            process = serve("answer")
            assert describe.result(timeout=20) == {"Descriptions": []}
    finally:
        process.kill()
        process.wait(10)
