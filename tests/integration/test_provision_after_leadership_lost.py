"""A leader that loses leadership while a provision is under way (a pause: SIGSTOP, a long GC,
swap) undoes what that provision made as soon as it returns, rather than leave it beside what
its successor made for the same slot. Found by the chaos test (seed 2360293701, round 3): a
leader frozen past its TTL in the middle of a rolling update's provision finished it after
SIGCONT, and its slot had two live instances until the new leader's next look."""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import ETCD, etcd_forget, etcd_in_use, etcd_up, file_group, require, wait_for

from actors.election.etcd import EtcdConnection, encode
from infrakit import Runtime
from infrakit.plugins.instance.file import FileInstancePlugin
from infrakit.spi import Spec


class SlowProvision(FileInstancePlugin):
    """File instances whose provision waits until the test lets it go: the pause of its caller
    in the middle of the call."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.go = threading.Event()
        self.entered = threading.Event()
        self.made: list[str] = []

    def provision(self, spec: Spec) -> str:
        self.entered.set()
        self.go.wait(120)
        instance_id = super().provision(spec)
        self.made.append(instance_id)
        return instance_id


@pytest.fixture
def prefix() -> Iterator[str]:
    with etcd_in_use():  # first: another suite may have it frozen for a while
        require("etcd", etcd_up(), f"nothing answers at {ETCD}")
        name = f"/infrakit-test-{uuid.uuid4().hex[:8]}"
        try:
            yield name
        finally:
            etcd_forget(name + "/")


def take_over(key: str) -> int:
    """Put the leader key under a lease of our own, as a successor that won the key would:
    the runtime no longer leads (and cannot win it back while the lease lives). The lease."""
    etcd = EtcdConnection(ETCD)
    lease = int(etcd.post("lease/grant", {"TTL": 120, "ID": 0})["ID"])
    etcd.post("kv/put", {"key": encode(key), "value": encode("tcp://successor"), "lease": lease})
    return lease


def test_a_provision_that_returns_after_leadership_was_lost_is_undone(
    home: Path, tmp_path: Path, prefix: str
) -> None:
    plugin = SlowProvision(tmp_path / "files")
    key = f"{prefix}/leader"
    config = {
        "Manager": {
            "Leader": {"Kind": "etcd", "Endpoints": [ETCD], "TTL": "2s", "Key": key},
            "Store": {"Kind": "etcd", "Endpoints": [ETCD], "Prefix": f"{prefix}/groups/"},
            "LeaderPoll": "100ms",
        }
    }
    spec = copy.deepcopy(file_group(size=1))
    spec["Properties"]["Instance"]["Plugin"] = "instance-slow"
    lease = None
    with Runtime(config, home=home, plugins={"instance-slow": plugin}) as runtime:
        try:
            wait_for(runtime.is_leader, what="the runtime to lead")
            runtime.commit(spec)
            wait_for(plugin.entered.is_set, what="the provision to begin")
            lease = take_over(key)
            wait_for(lambda: not runtime.is_leader(), what="the runtime to stand down")
            plugin.go.set()  # the provision returns, made by a runtime that no longer leads
            wait_for(lambda: plugin.made, what="the provision to return")
            wait_for(
                lambda: plugin.describe_instances({}) == [],
                what=f"{plugin.made} to be undone (a successor may have filled its slot)",
            )
        finally:
            plugin.go.set()
            if lease is not None:
                EtcdConnection(ETCD).post("kv/lease/revoke", {"ID": lease})
