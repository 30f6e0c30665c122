"""The runtime's manager endpoint over real ZeroMQ sockets: a plain-pyzmq client commits, events
arrive on the PUB socket, a follower's endpoint names the leader, and CURVE keeps strangers out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import zmq
from support import file_group, free_port, wait_for

from actors.remote import CurveClientConfig, RemoteRef, generate_keypair, load_keypair
from actors.rpc_errors import RemoteError, RpcTimeout
from infrakit import Runtime
from infrakit.wire.common import INVALID_SPEC

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_the_plain_pyzmq_example_commits_a_group(home: Path, tmp_path: Path) -> None:
    spec_file = tmp_path / "group.json"
    spec_file.write_text(json.dumps(file_group()))
    with Runtime(home=home) as runtime:
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / "clients" / "commit.py"), str(spec_file)],
            capture_output=True,
            text=True,
            timeout=60,
            env={"INFRAKIT_HOME": str(home), "PATH": "/usr/bin:/bin"},
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "Committed cattle: Managing 2 instances"
        assert len(runtime.wait_converged("cattle")["Instances"]) == 2


def test_the_example_client_is_short_and_plain() -> None:
    source = (EXAMPLES / "clients" / "commit.py").read_text()
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports == ["import json", "import os", "import sys", "import zmq"]
    body = source.split('"""', 2)[2]
    code = [line for line in body.splitlines() if line.strip() and not line.startswith("#")]
    assert len(code) < 20


def test_group_api_errors_carry_paths_and_events_are_published(home: Path) -> None:
    with Runtime(home=home) as runtime:
        context = zmq.Context.instance()
        events = context.socket(zmq.SUB)
        events.setsockopt(zmq.LINGER, 0)
        events.setsockopt(zmq.SUBSCRIBE, b"cattle")
        events.connect(runtime.events_endpoint)
        client = RemoteRef(runtime.listen[0], timeout=10)
        try:
            bad = file_group()
            bad["Properties"]["Allocation"]["Size"] = -1
            with pytest.raises(RemoteError) as caught:
                client.call("Group.CommitGroup", {"Spec": bad})
            assert caught.value.code == INVALID_SPEC
            assert caught.value.data["Problems"] == [
                ["Properties.Allocation.Size", "must be >= 0, got -1"]
            ]
            # Subscriptions take a moment to reach the publisher: commit until one is heard.
            seen: list[dict[str, Any]] = []

            def heard() -> bool:
                if not seen:
                    client.call("Group.CommitGroup", {"Spec": file_group(), "Pretend": False})
                while events.poll(50):
                    topic, body = events.recv_multipart()
                    assert topic == b"cattle"
                    seen.append(json.loads(body))
                return any(e["kind"] == "converged" for e in seen)

            wait_for(heard, what="a converged event")
            described = client.call("Group.DescribeGroup", {"ID": "cattle"})["Description"]
            assert len(described["Instances"]) == 2
        finally:
            client.close()
            events.close(linger=0)


def test_a_follower_endpoint_forwards_to_the_leader(home: Path) -> None:
    """A follower's tcp:// endpoint answers a Group call with the leader's answer (issue 15:
    it forwards it); before, it refused, naming the leader."""
    first_port, second_port = free_port(), free_port()
    first = Runtime({"Manager": {"Listen": [f"tcp://127.0.0.1:{first_port}"]}}, home=home).start()
    try:
        second = Runtime(
            {"Manager": {"Listen": [f"tcp://127.0.0.1:{second_port}"]}}, home=home
        ).start(wait_for_leadership=0.3)
        client = RemoteRef(f"tcp://127.0.0.1:{second_port}", timeout=10)
        try:
            assert client.call("Manager.IsLeader", {}) == {"Leader": False}
            done = client.call("Group.CommitGroup", {"Spec": file_group()})
            assert done["Revision"] == 1
            assert [spec["ID"] for spec in first.inspect()] == ["cattle"]
        finally:
            client.close()
            second.stop()
    finally:
        first.stop()


def test_curve_lets_authorized_clients_in_and_no_one_else(home: Path, tmp_path: Path) -> None:
    keys, authorized = tmp_path / "keys", tmp_path / "authorized"
    authorized.mkdir()
    _, server_secret = generate_keypair(keys, "server")
    client_public, client_secret = generate_keypair(keys, "client")
    _, stranger_secret = generate_keypair(keys, "stranger")
    Path(client_public).rename(authorized / "client.key")
    port = free_port()
    config = {
        "Manager": {
            "Listen": [f"tcp://127.0.0.1:{port}"],
            "Curve": {"SecretKey": server_secret, "AuthorizedKeys": str(authorized)},
        }
    }
    server_public = load_keypair(keys / "server.key")[0]

    def client_for(secret: str | None) -> RemoteRef:
        curve = None
        if secret is not None:
            public, private = load_keypair(secret)
            assert private is not None
            curve = CurveClientConfig(public, private, server_public)
        return RemoteRef(f"tcp://127.0.0.1:{port}", timeout=1.0, retries=0, curve=curve)

    with Runtime(config, home=home) as runtime:
        assert runtime.is_leader()
        friend = client_for(client_secret)
        try:
            assert friend.call("Manager.IsLeader", {}, timeout=10) == {"Leader": True}
        finally:
            friend.close()
        for secret in (stranger_secret, None):
            stranger = client_for(secret)
            try:
                with pytest.raises(RpcTimeout):
                    stranger.call("Group.InspectGroups", {})
            finally:
                stranger.close()
