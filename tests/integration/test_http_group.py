"""Go InfraKit's CLI driving our runtime: with `Manager.HTTP` (or `infrakit run --http-group`)
the leader serves the Group API as JSON-RPC over HTTP on the unix socket `<plugins dir>/group`,
where Go's CLI looks for it, and our ZeroMQ endpoint moves to `group.zmq`, where our own CLI
finds it with no flag. `GoCli` below posts exactly what Go's `pkg/rpc/client` posts."""

from __future__ import annotations

import http.client
import json
import random
import secrets
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support import INFRAKIT, cli_env, file_group, run_cli, wait_for

from infrakit import Runtime


class GoError(Exception):
    """A JSON-RPC error as Go's `json2.DecodeClientResponse` returns it: code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class _UnixConnection(http.client.HTTPConnection):
    """An HTTP connection over a unix socket, as Go's `http.Transport` with a unix `Dial`."""

    def __init__(self, path: Path) -> None:
        super().__init__("a", timeout=60)  # v0.1 posts to http://a/ (later: http://h)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(str(self.path))


class GoCli:
    """Go InfraKit's group client: one POST per call, `Content-Type: application/json`, a body
    from gorilla's `json2.EncodeClientRequest` (a random id), the reply read from the body."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    def post(self, body: bytes) -> dict[str, Any]:
        connection = _UnixConnection(self.socket_path)
        try:
            connection.request("POST", "/", body, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            reply: dict[str, Any] = json.loads(answer.read())
            return reply
        finally:
            connection.close()

    def call(self, method: str, params: dict[str, Any]) -> Any:
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        request["id"] = random.getrandbits(63)
        reply = self.post(json.dumps(request).encode())
        assert reply["id"] == request["id"]
        if reply.get("error") is not None:
            raise GoError(reply["error"]["code"], reply["error"]["message"])
        return reply["result"]

    def answers(self) -> bool:
        """Whether the handshake Go's CLI makes first (v0.1: `Plugin.Implements`) says Group."""
        try:
            apis = self.call("Plugin.Implements", {})["APIs"]
        except OSError:
            return False
        return {"Name": "Group", "Version": "0.1.0"} in list(apis)


def group_spec(size: int) -> dict[str, Any]:
    """A file-instance group with a name no other test run uses."""
    return file_group(f"web-{secrets.token_hex(4)}", size)


def test_go_cli_commits_describes_inspects_and_destroys_over_http(
    tmp_path: Path, home: Path
) -> None:
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps({"Manager": {"HTTP": True}}))
    runtime = subprocess.Popen(
        [*INFRAKIT, "run", str(cluster)],
        env=cli_env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    go = GoCli(home / "plugins" / "group")
    try:
        wait_for(go.answers, what="the Group API over HTTP")
        objects = go.call("Handshake.Hello", {})["Objects"]  # later InfraKit's handshake
        assert "Group/0.1.0" in objects

        spec = group_spec(3)
        group_id = spec["ID"]
        assert go.call("Group.CommitGroup", {"Spec": spec, "Pretend": False}) == {
            "ID": group_id,
            "Details": "Managing 3 instances",
            "Revision": 1,  # ours, beside Go's fields: Go's JSON decoding ignores it
        }

        def instances() -> list[dict[str, Any]]:
            description = go.call("Group.DescribeGroup", {"ID": group_id})["Description"]
            found: list[dict[str, Any]] = description["Instances"]
            return found if len(found) == 3 else []

        for instance in wait_for(instances, what="3 instances described over HTTP"):
            assert instance["Tags"]["infrakit.group"] == group_id
        assert [g["ID"] for g in go.call("Group.InspectGroups", {})["Groups"]] == [group_id]

        # Our own CLI, with no flag, finds the same runtime at group.zmq.
        listed = run_cli(home, "group", "ls", "-q")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.split() == [group_id]

        assert go.call("Group.DestroyGroup", {"ID": group_id}) == {"OK": True}
        wait_for(
            lambda: go.call("Group.InspectGroups", {})["Groups"] == [],
            what="the group gone after its destroy",
        )
        runtime.send_signal(signal.SIGTERM)
        assert runtime.wait(timeout=120) == 0
    finally:
        if runtime.poll() is None:
            runtime.kill()
        runtime.wait(timeout=30)
    assert runtime.stderr is not None
    assert "Traceback" not in runtime.stderr.read()
    assert not (home / "plugins" / "group").exists(), "the HTTP socket is removed on stop"


def test_bad_input_over_http_gets_json_rpc_errors_and_the_server_stays_up(home: Path) -> None:
    with Runtime(home=home, http_group=True) as runtime:
        go = GoCli(home / "plugins" / "group")
        wait_for(go.answers, what="the Group API over HTTP")

        assert go.post(b"{not json")["error"]["code"] == -32700
        with pytest.raises(GoError) as unknown:
            go.call("Group.Nope", {})
        assert unknown.value.code == -32601 and "Group.Nope" in unknown.value.message

        bad = group_spec(2)
        bad["Properties"]["Allocation"] = {"Size": -1}
        with pytest.raises(GoError) as refused:
            go.call("Group.CommitGroup", {"Spec": bad, "Pretend": False})
        assert refused.value.code == -32010
        assert "Allocation.Size" in refused.value.message
        with pytest.raises(GoError) as missing:
            go.call("Group.DescribeGroup", {"ID": "nobody"})
        assert missing.value.message == "Group 'nobody' is not being watched"
        with pytest.raises(GoError) as no_spec:
            go.call("Group.CommitGroup", {"Spec": "text"})
        assert no_spec.value.code == -32602

        assert go.answers(), "the server answers after all of that"
        assert go.call("Manager.IsLeader", {}) == {"Leader": True}
        assert runtime.inspect() == []


def test_a_follower_on_the_same_home_leaves_both_sockets_to_the_leader(home: Path) -> None:
    with Runtime(home=home, http_group=True) as leader:
        go = GoCli(home / "plugins" / "group")
        wait_for(go.answers, what="the Group API over HTTP")
        follower = Runtime(home=home, http_group=True, location="the-follower")
        follower.start(wait_for_leadership=0)
        try:
            assert not follower.is_leader()
            spec = group_spec(1)
            go.call("Group.CommitGroup", {"Spec": spec, "Pretend": False})
            assert [g["ID"] for g in leader.inspect()] == [spec["ID"]]
            listed = run_cli(home, "group", "ls", "-q")
            assert listed.stdout.split() == [spec["ID"]], listed.stderr
            leader.free(spec["ID"])
        finally:
            follower.stop()
        assert go.answers(), "a follower's stop leaves the leader's socket alone"


def test_without_the_option_group_is_zeromq_as_before(home: Path) -> None:
    with Runtime(home=home) as runtime:
        assert runtime.listen == (f"ipc://{home / 'plugins' / 'group'}",)
        assert not (home / "plugins" / "group.zmq").exists()
        listed = run_cli(home, "group", "ls", "-q")
        assert listed.returncode == 0 and listed.stdout == "", listed.stderr


def test_a_listen_endpoint_on_the_http_socket_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cluster = tmp_path / "cluster.json"
    taken = f"ipc://{home / 'plugins' / 'group'}"
    cluster.write_text(json.dumps({"Manager": {"HTTP": True, "Listen": [taken]}}))
    result = run_cli(home, "run", str(cluster))
    assert result.returncode == 1
    assert "Manager.Listen" in result.stderr and "group.zmq" in result.stderr
    assert "Traceback" not in result.stderr
