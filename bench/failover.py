"""Failover on etcd: three runtimes, a Size 10 group of process instances, kill -9 the leader
twenty times (starting it again each time). Prints the median and max time from the kill until
the new leader has started its groups, and the duplicates and orphans found (must be 0).

    .venv/bin/python bench/failover.py [--kills 20] [--ttl 3s]

Needs etcd on 127.0.0.1:2379 (scripts/services.sh starts it). Default settings (TTL 2s,
LeaderPoll 1s), as a user gets without tuning.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from actors.remote import RemoteRef
from actors.rpc_errors import RemoteError, RpcTimeout
from infrakit.plugins.instance.process import ProcessInstancePlugin

INFRAKIT = [sys.executable, "-m", "infrakit.cli.main"]
SIZE = 10


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--ttl", default="2s")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ik-failover-"))
    shared = root / "instances"
    prefix = f"/infrakit-bench-{uuid.uuid4().hex[:8]}"
    ports = [free_port() for _ in range(3)]
    configs = []
    for index, port in enumerate(ports):
        config = {
            "Plugins": [
                {"Name": "instance-process", "Kind": "process", "Options": {"Dir": str(shared)}}
            ],
            "Manager": {
                "Leader": {"Kind": "etcd", "TTL": args.ttl, "Key": f"{prefix}/leader"},
                "Store": {"Kind": "etcd", "Prefix": f"{prefix}/groups/"},
                "Listen": [f"tcp://127.0.0.1:{port}"],
            },
        }
        path = root / f"cluster-{index}.json"
        path.write_text(json.dumps(config))
        configs.append(path)
    processes: list[subprocess.Popen[bytes] | None] = [None, None, None]

    def start(index: int) -> None:
        env = {
            **os.environ,
            "INFRAKIT_HOME": str(root / f"home-{index}"),
            "XDG_STATE_HOME": str(root / "state"),  # the default plugins' shared state
        }
        with open(root / f"runtime-{index}.log", "ab") as log:
            processes[index] = subprocess.Popen(
                [*INFRAKIT, "run", str(configs[index])],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    refs = [RemoteRef(f"tcp://127.0.0.1:{port}", timeout=0.5, retries=0) for port in ports]

    def call(index: int, method: str, params: dict[str, Any] | None = None) -> Any:
        return refs[index].call(method, params or {})

    def leader_with_groups(exclude: int | None = None) -> int | None:
        for index in range(3):
            process = processes[index]
            if index == exclude or process is None or process.poll() is not None:
                continue
            try:
                status = call(index, "Manager.Status")
            except (RpcTimeout, RemoteError):
                continue
            if status["Leader"] and status["Groups"]:
                return index
        return None

    def wait(predicate: Any, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value is not None and value is not False:
                return value
            time.sleep(0.01)
        raise SystemExit("timed out; see the runtime logs in " + str(root))

    def census() -> tuple[int, int]:
        plugin = ProcessInstancePlugin(shared)
        try:
            tags = [d.tags for d in plugin.describe_instances({"infrakit.group": "bench"})]
        finally:
            plugin.close()
        slots = Counter(t.get("infrakit.logical_id") for t in tags)
        wanted = {f"bench-{n}" for n in range(SIZE)}
        duplicates = sum(count - 1 for slot, count in slots.items() if slot in wanted)
        orphans = sum(count for slot, count in slots.items() if slot not in wanted)
        return duplicates, orphans

    try:
        for index in range(3):
            start(index)
        spec = {
            "ID": "bench",
            "Properties": {
                "Allocation": {"Size": SIZE},
                "Instance": {"Plugin": "instance-process"},
                "Flavor": {"Plugin": "flavor-vanilla", "Properties": {"Init": ["exec sleep 3600"]}},
            },
        }

        def leader() -> int | None:
            for index in range(3):
                try:
                    if call(index, "Manager.IsLeader")["Leader"]:
                        return index
                except (RpcTimeout, RemoteError):
                    continue
            return None

        first = wait(leader)
        call(first, "Group.CommitGroup", {"Spec": spec})
        wait(lambda: census() == (0, 0) and leader_with_groups() is not None)
        times, worst = [], (0, 0)
        for _ in range(args.kills):
            current = wait(leader_with_groups)
            wait(
                lambda current=current: (
                    call(current, "Manager.Status")["Groups"][0]["Converged"] or None
                )
            )
            process = processes[current]
            assert process is not None
            killed = time.monotonic()
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            wait(lambda current=current: leader_with_groups(exclude=current))
            times.append(time.monotonic() - killed)
            start(current)
            counts = census()
            worst = (max(worst[0], counts[0]), max(worst[1], counts[1]))
        final = census()
        worst = (max(worst[0], final[0]), max(worst[1], final[1]))
        print(
            f"failover on etcd (TTL {args.ttl}, LeaderPoll 1s), {args.kills} kill -9 of the leader,"
            f" Size {SIZE} group of process instances:"
        )
        print(
            f"  kill -> new leader running its groups: median {statistics.median(times):.2f} s,"
            f" max {max(times):.2f} s, min {min(times):.2f} s"
        )
        print(f"  duplicates found: {worst[0]}   orphans found: {worst[1]}")
    finally:
        for ref in refs:
            ref.close()
        for process in processes:
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        plugin = ProcessInstancePlugin(shared)
        for description in plugin.describe_instances({}):
            plugin.destroy(description.id)
        plugin.close()


if __name__ == "__main__":
    main()
