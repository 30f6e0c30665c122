"""Fuzz actors.remote.RpcServer with thousands of random and mutated messages: it must answer
what it can, drop the rest, and keep serving."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.remote import RemoteRef, RpcServer

MAX_BYTES = 256 * 1024  # above every message of the flood but the one meant to be too big
VALID: list[dict[str, Any]] = [
    {"jsonrpc": "2.0", "id": 1, "method": "Echo.Echo", "params": {"a": [1, 2, {"b": None}]}},
    {"jsonrpc": "2.0", "id": "x", "method": "rpc.ping"},
    {"jsonrpc": "2.0", "method": "Echo.Echo", "params": {}},
    {"jsonrpc": "2.0", "id": 2, "method": "Fail.Always", "params": {"n": 1}},
    {"jsonrpc": "2.0", "id": 3, "method": "Instance.Provision", "params": {"Tags": {}}},
]
ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    10**300,
    "",
    "\u2603",
    [],
    {},
    [[[]]],
    {"": {"": None}},
    "rpc.ping",
    "Echo.Echo",
]


def fail(params: dict[str, Any]) -> Any:
    raise RuntimeError("always fails")


def odd_results(params: dict[str, Any]) -> Any:
    return params.get("result", object())


def handlers() -> dict[str, Callable[[dict[str, Any]], Any]]:
    return {"Echo.Echo": lambda params: params, "Fail.Always": fail, "Odd.Result": odd_results}


def mutate(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if choice < 0.3 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice < 0.5 and data:
            del data[rng.randrange(len(data)) :]
        elif choice < 0.7:
            at = rng.randrange(len(data) + 1)
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif data:
            at = rng.randrange(len(data))
            del data[at : at + rng.randint(1, 8)]
    return bytes(data)


def wrong_types(rng: random.Random) -> bytes:
    message: dict[str, Any] = dict(rng.choice(VALID))
    for key in rng.sample(["jsonrpc", "id", "method", "params"], rng.randint(1, 3)):
        if rng.random() < 0.2:
            message.pop(key, None)
        else:
            message[key] = rng.choice(ODD_VALUES)
    return json.dumps(message).encode()


def nasty(rng: random.Random) -> list[bytes]:
    kind = rng.randrange(10)
    if kind == 0:
        return [bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))]
    if kind == 1:
        return [mutate(rng, json.dumps(rng.choice(VALID)).encode())]
    if kind == 2:
        return [wrong_types(rng)]
    if kind == 3:
        depth = rng.choice([50, 1000, 5000, 20000])
        return [b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth][
            rng.randrange(2) : rng.randrange(2) + 1
        ] or [b"[" * depth]
    if kind == 4:
        number = rng.choice([b"9" * 5000, b"1e999999", b"-1e-999999", b"NaN", b"Infinity"])
        return [b'{"jsonrpc":"2.0","id":' + number + b',"method":"Echo.Echo"}']
    if kind == 5:
        return [b"x", b"y"] if rng.random() < 0.5 else [b"", b"", b""]
    if kind == 6:
        return [b""]
    if kind == 7:
        huge = {"jsonrpc": "2.0", "id": 9, "method": "Echo.Echo", "params": {"n": 10**4000}}
        return [json.dumps(huge).encode()]
    if kind == 8:
        result = rng.choice([{1, 2}, float("inf"), b"bytes", {"k": object()}, list(range(100))])
        params: Any = {"result": result} if isinstance(result, list) else {}
        message = {"jsonrpc": "2.0", "id": 4, "method": "Odd.Result", "params": params}
        return [json.dumps(message).encode()]
    return [json.dumps([rng.choice(VALID)] * rng.randint(0, 3)).encode()]


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("fuzz") / "hyp.sock"
    with RpcServer(f"ipc://{path}", handlers(), max_message_bytes=MAX_BYTES) as server:
        yield server.endpoint
        assert server.running


def drain(sock: zmq.Socket[bytes], replies: list[dict[str, Any]]) -> None:
    while True:
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        replies.append(json.loads(frames[-1]))


def test_the_server_survives_thousands_of_bad_messages(tmp_path: Path) -> None:
    rng = random.Random(20240607)
    with RpcServer(
        f"ipc://{tmp_path}/fuzz.sock", handlers(), max_message_bytes=MAX_BYTES
    ) as server:
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        sock = context.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(server.endpoint)
        replies: list[dict[str, Any]] = []
        try:
            for n in range(4000):
                sock.send_multipart(nasty(rng))
                if n % 50 == 0:
                    sock.poll(100)  # let replies catch up, so no queue fills
                    drain(sock, replies)
            # A message over MAXMSGSIZE: libzmq drops that connection, so use a fresh one.
            big = context.socket(zmq.DEALER)
            big.linger = 0
            big.connect(server.endpoint)
            big.send(
                b'{"jsonrpc":"2.0","id":1,"method":"Echo.Echo","params":{"p":"' + b"x" * MAX_BYTES
            )
            big.close()
            # The last request is a good one, answered by the I/O thread itself: once it is
            # answered, all before it were read (handlers' replies may still come after it).
            sock.send(json.dumps({"jsonrpc": "2.0", "id": "last", "method": "rpc.ping"}).encode())
            while not any(reply.get("id") == "last" for reply in replies):
                assert sock.poll(10_000), "server stopped answering"
                drain(sock, replies)
        finally:
            sock.close(linger=0)
        assert len(replies) > 1000
        for reply in replies:
            assert reply["jsonrpc"] == "2.0"
            assert ("result" in reply) != ("error" in reply)
            if "error" in reply:
                assert isinstance(reply["error"]["code"], int)
                assert isinstance(reply["error"]["message"], str)
        assert server.running
        with RemoteRef(server.endpoint, timeout=5) as ref:
            assert ref.call("Echo.Echo", {"still": "alive"}) == {"still": "alive"}


@settings(max_examples=300, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=4)
                | st.dictionaries(st.text(max_size=8), children, max_size=4)
            ),
            max_leaves=20,
        ).map(lambda value: json.dumps(value).encode()),
        st.fixed_dictionaries(
            {},
            optional={
                "jsonrpc": st.sampled_from(["2.0", "1.0", 2, None]),
                "id": st.one_of(st.none(), st.integers(), st.text(max_size=5), st.floats()),
                "method": st.one_of(
                    st.sampled_from(["Echo.Echo", "rpc.ping", "Fail.Always"]), st.integers()
                ),
                "params": st.one_of(
                    st.dictionaries(st.text(max_size=5), st.integers()), st.lists(st.integers())
                ),
            },
        ).map(lambda value: json.dumps(value).encode()),
    )
)
def test_hypothesis_messages_get_a_valid_reply_or_none(shared_server: str, body: bytes) -> None:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(shared_server)
    try:
        sock.send(body)
        sock.send(b'{"jsonrpc":"2.0","id":"probe","method":"rpc.ping"}')
        replies: list[dict[str, Any]] = []
        while not any(reply.get("id") == "probe" for reply in replies):
            assert sock.poll(10_000), "server stopped answering"
            drain(sock, replies)
        assert len(replies) <= 2
        for reply in replies:
            assert reply["jsonrpc"] == "2.0"
            assert ("result" in reply) != ("error" in reply)
    finally:
        sock.close(linger=0)
