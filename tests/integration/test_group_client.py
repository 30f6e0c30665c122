"""A real runtime's Group API through the typed `GroupClient`, over its ipc:// socket: answers
are the runtime's own, and its refusals arrive as the runtime raised them."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import file_group, wait_for

from actors.remote import RemoteRef, RpcServer
from infrakit import Runtime
from infrakit.spi import SpecError
from infrakit.spi.group import GroupNotFoundError, NotLeaderError
from infrakit.wire.group import GroupClient, group_handlers


def client_of(endpoint: str) -> GroupClient:
    return GroupClient(RemoteRef(endpoint, timeout=60, idempotent=GroupClient.IDEMPOTENT))


def test_the_typed_client_commits_describes_and_destroys(home: Path) -> None:
    with Runtime(home=home) as runtime:
        client = client_of(runtime.listen[0])
        try:
            assert client.is_leader() is True
            assert client.commit_group(file_group(), pretend=True) == "Managing 2 instances"
            assert client.inspect_groups() == []
            assert client.commit_group(file_group()) == "Managing 2 instances"
            converged = runtime.wait_converged("cattle")
            assert client.describe_group("cattle")["Instances"] == converged["Instances"]
            assert [spec["ID"] for spec in client.inspect_groups()] == ["cattle"]
            assert [g["ID"] for g in client.status()["Groups"]] == ["cattle"]

            bad = file_group()
            bad["Properties"]["Allocation"]["Size"] = -1
            with pytest.raises(SpecError) as refused:
                client.commit_group(bad)
            assert refused.value.problems == [
                ("Properties.Allocation.Size", "must be >= 0, got -1")
            ]
            with pytest.raises(GroupNotFoundError, match="Group 'herd' is not being watched"):
                client.describe_group("herd")

            client.destroy_group("cattle")
            wait_for(lambda: client.inspect_groups() == [], what="the group to be destroyed")
        finally:
            client.close()


def test_a_follower_refuses_with_the_leaders_location(home: Path, tmp_path: Path) -> None:
    with Runtime(home=home, location="the-leader") as leader:
        follower = Runtime(home=home, location="the-follower").start(wait_for_leadership=0)
        server = RpcServer(f"ipc://{tmp_path / 'follower'}", group_handlers(follower.group_plugin))
        client = client_of(server.start().endpoint)
        try:
            assert client.is_leader() is False
            assert client.leader_location() == leader.location == "the-leader"
            with pytest.raises(NotLeaderError) as refused:
                client.commit_group(file_group())
            assert refused.value.leader == "the-leader"
            assert str(refused.value) == "not the leader; the leader is at the-leader"
        finally:
            client.close()
            server.stop()
            follower.stop()
