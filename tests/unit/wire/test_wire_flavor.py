"""A flavor's optional member status crosses the wire: served only by a flavor that has it,
listed in its handshake, and answered through the client as the flavor itself answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import free_port, wait_for

from actors.remote import RpcServer
from actors.rpc_errors import METHOD_NOT_FOUND, RemoteError
from infrakit.cli.plugin_start import default_name
from infrakit.plugins.flavor.vanilla import VanillaFlavor
from infrakit.plugins.flavor.zookeeper import TAG_CLIENT, ZooKeeperFlavor
from infrakit.spi import Description, PluginError
from infrakit.spi.flavor import FlavorPlugin, Reportable
from infrakit.wire.plugin import RemotePlugin, connect_plugin, implements, plugin_handlers

STRIDE = {"PortStride": 10}


class Moody(VanillaFlavor, Reportable):
    """A vanilla flavor that reports on members, and fails for one it does not know."""

    def member_status(self, properties: Any, instance: Description) -> dict[str, Any]:
        if instance.id == "stranger":
            raise PluginError(f"no member {instance.id}")
        return {"Mood": properties["Mood"], "Of": instance.id}


class Odd(VanillaFlavor):
    """A vanilla flavor that answers a health the protocol does not have."""

    def healthy(self, properties: Any, instance: Description) -> Any:
        return 5


def serve(tmp_path: Path, flavor: FlavorPlugin, name: str) -> Iterator[RemotePlugin]:
    """`flavor` served at a socket of its own, and a client of it, connected."""
    with RpcServer(f"ipc://{tmp_path}/{name}", plugin_handlers(flavor)) as server:
        remote = connect_plugin(name, server.endpoint, timeout=10)
        try:
            wait_for(lambda: remote.ref.alive, 10, "the connection to the flavor")
            yield remote
        finally:
            remote.close()


@pytest.fixture
def zookeeper(tmp_path: Path) -> Iterator[RemotePlugin]:
    yield from serve(tmp_path, ZooKeeperFlavor(timeout=0.3), "flavor-zookeeper")


def test_only_a_flavor_with_member_status_lists_it(tmp_path: Path) -> None:
    assert [api["Name"] for api in implements(ZooKeeperFlavor())] == ["Flavor", "MemberStatus"]
    assert [api["Name"] for api in implements(VanillaFlavor())] == ["Flavor"]
    assert default_name("zookeeper", ZooKeeperFlavor()) == "flavor-zookeeper"
    assert default_name("vanilla", VanillaFlavor()) == "flavor-vanilla"
    for remote in serve(tmp_path, VanillaFlavor(), "flavor-vanilla"):
        assert [api["Name"] for api in remote.implements()] == ["Flavor"]
        with pytest.raises(RemoteError) as caught:
            remote.ref.call("Flavor.MemberStatus", {"Properties": {}, "Instance": {"ID": "i-1"}})
        assert caught.value.code == METHOD_NOT_FOUND
        assert remote.member_status({}, Description(id="i-1")) == {}


def test_the_zookeeper_flavors_member_status_travels_whole(zookeeper: RemotePlugin) -> None:
    local = ZooKeeperFlavor(timeout=0.3)
    assert [api["Name"] for api in zookeeper.implements()] == ["Flavor", "MemberStatus"]
    untagged = Description(id="i-1", logical_id="zk1", tags={"infrakit.group": "zk"})
    refused = Description(id="i-2", logical_id="zk1", tags={TAG_CLIENT: f"127.0.0.1:{free_port()}"})
    for member, mode in ((untagged, "unknown"), (refused, "unreachable")):
        status = zookeeper.member_status(STRIDE, member)
        assert status["Mode"] == mode
        assert status == local.member_status(STRIDE, member)


def test_a_failing_member_status_arrives_as_a_plugin_error(tmp_path: Path) -> None:
    for remote in serve(tmp_path, Moody(), "flavor-moody"):
        assert isinstance(remote, Reportable)
        mood = {"Mood": "sunny"}
        assert remote.member_status(mood, Description(id="i-7")) == {"Mood": "sunny", "Of": "i-7"}
        with pytest.raises(PluginError) as caught:
            remote.member_status(mood, Description(id="stranger"))
        assert str(caught.value) == "plugin 'flavor-moody': no member stranger"


def test_a_flavor_out_of_reach_has_nothing_to_tell(tmp_path: Path) -> None:
    """Describe asks every member's status: a flavor whose connection is down answers at once
    with nothing, rather than making the question wait."""
    remote = connect_plugin("flavor-gone", f"ipc://{tmp_path}/nobody", timeout=10)
    try:
        assert remote.member_status({}, Description(id="i-1")) == {}
    finally:
        remote.close()


def test_a_health_outside_the_protocol_is_a_plugin_error(tmp_path: Path) -> None:
    for remote in serve(tmp_path, Odd(), "flavor-odd"):
        with pytest.raises(PluginError) as caught:
            remote.healthy({}, Description(id="i-1"))
        assert str(caught.value) == "plugin 'flavor-odd': answered Health 5, which is not 0, 1 or 2"
