"""A follower forwards Group API calls to the leader (issue 15): real runtimes on one home (the
file election), real ZeroMQ sockets and CURVE keys. The revision a forwarded change makes
names the client who made it, not the forwarding manager."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from support import file_group, free_port, wait_for

from actors.remote import CurveClientConfig, RemoteRef, RpcServer, generate_keypair, load_keypair
from actors.rpc_errors import RemoteError
from infrakit import Runtime
from infrakit.wire.common import NOT_LEADER
from infrakit.wire.forward import Forwarder
from infrakit.wire.group import GroupClient, group_handlers


def curve_config(tmp_path: Path, port: int) -> tuple[dict[str, Any], CurveClientConfig]:
    """A cluster file's Manager section serving tcp://127.0.0.1:`port` with CURVE (the managers
    share one key pair, whose public key is authorized: they reach one another with it), and
    the client settings of `alice`, an authorized user."""
    keys, authorized = tmp_path / "keys", tmp_path / "authorized"
    authorized.mkdir(exist_ok=True)
    server_public, server_secret = generate_keypair(keys, "server")
    shutil.copy(server_public, authorized / "manager.key")
    alice_public, alice_secret = generate_keypair(keys, "alice")
    shutil.copy(alice_public, authorized / "alice.key")
    public, private = load_keypair(alice_secret)
    assert private is not None
    alice = CurveClientConfig(public, private, load_keypair(server_public)[0])
    manager = {
        "Listen": [f"tcp://127.0.0.1:{port}"],
        "Curve": {"SecretKey": server_secret, "AuthorizedKeys": str(authorized)},
        "LeaderPoll": "200ms",
    }
    return manager, alice


def test_a_forwarded_commit_is_recorded_as_the_curve_clients(home: Path, tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    first, alice = curve_config(tmp_path, ports[0])
    second = {**first, "Listen": [f"tcp://127.0.0.1:{ports[1]}"]}
    with Runtime({"Manager": first}, home=home) as leader:
        follower = Runtime({"Manager": second}, home=home).start(wait_for_leadership=0)
        try:
            assert leader.is_leader() and not follower.is_leader()
            with RemoteRef(f"tcp://127.0.0.1:{ports[1]}", timeout=10.0, curve=alice) as client:
                params = {"Spec": file_group(), "User": "mallory"}
                done = client.call("Group.CommitGroup", params)
                assert done["Revision"] == 1
                described = client.call("Group.DescribeGroup", {"ID": "cattle"})
                assert "Instances" in described["Description"]
                status = client.call("Manager.Status", {})
                assert status["Leader"] is False
                assert [g["ID"] for g in status["Groups"]] == ["cattle"]
            (revision,) = leader.history("cattle")["Revisions"]
            assert (revision["Who"], revision["Authenticated"]) == ("alice", True)
        finally:
            follower.stop()


def test_a_forwarded_callers_claim_is_unchecked_without_curve(home: Path) -> None:
    """Over ipc:// nobody is authenticated: a call claiming to be forwarded for an
    authenticated user is recorded with that name, as not authenticated."""
    with Runtime(home=home) as runtime:
        client = RemoteRef(runtime.home_endpoint, timeout=10.0)
        try:
            forwarded = {"Who": "alice", "Authenticated": True}
            client.call("Group.CommitGroup", {"Spec": file_group(), "Forwarded": forwarded})
        finally:
            client.close()
        (revision,) = runtime.history("cattle")["Revisions"]
        assert (revision["Who"], revision["Authenticated"]) == ("alice", False)


def test_a_follower_that_knows_no_leader_says_what_it_waits_for(home: Path, tmp_path: Path) -> None:
    with Runtime(home=home, location="the-leader"):
        follower = Runtime(home=home, location="the-follower").start(wait_for_leadership=0)
        waiting = "no leader elected yet on etcd at http://etcd:2379 (key /k); this manager follows"
        forward = Forwarder(leader=lambda: None, waiting=lambda: waiting, own=lambda: ())
        server = RpcServer(
            f"ipc://{tmp_path / 'follower'}", group_handlers(follower.group_plugin, forward)
        ).start()
        try:
            with RemoteRef(server.endpoint, timeout=10.0) as client:
                with pytest.raises(RemoteError) as refused:
                    client.call("Group.InspectGroups", {})
                assert refused.value.code == NOT_LEADER
                assert refused.value.message == waiting
                status = client.call("Manager.Status", {})
                assert status["Leader"] is False and status["GroupsError"] == waiting
        finally:
            server.stop()
            forward.close()
            follower.stop()


def test_the_home_socket_answers_beside_a_tcp_listen(home: Path) -> None:
    port = free_port()
    with Runtime({"Manager": {"Listen": [f"tcp://127.0.0.1:{port}"]}}, home=home) as runtime:
        assert runtime.location == f"tcp://127.0.0.1:{port}"
        client = GroupClient(RemoteRef(runtime.home_endpoint, timeout=10.0))
        try:
            wait_for(client.is_leader, what="the home's socket to answer")
        finally:
            client.close()
