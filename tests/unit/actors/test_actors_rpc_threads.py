"""The RPC server's threads answer every call and serve the next, whatever a handler does:
raise anything, raise with a message that is not UTF-8, or return what JSON cannot carry."""

from __future__ import annotations

import collections
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
import zmq

from actors.leader_followers import LeaderFollowers, Replies
from actors.remote import RemoteRef, RpcServer
from actors.rpc_errors import RemoteError, RpcError


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("cannot say what went wrong")


def raise_(error: BaseException) -> Any:
    raise error


HANDLERS: dict[str, Any] = {
    "Echo.Echo": lambda params: params,
    "Raise.Surrogate": lambda params: raise_(ValueError("bad \ud800 name")),
    "Raise.RpcSurrogate": lambda params: raise_(RpcError(-32042, "no \udc00 room", "\ud800")),
    "Raise.Unprintable": lambda params: raise_(Unprintable()),
    "Raise.SystemExit": lambda params: raise_(SystemExit(3)),
    "Return.Surrogate": lambda params: {"Name": "\ud800"},
    "Return.Object": lambda params: object(),
    "Return.Deep": lambda params: _deep(1000),
}


def _deep(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
def ref(tmp_path: Path) -> Any:
    server = RpcServer(f"ipc://{tmp_path}/rpc.sock", HANDLERS, name="threads").start()
    with RemoteRef(server.endpoint, timeout=10, retries=0) as client:
        yield client
    server.stop()


@pytest.mark.parametrize(
    ("method", "code", "text"),
    [
        ("Raise.Surrogate", -32000, r"bad \ud800 name"),
        ("Raise.RpcSurrogate", -32042, r"no \udc00 room"),
        ("Raise.Unprintable", -32000, "Unprintable"),
        ("Raise.SystemExit", -32000, "3"),
        ("Return.Surrogate", -32603, "not JSON-serialisable"),
        ("Return.Object", -32603, "not JSON-serialisable"),
        ("Return.Deep", -32603, "not JSON-serialisable"),
    ],
)
def test_every_call_gets_an_answer_and_the_next_is_served(
    ref: RemoteRef, method: str, code: int, text: str
) -> None:
    """Before, an error whose message was not UTF-8 (or could not be printed) was never
    answered: the caller waited for its timeout and took the server for dead."""
    for _ in range(3):  # the same thread, or another, serves the next call
        with pytest.raises(RemoteError) as caught:
            ref.call(method)
        assert caught.value.code == code
        assert text in caught.value.message
        assert ref.call("Echo.Echo", {"after": method}) == {"after": method}


def test_a_handler_failure_is_logged_once_at_error_with_its_traceback(
    ref: RemoteRef, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("DEBUG", logger="actors.remote"):
        with pytest.raises(RemoteError):
            ref.call("Raise.Surrogate")
        with pytest.raises(RemoteError):
            ref.call("Return.Object")
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.levelname for r in errors] == ["ERROR", "ERROR"]
    assert all(r.exc_info for r in errors)
    assert "Raise.Surrogate" in errors[0].getMessage()
    assert "Return.Object" in errors[1].getMessage()


def test_a_read_or_a_job_that_raises_anything_leaves_the_threads_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """LeaderFollowers' callbacks must not raise; if one does, it is logged and the
    threads serve on."""
    context = zmq.Context.instance()
    server = context.socket(zmq.ROUTER)
    port = server.bind_to_random_port("tcp://127.0.0.1")
    client = context.socket(zmq.DEALER)
    client.linger = 0
    client.connect(f"tcp://127.0.0.1:{port}")
    reads = 0

    def read(sock: zmq.Socket[bytes], jobs: collections.deque[Any], replies: Replies) -> None:
        nonlocal reads
        reads += 1
        if reads == 1:
            raise SystemExit("a read gave up")
        while sock.poll(0):
            jobs.append(sock.recv_multipart())

    def run(job: list[bytes]) -> list[bytes]:
        if job[1] == b"exit":
            raise SystemExit("a job gave up")
        return [job[0], b"done " + job[1]]

    closed = threading.Event()
    serving = LeaderFollowers(
        server, read, run, closed.set, workers=2, name="lf", log=logging.getLogger("lf")
    )
    with caplog.at_level("ERROR", logger="lf"):
        serving.start()
        try:
            for body in (b"first", b"exit", b"next"):
                client.send(body)
            assert client.poll(10_000) and client.recv() == b"done first"
            assert client.poll(10_000) and client.recv() == b"done next"
            assert serving.alive
        finally:
            serving.stop(5)
            client.close()
    assert closed.is_set()
    failures = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert [str(error) for error in failures] == ["a read gave up", "a job gave up"]
