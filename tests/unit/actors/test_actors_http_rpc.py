"""Tests for actors.http_rpc: JSON-RPC over HTTP on real unix sockets, a real server process
for the kill test."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import wait_for

from actors.http_rpc import HttpRef, HttpRpcServer, probe_http
from actors.remote import RpcServer
from actors.rpc_errors import (
    APPLICATION_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    AddressInUse,
    MessageTooLarge,
    PeerDown,
    RemoteError,
    RpcClosed,
    RpcError,
    RpcTimeout,
)

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short directory (unix socket paths are limited to about 100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="hr", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def handlers() -> dict[str, Any]:
    def fail(_p: dict[str, Any]) -> Any:
        raise ValueError("no good")

    def coded(_p: dict[str, Any]) -> Any:
        raise RpcError(-32050, "refused", {"Why": "because"})

    return {
        "Echo.Echo": lambda p: p,
        "Fail.Now": fail,
        "Fail.Coded": coded,
        "Bad.Result": lambda _p: object(),
    }


def raw(path: Path, data: bytes) -> bytes:
    """Send raw bytes on a fresh connection and read until the server closes it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def post(path: Path, body: bytes, extra: str = "") -> bytes:
    head = f"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n{extra}"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return raw(path, head.encode() + body)


def test_round_trip_errors_and_keep_alive(sockdir: Path) -> None:
    with HttpRpcServer(sockdir / "s", handlers()) as server:
        assert server.endpoint == f"unix://{sockdir / 's'}"
        with HttpRef(server.endpoint, timeout=30) as ref:
            assert ref.call("Echo.Echo", {"A": [1, "x"]}) == {"A": [1, "x"]}
            assert ref.call("rpc.ping") == "pong"
            assert "Echo.Echo" in ref.call("rpc.methods")
            with pytest.raises(RemoteError) as caught:
                ref.call("Fail.Now")
            assert (caught.value.code, caught.value.message) == (APPLICATION_ERROR, "no good")
            with pytest.raises(RemoteError) as caught:
                ref.call("Fail.Coded")
            assert caught.value.code == -32050 and caught.value.data == {"Why": "because"}
            with pytest.raises(RemoteError) as caught:
                ref.call("Nope.Nope")
            assert caught.value.code == METHOD_NOT_FOUND
            with pytest.raises(RemoteError):
                ref.call("Bad.Result")
            assert ref.alive
            # Many calls from many threads, over kept-alive connections.
            results: list[Any] = []

            def worker(n: int) -> None:
                for i in range(50):
                    results.append(ref.call("Echo.Echo", {"N": n, "I": i})["I"])

            threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert len(results) == 300


def test_garbage_gets_json_rpc_errors_and_the_server_lives(sockdir: Path) -> None:
    with HttpRpcServer(sockdir / "s", handlers(), max_message_bytes=1000) as server:
        path = server.path
        assert b'"code":-32700' in post(path, b"{not json")
        assert b'"code":-32600' in post(path, b'{"jsonrpc":"1.0","id":1,"method":"x"}')
        assert b"413" in post(path, b"x" * 2000).split(b"\r\n")[0]
        assert b'"code":-32600' in raw(path, b"\x00\x01garbage\r\n\r\n")
        assert b"405" in raw(path, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").split(b"\r\n")[0]
        assert b"411" in raw(path, b"POST / HTTP/1.1\r\nHost: h\r\n\r\n").split(b"\r\n")[0]
        notification = b'{"jsonrpc":"2.0","method":"Echo.Echo","params":{}}'
        assert post(path, notification).startswith(b"HTTP/1.1 204")
        with HttpRef(server.endpoint, timeout=30, max_message_bytes=1000) as ref:
            with pytest.raises(MessageTooLarge):
                ref.call("Echo.Echo", {"X": "y" * 2000})
            assert ref.call("Echo.Echo", {"Still": "alive"}) == {"Still": "alive"}


def test_curl_like_request_any_path(sockdir: Path) -> None:
    with HttpRpcServer(sockdir / "s", handlers()) as server:
        body = b'{"jsonrpc":"2.0","id":"7","method":"Echo.Echo","params":{"K":1}}'
        reply = post(server.path, body)
        assert reply.startswith(b"HTTP/1.1 200")
        assert b"application/json" in reply
        assert reply.endswith(b'{"jsonrpc":"2.0","id":"7","result":{"K":1}}')
        assert b'"code":%d' % PARSE_ERROR in post(server.path, b"")


def test_stale_socket_taken_over_live_one_refused(sockdir: Path) -> None:
    path = sockdir / "s"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    with HttpRpcServer(path, handlers()) as server:
        with pytest.raises(AddressInUse):
            HttpRpcServer(path, handlers()).start()
        assert probe_http(server.path) == []  # answers, lists no APIs
    assert not path.exists()


def test_probe_tells_http_from_other_sockets(sockdir: Path) -> None:
    apis = [{"Name": "Instance", "Version": "0.1.0"}]
    with HttpRpcServer(sockdir / "h", {"Plugin.Implements": lambda _p: {"APIs": apis}}):
        assert probe_http(sockdir / "h") == apis
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(sockdir / "z"))
    silent.listen()
    try:
        assert probe_http(sockdir / "z", timeout=0.2) is None
    finally:
        silent.close()
    assert probe_http(sockdir / "missing") is None


