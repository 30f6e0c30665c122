"""Three `infrakit run` processes on one real etcd: one leads; kill -9 it and another takes over
and carries its group on; a commit sent to a follower reaches the leader (forwarded by the
follower); a leader frozen past its TTL stands down on resume without acting. Instances are
real processes shared by all three runtimes (one process-plugin state directory, as hosts
would share a cloud), checked by tags."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from support import (
    etcd_cluster,
    etcd_frozen,
    free_port,
    kill_all,
    require,
    wait_for,
)

from actors.remote import RemoteRef
from actors.rpc_errors import RemoteError, RpcTimeout
from infrakit.plugins.instance.process import ProcessInstancePlugin

INFRAKIT = [sys.executable, "-m", "infrakit.cli.main"]


class Cluster:
    """Three runtimes sharing etcd (a private key prefix) and one instance state directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.shared = root / "instances"
        prefix = f"/infrakit-test-{uuid.uuid4().hex[:8]}"
        self.ports = [free_port() for _ in range(3)]
        self.processes: list[subprocess.Popen[bytes] | None] = [None, None, None]
        self.configs = []
        for index, port in enumerate(self.ports):
            config = etcd_cluster(self.shared, prefix, port)
            path = root / f"cluster-{index}.json"
            path.write_text(json.dumps(config))
            self.configs.append(path)

    def endpoint(self, index: int) -> str:
        return f"tcp://127.0.0.1:{self.ports[index]}"

    def start(self, index: int) -> None:
        home = self.root / f"home-{index}"
        env = {**os.environ, "INFRAKIT_HOME": str(home)}
        log = open(self.root / f"runtime-{index}.log", "ab")  # noqa: SIM115 - lives with it
        self.processes[index] = subprocess.Popen(
            [*INFRAKIT, "run", str(self.configs[index])],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def call(self, index: int, method: str, params: dict[str, Any] | None = None) -> Any:
        with RemoteRef(self.endpoint(index), timeout=2.0, retries=0) as ref:
            return ref.call(method, params or {})

    def new_leader(self, old: int) -> tuple[int] | None:
        """(index,) of the one leader if it is not `old` (a tuple: index 0 is falsy)."""
        leader = self.leader()
        return (leader,) if leader is not None and leader != old else None

    def leader(self) -> int | None:
        """The index of the one runtime that says it leads, if exactly one does."""
        leading = []
        for index, process in enumerate(self.processes):
            if process is None or process.poll() is not None:
                continue
            try:
                if self.call(index, "Manager.IsLeader")["Leader"]:
                    leading.append(index)
            except (RpcTimeout, RemoteError):
                continue
        return leading[0] if len(leading) == 1 else None

    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        process = self.processes[index]
        assert process is not None
        os.kill(process.pid, sig)
        if sig == signal.SIGKILL:
            process.wait(10)

    def stop(self) -> None:
        for process in self.processes:
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGCONT)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        kill_all(self.shared)

    def members(self) -> list[dict[str, str]]:
        """Tags of every live instance of the group, straight from the shared state."""
        plugin = ProcessInstancePlugin(self.shared)
        try:
            return [d.tags for d in plugin.describe_instances({"infrakit.group": "ha"})]
        finally:
            plugin.close()


@pytest.fixture
def cluster(tmp_path: Path, etcd: IO[str]) -> Iterator[Cluster]:
    running = Cluster(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def group(size: int) -> dict[str, Any]:
    return {
        "ID": "ha",
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": "instance-process"},
            "Flavor": {"Plugin": "flavor-vanilla", "Properties": {"Init": ["exec sleep 600"]}},
            "Health": {"Interval": "200ms"},
        },
    }


def one_per_slot(cluster: Cluster, size: int) -> bool:
    slots = Counter(tags["infrakit.logical_id"] for tags in cluster.members())
    return sorted(slots) == sorted(f"ha-{n}" for n in range(size)) and set(slots.values()) == {1}


