"""Tests for actors.blocking_client: `BlockingRef` against real servers on real sockets (an
`RpcServer`, a bare ROUTER to see exactly what arrives, a server process killed mid-call)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from support import Router, start_hanging_server, wait_for

from actors.blocking_client import BlockingRef
from actors.curve import CurveClientConfig, CurveServerConfig, generate_keypair, load_keypair
from actors.rpc_errors import MessageTooLarge, PeerDown, RemoteError, RpcClosed, RpcTimeout
from actors.rpc_server import RpcServer


@pytest.fixture
def ipc(tmp_path: Path) -> str:
    return f"ipc://{tmp_path}/rpc.sock"


def echo(params: dict[str, Any]) -> Any:
    return params


def fail(params: dict[str, Any]) -> Any:
    raise ValueError("no such thing")


@pytest.fixture
def router() -> Iterator[Router]:
    router = Router()
    yield router
    router.close()


def test_calls_results_and_error_replies(ipc: str) -> None:
    with (
        RpcServer(ipc, {"Echo.Echo": echo, "Echo.Fail": fail}) as server,
        BlockingRef(server.endpoint, timeout=60) as ref,
    ):
        assert ref.wait_up(60) and ref.alive
        assert ref.call("Echo.Echo", {"n": 1}) == {"n": 1}
        assert ref.call("Echo.Echo") == {}
        with pytest.raises(RemoteError) as caught:
            ref.call("Echo.Fail", {})
        assert caught.value.method == "Echo.Fail" and "no such thing" in caught.value.message
        with pytest.raises(RemoteError) as unknown:
            ref.call("Echo.Nothing", {})
        assert unknown.value.code == -32601
        assert ref.call("Echo.Echo", {"n": 2}) == {"n": 2}, "usable after an error"


def test_a_call_waits_for_a_server_that_starts_late(ipc: str) -> None:
    with BlockingRef(ipc, timeout=60) as ref:
        assert not ref.alive
        started: list[RpcServer] = []
        timer = threading.Timer(0.3, lambda: started.append(RpcServer(ipc, {"E": echo}).start()))
        timer.start()
        try:
            assert ref.call("E", {"late": True}) == {"late": True}
        finally:
            timer.join()
            for server in started:
                server.stop()


def test_only_idempotent_methods_are_retried_with_one_id(router: Router) -> None:
    with BlockingRef(router.endpoint, timeout=0.3, retries=2, idempotent={"Describe"}) as ref:
        assert ref.wait_up(60)
        with pytest.raises(RpcTimeout) as once:
            ref.call("Provision", {})
        assert once.value.attempts == 1
        assert router.receive()[1]["method"] == "Provision"

        with pytest.raises(RpcTimeout) as thrice:
            ref.call("Describe", {})
        assert thrice.value.attempts == 3
        assert str(thrice.value) == (
            f"Describe to {router.endpoint} timed out after 0.3s (each of 3 attempts)"
        )
        ids = {router.receive()[1]["id"] for _ in range(3)}
        assert len(ids) == 1, "retries reuse the call's id"


def test_a_late_reply_answers_its_call_and_never_the_next(router: Router) -> None:
    with BlockingRef(router.endpoint, timeout=0.5, retries=3, idempotent={"Healthy"}) as ref:
        outcome: list[Any] = []
        thread = threading.Thread(target=lambda: outcome.append(ref.call("Healthy", {})))
        thread.start()
        identity, first = router.receive()  # not answered: the call is sent again
        router.receive()
        router.answer(identity, first["id"], {"Health": 1})  # the first attempt's reply
        thread.join(60)
        assert outcome == [{"Health": 1}]
        router.answer(identity, first["id"], {"Health": 2})  # a stray duplicate
        pending = threading.Thread(target=lambda: outcome.append(ref.call("Healthy", {"n": 2})))
        pending.start()
        identity, second = router.receive()
        assert second["id"] != first["id"]
        router.answer(identity, second["id"], {"Health": 3})
        pending.join(60)
        assert outcome == [{"Health": 1}, {"Health": 3}]


def test_nothing_listening_is_a_timeout_that_says_so(tmp_path: Path) -> None:
    with BlockingRef(f"ipc://{tmp_path}/nobody", timeout=0.2, retries=0) as ref:
        assert not ref.wait_up(0.2)
        assert not ref.refused
        with pytest.raises(RpcTimeout, match="peer down"):
            ref.call("Echo.Echo", {})


def test_a_call_in_flight_when_the_server_dies_fails_with_peer_down(tmp_path: Path) -> None:
    """Not idempotent: `PeerDown` as soon as the connection drops, long before its deadline."""
    endpoint = f"ipc://{tmp_path}/dying"
    process = start_hanging_server(endpoint)
    try:
        with BlockingRef(endpoint, timeout=600, idempotent={"Slow.Describe"}) as ref:
            errors: list[BaseException] = []

            def provision() -> None:
                try:
                    ref.call("Slow.Provision", {})
                except BaseException as error:
                    errors.append(error)

            thread = threading.Thread(target=provision)
            thread.start()
            assert process.stdout is not None and process.stdout.readline().strip() == "called"
            process.kill()
            process.wait(60)
            thread.join(120)
            assert not thread.is_alive(), "still waiting for a reply that cannot come"
            assert len(errors) == 1 and isinstance(errors[0], PeerDown), errors
            assert "may or may not have taken effect" in str(errors[0])
    finally:
        process.kill()
        process.wait(60)


def bound(sock: zmq.Socket[bytes], endpoint: str) -> bool:
    """Bind `sock` to `endpoint`; False while the port is still held (a closing socket)."""
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as error:
        if error.errno != zmq.EADDRINUSE:
            raise
        return False
    return True


def test_an_idempotent_call_is_sent_again_to_the_server_that_comes_back(
    router: Router,
) -> None:
    """The connection drops with the call in flight (the server closes it); the call goes
    out again once a server listens there again, and that one's answer completes it."""
    endpoint = router.endpoint
    with BlockingRef(endpoint, timeout=600, idempotent={"Describe"}) as ref:
        assert ref.wait_up(60)
        outcome: list[Any] = []
        thread = threading.Thread(target=lambda: outcome.append(ref.call("Describe", {})))
        thread.start()
        router.receive()
        router.sock.close(linger=0)  # the connection drops with the call in flight
        # (Only the calling thread may touch the ref: a BlockingRef is for one thread. Its
        # monitor keeps the disconnection for the call to read, however soon the server is
        # back.)
        router.sock = zmq.Context.instance().socket(zmq.ROUTER)
        router.sock.linger = 0
        wait_for(lambda: bound(router.sock, endpoint), what=f"{endpoint} free again")
        identity, again = router.receive()
        assert again["method"] == "Describe"
        router.answer(identity, again["id"], {"Descriptions": []})
        thread.join(120)
        assert outcome == [{"Descriptions": []}]


