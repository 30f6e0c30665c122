"""Every built-in plugin reports every fault of its properties at once, each with its path, and
the faults cross the wire whole: one round of fixing, not one per fault."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actors.remote import RpcServer
from infrakit.plugins import builtin_kinds, offline
from infrakit.plugins.flavor.swarm import SwarmFlavor
from infrakit.plugins.flavor.vanilla import VanillaFlavor
from infrakit.plugins.flavor.zookeeper import ZooKeeperFlavor
from infrakit.plugins.instance.aws import AwsInstancePlugin
from infrakit.plugins.instance.dind import DindInstancePlugin
from infrakit.plugins.instance.docker import DockerInstancePlugin
from infrakit.plugins.instance.gcp import GcpInstancePlugin
from infrakit.plugins.instance.process import ProcessInstancePlugin
from infrakit.plugins.instance.terraform import TerraformInstancePlugin
from infrakit.plugins.instance.vagrant import VagrantInstancePlugin
from infrakit.spi import AllocationMethod, ValidationError
from infrakit.wire.plugin import connect_plugin, plugin_handlers

SIZE = AllocationMethod(size=1)
ENSEMBLE = AllocationMethod(logical_ids=("a", "b", "c"))

# kind -> (properties with several faults, the paths every fault must be reported at)
CASES: dict[str, tuple[Any, set[str]]] = {
    "docker": (
        {"Image": "busybox", "CPUs": "two", "Memory": 1, "Privileged": "yes", "Colour": "red"},
        {"CPUs", "Memory", "Privileged", "Colour"},
    ),
    "dind": (
        {"Privileged": False, "Mounts": [{"Target": "rel"}, {"Type": "nfs", "Target": "/x"}]},
        {"Privileged", "Mounts[0].Target", "Mounts[1].Type"},
    ),
    "process": (
        {"Cmd": [1, "ok", 2], "Dir": "", "Env": {"A=B": "x", "C": 3}},
        {"Cmd[0]", "Cmd[2]", "Dir", "Env.C"},
    ),
    "vagrant": (
        {"CPUs": 0, "Memory": "lots", "Docker": {"Name": "bad name\n", "Privileged": 1}},
        {"CPUs", "Memory", "Docker.Image", "Docker.Name", "Docker.Privileged"},
    ),
    "gcp": (
        {"MachineType": "E2", "Disks": [{"Boot": False}, {"Source": "d", "SizeGb": 9}], "Zone": 1},
        {"MachineType", "Disks[0].SizeGb", "Disks[1].SizeGb", "Zone"},
    ),
    "aws": (
        {"ImageId": "ubuntu", "MinCount": 2, "Tags": {"aws:x": "y"}, "Colour": "red"},
        {"ImageId", "MinCount", "Tags.aws:x", "Colour"},
    ),
    "terraform": (
        {"Type": "", "Value": [], "TagsAttribute": 3, "Colour": "red"},
        {"Type", "Value", "TagsAttribute", "Colour"},
    ),
    "vanilla": (
        {"Init": 42, "Helth": {}, "Tags": {"": "v", "k": 1}, "Health": {"Timeout": "1000h"}},
        {"Init", "Helth", "Tags", "Tags.k", "Health.Timeout"},
    ),
    "zookeeper": (
        {"ClientPort": 0, "PeerPort": 70000, "Host": "a\n", "JvmFlags": "x"},
        {"ClientPort", "PeerPort", "Host", "JvmFlags"},
    ),
    "swarm": (
        {"Type": "boss", "DaemonConfig": "", "InitScript": "{{.NOPE}}"},
        {"Type", "DaemonConfig", "InitScript"},
    ),
}


def plugins(tmp_path: Path) -> dict[str, Callable[[Any], None]]:
    """A real plugin object's own `validate` per kind (none of these reaches an engine: the
    shape is checked first)."""
    vanilla, zookeeper, swarm = VanillaFlavor(), ZooKeeperFlavor(), SwarmFlavor()
    return {
        "docker": DockerInstancePlugin().validate,
        "dind": DindInstancePlugin().validate,
        "process": ProcessInstancePlugin(tmp_path / "process").validate,
        "vagrant": VagrantInstancePlugin(tmp_path / "vagrant").validate,
        "gcp": GcpInstancePlugin(environ={}).validate,
        "aws": AwsInstancePlugin(region="us-east-1").validate,
        "terraform": TerraformInstancePlugin(tmp_path / "terraform").validate,
        "vanilla": lambda p: vanilla.validate(p, SIZE),
        "zookeeper": lambda p: zookeeper.validate(p, ENSEMBLE),
        "swarm": lambda p: swarm.validate(p, SIZE),
    }


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_plugin_reports_every_fault_at_once(kind: str, tmp_path: Path) -> None:
    properties, paths = CASES[kind]
    with pytest.raises(ValidationError) as caught:
        plugins(tmp_path)[kind](properties)
    error = caught.value
    assert {path for path, _ in error.problems} == paths, error.problems
    assert (error.path, error.reason) == error.problems[0]  # the first, for older callers


@pytest.mark.parametrize("kind", sorted(CASES))
def test_the_offline_check_finds_what_the_plugin_finds(kind: str) -> None:
    properties, paths = CASES[kind]
    allocation = ENSEMBLE if kind == "zookeeper" else SIZE
    findings = offline.check(kind, properties, allocation)
    assert {path for path, _ in findings.problems} == paths


def test_every_builtin_kind_has_an_offline_check() -> None:
    assert set(offline.INSTANCE_KINDS) | set(offline.FLAVOR_KINDS) == set(builtin_kinds())
    assert offline.check("file", {"any": ["json", 1]}).problems == []


def test_every_fault_crosses_the_wire(tmp_path: Path) -> None:
    properties, paths = CASES["vanilla"]
    with RpcServer(f"ipc://{tmp_path}/flavor.sock", plugin_handlers(VanillaFlavor())) as server:
        remote = connect_plugin("flavor-test", server.endpoint, timeout=10)
        try:
            with pytest.raises(ValidationError) as caught:
                remote.validate(properties, SIZE)
        finally:
            remote.close()
    assert {path for path, _ in caught.value.problems} == paths
    local = plugins(tmp_path)["vanilla"]
    with pytest.raises(ValidationError) as here:
        local(properties)
    assert caught.value.problems == here.value.problems
