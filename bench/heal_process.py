"""Heal a group of `process` instances whose health check takes a while, and time the runtime's
answers to `Group.DescribeGroup` all the while.

`infrakit run` (in its own process) keeps a Size=40 group whose vanilla `Health.Command` is
`sleep 0.2`. Once it has converged, one instance's process is killed with SIGKILL, and the bench
times how long until its slot has a new live instance (its process recorded and running), and
until the runtime says that instance is healthy (the `healthy` event's own time); then it waits
for the group to converge again and kills the next one (--kills times). From the moment the
runtime leads until the end, another thread calls `Group.DescribeGroup` at the wire (a
ZeroMQ client on `ipc://<home>/plugins/group`, no CLI start-up counted) every 20 ms and times
each round trip.

    .venv/bin/python bench/heal_process.py [--size 40] [--kills 5] [--check 0.2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from actors.remote import RemoteRef

CLI = [sys.executable, "-m", "infrakit.cli.main"]
GROUP = "heal"
LOGICAL = "infrakit.logical_id"
DESCRIBE_EVERY = 0.02


class Describer(threading.Thread):
    """Calls Group.DescribeGroup every DESCRIBE_EVERY seconds and keeps each round trip."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(name="describer", daemon=True)
        self.endpoint = endpoint
        self.took: list[float] = []
        self.failed: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with RemoteRef(self.endpoint, timeout=60.0, retries=0) as ref:
            while not self.stopping.is_set():
                started = time.monotonic()
                try:
                    ref.call("Group.DescribeGroup", {"ID": GROUP})
                    self.took.append(time.monotonic() - started)
                except Exception as error:
                    self.failed.append(f"{type(error).__name__}: {error}")
                self.stopping.wait(DESCRIBE_EVERY)


def spec(size: int, check: float, token: str) -> dict[str, Any]:
    return {
        "ID": GROUP,
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": "instance-process", "Properties": {"Env": {"BENCH": token}}},
            "Flavor": {
                "Plugin": "flavor-vanilla",
                "Properties": {
                    "Init": ["exec sleep 3600"],
                    "Health": {"Command": f"sleep {check:g}"},
                },
            },
        },
    }


def records(state: Path) -> dict[str, dict[str, Any]]:
    """Instance ID -> its record, for every instance directory under `state`."""
    found = {}
    for path in state.glob("*/instance.json"):
        with contextlib.suppress(OSError, ValueError):
            found[path.parent.name] = json.loads(path.read_text())
    return found


def running(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def carries(pid: int, variable: str) -> bool:
    """Whether process `pid` was started with `variable` (NAME=value) in its environment."""
    try:
        return variable.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def events(log: Path, kind: str) -> list[dict[str, Any]]:
    """The runtime's events of `kind`, from its JSON log."""
    found = []
    for raw in log.read_bytes().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(raw)
            event = record.get("event") if isinstance(record, dict) else None
            if isinstance(event, dict) and event.get("kind") == kind:
                found.append(event)
    return found


def wait(condition: Any, what: str, timeout: float = 600.0, every: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up after {timeout:g}s waiting for {what}")
        time.sleep(every)
    return value


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=40)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--check", type=float, default=0.2, help="seconds a health check takes")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="ik-heal-"))
    home, log = root / "home", root / "run.log"
    state = home / "instances" / "process"
    cluster = root / "cluster.json"
    token = os.urandom(6).hex()
    cluster.write_text(json.dumps({"Groups": [spec(args.size, args.check, token)]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAKIT_")}
    env["INFRAKIT_HOME"] = str(home)
    with open(log, "ab") as out:
        runtime = subprocess.Popen(
            [*CLI, "run", str(cluster), "--json-logs"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    endpoint = f"ipc://{home / 'plugins' / 'group'}"
    describer = Describer(endpoint)
    try:
        wait(lambda: events(log, "leadership"), "the runtime to lead", every=0.05)
        describer.start()
        with RemoteRef(endpoint, timeout=60.0, retries=0) as ref:

            def converged() -> list[dict[str, Any]] | None:
                found = ref.call("Group.DescribeGroup", {"ID": GROUP})["Description"]
                members = found["Instances"]
                return members if found["Converged"] and len(members) == args.size else None

            started = time.monotonic()
            members = wait(converged, "the group to converge", every=0.05)
            print(
                f"Size {args.size} process group, health check `sleep {args.check:g}`:"
                f" converged in {time.monotonic() - started:.1f}s"
            )
            live_after, healthy_after = [], []
            for kill in range(args.kills):
                victim = sorted(members, key=lambda m: m["Tags"][LOGICAL])[kill % len(members)]
                slot, old = victim["Tags"][LOGICAL], victim["ID"]
                pid = records(state)[old]["PID"]
                killed_wall, killed = time.time(), time.monotonic()
                os.killpg(pid, signal.SIGKILL)

                def replaced(slot: str = slot, old: str = old) -> str | None:
                    for instance, record in records(state).items():
                        tags = record.get("Tags") or {}
                        if (
                            instance != old
                            and tags.get(LOGICAL) == slot
                            and running(record.get("PID"))
                        ):
                            return instance
                    return None

                new = wait(replaced, f"{slot} to be replaced")
                live_after.append(time.monotonic() - killed)
                healthy = wait(
                    lambda new=new: [e for e in events(log, "healthy") if e["instance"] == new],
                    f"{new} to be healthy",
                    every=0.05,
                )
                healthy_after.append(healthy[0]["time"] - killed_wall)
                print(
                    f"  kill {kill + 1}: {slot} live again after {live_after[-1]:.2f}s,"
                    f" healthy after {healthy_after[-1]:.2f}s"
                )
                members = wait(converged, "the group to converge again", every=0.05)
        describer.stopping.set()
        describer.join(120)
        took = [t * 1000 for t in describer.took]
        print(
            f"replaced (new instance live): median {statistics.median(live_after):.2f}s,"
            f" max {max(live_after):.2f}s; healthy: median {statistics.median(healthy_after):.2f}s,"
            f" max {max(healthy_after):.2f}s ({args.kills} kills)"
        )
        print(
            f"Group.DescribeGroup at the wire, every {DESCRIBE_EVERY * 1000:.0f} ms all along:"
            f" median {statistics.median(took):.1f} ms, p99 {percentile(took, 0.99):.1f} ms,"
            f" max {max(took):.1f} ms ({len(took)} calls, {len(describer.failed)} failed)"
        )
        for failure in describer.failed[:5]:
            print(f"  failed: {failure}")
    finally:
        describer.stopping.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runtime.pid, signal.SIGTERM)
        try:
            runtime.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(runtime.pid, signal.SIGKILL)
            runtime.wait(30)
        for record in records(state).values():  # the instances outlive the runtime, by design
            if running(record.get("PID")) and carries(record["PID"], f"BENCH={token}"):
                with contextlib.suppress(OSError):
                    os.killpg(record["PID"], signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