def test_curve_refusal_ends_the_wait_at_once_and_says_why(tmp_path: Path) -> None:
    server_public, server_secret = generate_keypair(tmp_path / "server", "server")
    client_public, _ = generate_keypair(tmp_path / "client", "client")
    authorized = tmp_path / "authorized"
    authorized.mkdir()
    shutil.copy(client_public, authorized)
    generate_keypair(tmp_path / "intruder", "intruder")

    def client(name: str) -> CurveClientConfig:
        public, secret = load_keypair(tmp_path / name / f"{name}.key_secret")
        assert secret is not None
        return CurveClientConfig(public, secret, load_keypair(server_public)[0])

    public, secret = load_keypair(server_secret)
    assert secret is not None
    curve = CurveServerConfig(public, secret, str(authorized))
    with RpcServer("tcp://127.0.0.1:0", {"E": echo}, curve=curve) as server:
        with BlockingRef(server.endpoint, curve=client("intruder"), timeout=60) as intruder:
            assert not intruder.wait_up(600), "refused, not connected"
            assert intruder.refused
            assert intruder.down_reason == (
                f"handshake with {server.endpoint} failed: authentication refused"
            )
        with BlockingRef(server.endpoint, curve=client("client"), timeout=60) as friend:
            assert friend.wait_up(600) and not friend.refused
            assert friend.call("E", {"secret": True}) == {"secret": True}


def test_too_large_bad_arguments_and_closed(ipc: str) -> None:
    with pytest.raises(ValueError):
        BlockingRef(ipc, timeout=0)
    with RpcServer(ipc, {"E": echo}) as server:
        ref = BlockingRef(server.endpoint, timeout=60, max_message_bytes=100)
        with pytest.raises(MessageTooLarge):
            ref.call("E", {"blob": "x" * 200})
        with pytest.raises(ValueError):
            ref.call("E", {}, timeout=0)
        assert ref.call("E", {"small": 1}) == {"small": 1}
        ref.close()
        ref.close()
        with pytest.raises(RpcClosed):
            ref.call("E", {})
        assert not ref.alive


@pytest.mark.parametrize("left", ["no file", "a dead server's socket"])
def test_waiting_until_refused_ends_when_nothing_listens_on_a_local_socket(
    tmp_path: Path, left: str
) -> None:
    """How the CLI says at once that no runtime answers, without a check of its own: the
    first failed attempt ends the wait (which would otherwise outlast the test)."""
    import socket

    path = tmp_path / "gone.sock"
    if left != "no file":
        with socket.socket(socket.AF_UNIX) as dead:
            dead.bind(str(path))
    with BlockingRef(f"ipc://{path}") as ref:
        assert not ref.wait_up(3600, until_refused=True)
        assert "cannot connect" in ref.down_reason


def test_waiting_until_refused_still_connects_to_a_live_server(ipc: str) -> None:
    with RpcServer(ipc, {"Echo": echo}), BlockingRef(ipc) as ref:
        assert ref.wait_up(3600, until_refused=True)
        assert ref.call("Echo", {"x": 1}) == {"x": 1}
