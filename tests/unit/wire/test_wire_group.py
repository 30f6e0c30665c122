"""The Group API over a real ZeroMQ socket: what a `GroupPlugin` answers or raises reaches a
`GroupClient` as the same value or the same typed error, under InfraKit's method names."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from support import wait_for

from actors.remote import RemoteRef, RpcServer
from infrakit.spi import PluginError, SpecError
from infrakit.spi.group import (
    GroupCannotRunError,
    GroupNotFoundError,
    GroupPlugin,
    NotLeaderError,
    not_leader,
)
from infrakit.wire.common import Unreachable, Unsupported
from infrakit.wire.group import GroupClient, group_handlers


class Scripted(GroupPlugin):
    """A GroupPlugin that answers from a table, or raises `error` from every group method."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.calls: list[tuple[str, Any]] = []

    def _answer(self, method: str, arg: Any, value: Any) -> Any:
        self.calls.append((method, arg))
        if self.error is not None:
            raise self.error
        return value

    def commit_group(self, spec: Mapping[str, Any], pretend: bool = False) -> str:
        return str(self._answer("commit", (dict(spec), pretend), "Managing 2 instances"))

    def free_group(self, group_id: str) -> None:
        self._answer("free", group_id, None)

    def describe_group(self, group_id: str) -> dict[str, Any]:
        instances = [{"ID": "i-1", "LogicalID": None, "Tags": {}, "Status": {"Mode": "x"}}]
        description = {"Instances": instances, "Converged": True, "Conditions": []}
        return dict(self._answer("describe", group_id, description))

    def destroy_group(self, group_id: str) -> None:
        self._answer("destroy", group_id, None)

    def inspect_groups(self) -> list[dict[str, Any]]:
        return list(self._answer("inspect", None, [{"ID": "cattle", "Properties": {}}]))

    def is_leader(self) -> bool:
        return True

    def leader_location(self) -> str | None:
        return "tcp://leader:24864"

    def status(self) -> dict[str, Any]:
        return dict(self._answer("status", None, {"Leader": True, "Groups": []}))


@contextlib.contextmanager
def serving(plugin: GroupPlugin, directory: Path) -> Iterator[GroupClient]:
    """`plugin` served on a real socket in `directory`, and a client connected to it."""
    with RpcServer(f"ipc://{directory}/group", group_handlers(plugin)) as server:
        client = GroupClient(
            RemoteRef(server.endpoint, timeout=30, idempotent=GroupClient.IDEMPOTENT)
        )
        try:
            wait_for(lambda: client.ref.alive, 10, "the connection")
            yield client
        finally:
            client.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Scripted, GroupClient]]:
    plugin = Scripted()
    with serving(plugin, tmp_path) as client:
        yield plugin, client


def test_every_method_round_trips(served: tuple[Scripted, GroupClient]) -> None:
    plugin, client = served
    spec = {"ID": "cattle", "Properties": {"Allocation": {"Size": 2}}}
    assert client.commit_group(spec, pretend=True) == "Managing 2 instances"
    description = client.describe_group("cattle")
    assert description["Converged"] is True
    assert description["Instances"][0]["Status"] == {"Mode": "x"}
    client.free_group("cattle")
    client.destroy_group("cattle")
    assert client.inspect_groups() == [{"ID": "cattle", "Properties": {}}]
    assert client.is_leader() is True
    assert client.leader_location() == "tcp://leader:24864"
    assert client.status() == {"Leader": True, "Groups": []}
    assert client.implements() == [
        {"Name": "Group", "Version": "0.1.0"},
        {"Name": "Manager", "Version": "0.1.0"},
    ]
    assert plugin.calls == [
        ("commit", (spec, True)),
        ("describe", "cattle"),
        ("free", "cattle"),
        ("destroy", "cattle"),
        ("inspect", None),
        ("status", None),
    ]


@pytest.mark.parametrize(
    ("raised", "arrives_as"),
    [
        (
            SpecError([("Properties.Allocation.Size", "must be >= 0, got -1"), ("ID", "bad")]),
            SpecError,
        ),
        (not_leader("tcp://leader:24864"), NotLeaderError),
        (not_leader(None), NotLeaderError),
        (GroupNotFoundError("Group 'cattle' is not being watched"), GroupNotFoundError),
        (PluginError("plugin 'instance-file' does not answer"), PluginError),
        (GroupCannotRunError("cannot destroy group 'cattle': no plugin"), PluginError),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else "",
)
def test_an_error_arrives_typed_with_its_message(
    served: tuple[Scripted, GroupClient], raised: Exception, arrives_as: type[Exception]
) -> None:
    plugin, client = served
    plugin.error = raised
    for call in (
        lambda: client.commit_group({"ID": "cattle"}),
        lambda: client.describe_group("cattle"),
        lambda: client.free_group("cattle"),
        lambda: client.destroy_group("cattle"),
        client.inspect_groups,
        client.status,
    ):
        with pytest.raises(arrives_as) as caught:
            call()
        assert type(caught.value) is arrives_as
        assert str(caught.value) == str(raised)
        if isinstance(raised, SpecError):
            assert isinstance(caught.value, SpecError)
            assert caught.value.problems == raised.problems
        if isinstance(raised, NotLeaderError):
            assert isinstance(caught.value, NotLeaderError)
            assert caught.value.leader == raised.leader


def test_a_bad_request_is_refused_before_the_plugin(served: tuple[Scripted, GroupClient]) -> None:
    plugin, client = served
    with pytest.raises(PluginError, match=r"params\.Spec must be an object"):
        client.commit_group(["not", "a", "spec"])  # type: ignore[arg-type]
    with pytest.raises(PluginError, match=r"params\.ID must be a non-empty string"):
        client.describe_group("")
    assert plugin.calls == []


def test_a_method_the_server_lacks_is_unsupported(tmp_path: Path) -> None:
    """Go InfraKit's manager serves the Group methods and Manager.IsLeader only."""
    handlers = group_handlers(Scripted())
    del handlers["Manager.Status"], handlers["Manager.LeaderLocation"]
    with RpcServer(f"ipc://{tmp_path}/go", handlers) as server:
        client = GroupClient(RemoteRef(server.endpoint, timeout=30))
        try:
            assert client.is_leader() is True
            with pytest.raises(Unsupported):
                client.status()
            with pytest.raises(Unsupported):
                client.leader_location()
        finally:
            client.close()


def test_no_server_is_unreachable(tmp_path: Path) -> None:
    client = GroupClient(RemoteRef(f"ipc://{tmp_path}/nobody", timeout=0.5, retries=0))
    try:
        with pytest.raises(Unreachable):
            client.inspect_groups()
    finally:
        client.close()