def test_kill_the_leader_and_another_carries_on(cluster: Cluster, tmp_path: Path) -> None:
    for index in range(3):
        cluster.start(index)
    (first,) = wait_for(
        lambda: (i,) if (i := cluster.leader()) is not None else None, timeout=30, what="one leader"
    )
    follower = (first + 1) % 3
    spec = tmp_path / "ha.json"
    spec.write_text(json.dumps(group(4)))
    committed = subprocess.run(
        [*INFRAKIT, "group", "commit", str(spec), "--endpoint", cluster.endpoint(follower)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert committed.returncode == 0, committed.stderr
    # The follower forwarded it: the leader recorded it, once.
    history = cluster.call(first, "Group.History", {"ID": "ha"})
    assert [r["Revision"] for r in history["Revisions"]] == [1]
    wait_for(lambda: one_per_slot(cluster, 4), timeout=30, what="4 instances")
    before = {tags["infrakit.logical_id"] for tags in cluster.members()}
    ids_before = sorted(json.dumps(t, sort_keys=True) for t in cluster.members())

    cluster.kill(first)
    (second,) = wait_for(lambda: cluster.new_leader(first), timeout=20, what="a new leader")
    status = wait_for(
        lambda: (s := cluster.call(second, "Manager.Status")) and s["Groups"] and s,
        what="the new leader to start the group",
    )
    assert [g["ID"] for g in status["Groups"]] == ["ha"]
    wait_for(
        lambda: cluster.call(second, "Manager.Status")["Groups"][0]["Converged"],
        what="the group converged under the new leader",
    )
    # Adopted, not duplicated: the very same instances, one per slot.
    assert {tags["infrakit.logical_id"] for tags in cluster.members()} == before
    assert sorted(json.dumps(t, sort_keys=True) for t in cluster.members()) == ids_before

    # The new leader acts: grow the group through it.
    spec.write_text(json.dumps(group(6)))
    result = cluster.call(second, "Group.CommitGroup", {"Spec": group(6)})
    assert result["Details"] == "Adding 2 instances to increase the group size to 6"
    wait_for(lambda: one_per_slot(cluster, 6), timeout=30, what="6 instances")


def test_a_frozen_leader_stands_down_without_acting(cluster: Cluster) -> None:
    for index in range(3):
        cluster.start(index)
    (first,) = wait_for(
        lambda: (i,) if (i := cluster.leader()) is not None else None, timeout=30, what="one leader"
    )
    cluster.call(first, "Group.CommitGroup", {"Spec": group(3)})
    wait_for(lambda: one_per_slot(cluster, 3), timeout=30, what="3 instances")
    cluster.kill(first, signal.SIGSTOP)
    (second,) = wait_for(
        lambda: cluster.new_leader(first), timeout=20, what="a new leader while one is frozen"
    )
    wait_for(lambda: cluster.call(second, "Manager.Status")["Groups"], what="groups started")
    cluster.kill(first, signal.SIGCONT)
    wait_for(
        lambda: cluster.call(first, "Manager.IsLeader") == {"Leader": False},
        what="the old leader to stand down",
    )
    # Neither provisioned nor destroyed anything: still exactly one instance per slot.
    assert one_per_slot(cluster, 3)
    assert cluster.leader() == second


def test_etcd_frozen_then_back_leaves_one_leader_and_the_same_instances(
    cluster: Cluster, etcd: IO[str]
) -> None:
    """etcd stops answering for longer than the TTL (SIGSTOP: like a network cut), then comes
    back: the leader stands down, leadership settles on exactly one runtime again, and no
    instance was provisioned or destroyed by anyone in the meantime."""
    found = subprocess.run(["pgrep", "-x", "etcd"], capture_output=True, text=True)
    pids = [int(p) for p in found.stdout.split()]
    require("etcd", len(pids) == 1, "cannot tell which process is etcd")
    for index in range(3):
        cluster.start(index)
    (first,) = wait_for(
        lambda: (i,) if (i := cluster.leader()) is not None else None, timeout=30, what="leader"
    )
    cluster.call(first, "Group.CommitGroup", {"Spec": group(3)})
    wait_for(lambda: one_per_slot(cluster, 3), timeout=30, what="3 instances")
    wait_for(
        lambda: cluster.call(first, "Manager.Status")["Groups"][0]["Converged"], what="converged"
    )
    before = sorted(json.dumps(t, sort_keys=True) for t in cluster.members())
    # etcd is one for the whole machine: other suites' tests wait while it is frozen.
    with etcd_frozen(etcd, pids[0]):
        wait_for(
            lambda: cluster.call(first, "Manager.IsLeader") == {"Leader": False},
            timeout=20,
            what="the leader to stand down while etcd is away",
        )
        assert cluster.leader() is None  # nobody leads without etcd
    (settled,) = wait_for(
        lambda: (i,) if (i := cluster.leader()) is not None else None,
        timeout=30,
        what="one leader again",
    )
    wait_for(
        lambda: cluster.call(settled, "Manager.Status")["Groups"][0]["Converged"],
        what="the group converged again",
    )
    assert sorted(json.dumps(t, sort_keys=True) for t in cluster.members()) == before


def test_manager_status_shows_every_manager_and_who_leads(cluster: Cluster) -> None:
    for index in range(3):
        cluster.start(index)
    (leader,) = wait_for(
        lambda: (i,) if (i := cluster.leader()) is not None else None, timeout=30, what="leader"
    )
    everyone = sorted(cluster.endpoint(i) for i in range(3))
    wait_for(
        lambda: cluster.call(0, "Manager.Status").get("Managers") == everyone,
        what="all three managers listed",
    )
    out = subprocess.run(
        [*INFRAKIT, "manager", "status", "--endpoint", cluster.endpoint((leader + 1) % 3)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert cluster.endpoint(leader) in out.stdout
    assert all(endpoint in out.stdout for endpoint in everyone)