def test_probe_of_a_zeromq_socket_does_not_sit_out_its_timeout(sockdir: Path) -> None:
    """A ZeroMQ server greets first, so the probe knows at once that it is no HTTP server:
    `plugin ls` and `instance --name` probe every plugin that way. (The probe's timeout is
    longer than the test's own: without the greeting check it never returns in time.)"""
    with RpcServer(f"ipc://{sockdir / 'zmq'}", handlers()):
        assert probe_http(sockdir / "zmq", timeout=3600.0) is None


def test_call_waits_for_a_server_that_starts_late(sockdir: Path) -> None:
    events: list[str] = []
    ref = HttpRef(
        f"unix://{sockdir / 's'}",
        timeout=60,
        on_up=lambda r: events.append("up"),
        on_down=lambda r: events.append("down"),
    )
    try:
        wait_for(lambda: "down" in events, what="first down")
        assert not ref.alive
        with pytest.raises(RpcTimeout):
            ref.call("Echo.Echo", {}, timeout=0.3)
        server = HttpRpcServer(sockdir / "s", handlers())
        result: list[Any] = []
        caller = threading.Thread(target=lambda: result.append(ref.call("Echo.Echo", {"A": 1})))
        caller.start()
        server.start()
        caller.join()
        assert result == [{"A": 1}]
        wait_for(lambda: ref.alive and events[-1] == "up", what="up")
        server.stop()
        ref.close()
        with pytest.raises(RpcClosed):
            ref.call("Echo.Echo")
    finally:
        ref.close()


SERVER_SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    from actors.http_rpc import HttpRpcServer

    def slow(p):
        time.sleep(p.get("Seconds", 0))
        return "done"

    server = HttpRpcServer(sys.argv[1], {"Slow.Sleep": slow, "Slow.Read": slow})
    server.start()
    print("ready", flush=True)
    threading.Event().wait()
    """
)


def start_server(path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def test_server_killed_mid_call_then_back(sockdir: Path) -> None:
    path = sockdir / "s"
    events: list[str] = []
    process = start_server(path)
    ref = HttpRef(
        f"unix://{path}",
        timeout=60,
        retries=1,
        idempotent={"Slow.Read"},
        on_up=lambda r: events.append("up"),
        on_down=lambda r: events.append("down"),
    )
    try:
        assert ref.call("Slow.Sleep", {"Seconds": 0}) == "done"
        outcome: list[Any] = []

        def slow_call() -> None:
            try:
                outcome.append(ref.call("Slow.Sleep", {"Seconds": 600}))
            except Exception as error:
                outcome.append(error)

        caller = threading.Thread(target=slow_call)
        caller.start()
        idempotent: list[Any] = []

        def read_call() -> None:
            idempotent.append(ref.call("Slow.Read", {"Seconds": 0.5}))

        wait_for(lambda: len(os.listdir(f"/proc/{process.pid}/task")) > 2, what="call running")
        process.send_signal(signal.SIGKILL)
        process.wait()
        caller.join()
        assert isinstance(outcome[0], PeerDown)
        assert "may or may not have taken effect" in str(outcome[0])
        wait_for(lambda: "down" in events, what="down event")
        reader = threading.Thread(target=read_call)
        reader.start()  # waits for the server to come back
        process = start_server(path)  # takes over the stale socket file
        reader.join()
        assert idempotent == ["done"]
        wait_for(lambda: events[-1] == "up" and ref.alive, what="up event")
    finally:
        ref.close()
        process.kill()
        process.wait()


def test_invalid_request_code_on_wrong_version(sockdir: Path) -> None:
    with HttpRpcServer(sockdir / "s", handlers()) as server:
        reply = post(server.path, b'{"jsonrpc":"2.0","id":1,"method":5}')
        assert b'"code":%d' % INVALID_REQUEST in reply
