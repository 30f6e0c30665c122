"""A rolling update survives the runtime that drove it (issue 10): kill -9 `infrakit run` halfway
through and the restarted runtime resumes where it stopped (the finished slots are not replaced
again); a paused update is still paused after a restart, and after an etcd leader change.

Instances are real processes; each turns healthy only once the test puts a `go` file with its
instance ID in a directory, so the test decides how far an update gets. Events are read back
from the runtimes' JSON logs."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli
from support import (
    ETCD,
    environments,
    etcd_cluster,
    etcd_in_use,
    etcd_up,
    free_port,
    kill_all,
    require,
    stop_session,
    wait_for,
)

from actors.remote import RemoteRef
from actors.rpc_errors import RemoteError, RpcTimeout
from infrakit.plugins.instance.process import ProcessInstancePlugin

INFRAKIT = [sys.executable, "-m", "infrakit.cli.main"]
GROUP = "rolling"
SIZE = 4
TOKEN = "RESUME_TOKEN"  # in every instance process's environment: how the test finds them
HASH = "infrakit.config.hash"
LOGICAL = "infrakit.logical_id"
MORE_CHECKS = 10  # checks of the broken instance, after the restart, in which nothing may happen
CHANGES = ("replacing", "destroyed", "provisioned", "gone")


class Gate:
    """The `go` directory, the instances' token, and the health command that reads them."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "go"
        self.dir.mkdir()
        self.token = secrets.token_hex(6)

    def allow(self, *instance_ids: str) -> None:
        for instance_id in instance_ids:
            (self.dir / instance_id).touch()

    def group(self, version: str, healthy_timeout: str, log: Path | None = None) -> dict[str, Any]:
        """The group at `version`; with `log`, its health command writes the instance ID there
        each time it runs. The grace period is long, so that no instance is ever replaced for
        ill health here: whatever is replaced, the update replaced."""
        check = f'test -e {shlex.quote(str(self.dir))}/"$INFRAKIT_INSTANCE_ID"'
        if log is not None:
            check = f'echo "$INFRAKIT_INSTANCE_ID" >> {shlex.quote(str(log))}; {check}'
        return {
            "ID": GROUP,
            "Properties": {
                "Allocation": {"Size": SIZE},
                "Instance": {
                    "Plugin": "instance-process",
                    "Properties": {"Env": {TOKEN: self.token}},
                },
                "Flavor": {
                    "Plugin": "flavor-vanilla",
                    "Properties": {
                        "Init": [f"echo {version}", "exec sleep 600"],
                        "Health": {"Command": check},
                    },
                },
                "Health": {"Interval": "200ms", "GracePeriod": "10m"},
                "Update": {"MaxParallel": 1, "HealthyTimeout": healthy_timeout},
            },
        }

    def live(self) -> dict[str, set[int]]:
        """Instance ID -> PIDs of the live processes carrying this test's token."""
        found: dict[str, set[int]] = {}
        for pid, env in environments().items():
            if env.get(TOKEN) == self.token:
                found.setdefault(env.get("INFRAKIT_INSTANCE_ID", "?"), set()).add(pid)
        return found


class Run:
    """`infrakit run CLUSTER --json-logs` on one home, its output in a file (a pipe could fill
    and block it); the events of its latest start are read back from there."""

    def __init__(self, home: Path, cluster: Path, log: Path) -> None:
        self.home, self.cluster, self.log = home, cluster, log
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAKIT_")}
        self.env["INFRAKIT_HOME"] = str(home)
        self.process: subprocess.Popen[bytes] | None = None
        self.offset = 0

    def start(self, leading: bool = True) -> None:
        """Start it; with `leading`, return once it leads."""
        self.offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [*INFRAKIT, "run", str(self.cluster), "--json-logs"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if leading:
            wait_for(self.leads, what=f"the runtime to lead ({self.log})")

    def leads(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.tail()
        return any(e["kind"] == "leadership" and "gained" in e["line"] for e in self.events())

    def events(self, *kinds: str) -> list[dict[str, Any]]:
        """Events logged since the latest start (each with its log line as "line")."""
        found = []
        with open(self.log, "rb") as f:
            f.seek(self.offset)
            for raw in f.read().splitlines():
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue  # not a log record, or one still being written
                event = record.get("event") if isinstance(record, dict) else None
                if isinstance(event, dict) and (not kinds or event.get("kind") in kinds):
                    found.append({**event, "line": record.get("message", "")})
        return found

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*INFRAKIT, *args], env=self.env, capture_output=True, text=True, timeout=180
        )

    def kill(self) -> None:
        """kill -9 the runtime alone: its instances live on."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None:
            stop_session(self.process)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def lines(events: list[dict[str, Any]]) -> str:
    return "\n".join(f"  {e['kind']}: {e['line']}" for e in events)


def census(state: Path) -> dict[str, tuple[str, str]]:
    """Instance ID -> (logical ID, config hash) of every live instance of the group."""
    plugin = ProcessInstancePlugin(state)
    try:
        return {
            d.id: (d.tags.get(LOGICAL, "?"), d.tags.get(HASH, "?"))
            for d in plugin.describe_instances({"infrakit.group": GROUP})
        }
    finally:
        plugin.close()


def logged(path: Path) -> Counter[str]:
    """How many times each instance's health command ran, from its log."""
    return Counter(path.read_text().split()) if path.exists() else Counter()


def no_orphans_nor_duplicates(gate: Gate, members: dict[str, tuple[str, str]]) -> None:
    live = gate.live()
    assert set(live) == set(members), f"live instance processes {live}, described {members}"
    assert all(len(pids) == 1 for pids in live.values()), f"duplicated processes: {live}"
    slots = Counter(lid for lid, _ in members.values())
    assert sorted(slots) == [f"{GROUP}-{n}" for n in range(SIZE)], members
    assert set(slots.values()) == {1}, f"a slot with more than one instance: {members}"


@pytest.fixture
def runs(cli: Cli, tmp_path: Path) -> Iterator[list[Run]]:
    """The runtimes a test starts, stopped afterwards (the `cli` fixture kills the instances)."""
    started: list[Run] = []
    yield started
    for run in started:
        run.stop()


def lone_runtime(cli: Cli, tmp_path: Path, runs: list[Run]) -> Run:
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps({"Groups": []}))
    run = Run(cli.home, cluster, tmp_path / "run.log")
    runs.append(run)
    run.start()
    return run


def commit(run: Run, tmp_path: Path, spec: dict[str, Any]) -> str:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    out = run.cli("group", "commit", str(path))
    assert out.returncode == 0, out.stderr
    return out.stdout


def converge(run: Run, gate: Gate, state: Path) -> dict[str, tuple[str, str]]:
    """Let every instance be healthy until the group has converged; its members then."""

    def converged() -> dict[str, tuple[str, str]] | None:
        members = census(state)
        gate.allow(*members)
        if len(members) != SIZE or not run.events("converged"):
            return None
        return members

    return wait_for(converged, what="the group to converge")


def describe(run: Run) -> dict[str, Any] | None:
    out = run.cli("group", "describe", GROUP, "--json")
    return json.loads(out.stdout) if out.returncode == 0 else None


# -- 5: kill -9 halfway through an update --------------------------------------------------------


def test_an_update_killed_halfway_resumes_where_it_stopped(
    cli: Cli, tmp_path: Path, runs: list[Run]
) -> None:
    gate = Gate(tmp_path)
    state = cli.home / "instances" / "process"
    run = lone_runtime(cli, tmp_path, runs)
    commit(run, tmp_path, gate.group("v1", healthy_timeout="10m"))
    (v1,) = {h for _, h in converge(run, gate, state).values()}

    assert "rolling update on 4" in commit(run, tmp_path, gate.group("v2", healthy_timeout="10m"))
    done: list[str] = []  # the first two new instances: the test lets them be healthy

    def third_started() -> bool:
        fresh = [i for i, (_, h) in census(state).items() if h != v1]
        for instance in fresh:
            if instance not in done and len(done) < 2:
                done.append(instance)
                gate.allow(instance)
        return len(done) == 2 and len(fresh) >= 3

    wait_for(third_started, what="two slots to finish the update and a third to start")
    before = census(state)
    done_slots = {i: before[i][0] for i in done}
    (v2,) = {before[i][1] for i in done}
    run.kill()

    run.start()

    def completed() -> bool:
        changed = [e for e in run.events(*CHANGES) if e.get("instance") in done]
        assert not changed, "finished slots were replaced again after the restart:\n" + lines(
            run.events()
        )
        members = census(state)
        assert all(i in members for i in done), f"a finished instance is gone: {members}"
        gate.allow(*(i for i, (_, h) in members.items() if h == v2))
        if len(members) != SIZE or any(h != v2 for _, h in members.values()):
            return False
        described = describe(run)
        return described is not None and described["Converged"]

    wait_for(completed, what="the update to complete after the restart")
    members = census(state)
    assert {i: members[i][0] for i in done} == done_slots
    no_orphans_nor_duplicates(gate, members)


# -- 5, continued: a paused update stays paused across a restart ------------------------------


def pause(run: Run) -> str:
    """After a commit whose new instances are never allowed to be healthy: wait until the
    update says it is paused; the one instance it made."""

    def paused() -> bool:
        replacing = run.events("replacing")
        assert len(replacing) <= 1, f"more than one instance replaced:\n{lines(run.events())}"
        return bool(run.events("update-paused"))

    wait_for(paused, what="the update to pause")
    (made,) = run.events("provisioned")
    return str(made["instance"])


def stays_paused(
    run: Run, log: Path, broken: str, state: Path, members: dict[str, tuple[str, str]]
) -> None:
    """Nothing changes while the broken instance's health command runs MORE_CHECKS times."""
    checks = logged(log)[broken]

    def checked_again() -> bool:
        changed = run.events(*CHANGES)
        assert not changed, f"the paused update went on:\n{lines(run.events())}"
        return logged(log)[broken] >= checks + MORE_CHECKS

    wait_for(checked_again, what=f"{MORE_CHECKS} more health checks of the broken instance")
    assert census(state) == members, "instances changed while the update was paused"


def test_a_paused_update_is_still_paused_after_a_restart(
    cli: Cli, tmp_path: Path, runs: list[Run]
) -> None:
    gate = Gate(tmp_path)
    state = cli.home / "instances" / "process"
    log = tmp_path / "checks.log"
    run = lone_runtime(cli, tmp_path, runs)
    commit(run, tmp_path, gate.group("v1", healthy_timeout="10m"))
    converge(run, gate, state)
    # v3's instances are never allowed: its update replaces one, which is never healthy.
    run.offset = run.log.stat().st_size
    commit(run, tmp_path, gate.group("v3", healthy_timeout="3s", log=log))
    broken = pause(run)
    members = census(state)
    assert broken in members and len(members) == SIZE
    run.kill()

    run.start()

    def looked() -> dict[str, Any] | None:
        described = describe(run)
        return described if described and len(described["Instances"]) == SIZE else None

    conditions = wait_for(looked, what="the restarted runtime to look at the group")["Conditions"]
    assert any("paused" in c for c in conditions), (
        f"after a restart the update is no longer paused; the group's conditions: {conditions}"
    )
    stays_paused(run, log, broken, state, members)
    described = describe(run)
    assert described is not None and any("paused" in c for c in described["Conditions"])
    no_orphans_nor_duplicates(gate, members)


# -- 6: ... and across an etcd leader change -----------------------------------------------------


class Pair:
    """Two runtimes on the real etcd (a private key prefix) sharing one instance directory, as
    hosts share a cloud; each serves the Group API on its own TCP port."""

    def __init__(self, root: Path) -> None:
        self.shared = root / "instances"
        prefix = f"/infrakit-test-{uuid.uuid4().hex[:8]}"
        self.ports = [free_port(), free_port()]
        self.runs = []
        for index, port in enumerate(self.ports):
            config = etcd_cluster(self.shared, prefix, port)
            cluster = root / f"cluster-{index}.json"
            cluster.write_text(json.dumps(config))
            self.runs.append(Run(root / f"home-{index}", cluster, root / f"run-{index}.log"))

    def call(self, index: int, method: str, params: dict[str, Any] | None = None) -> Any:
        with RemoteRef(f"tcp://127.0.0.1:{self.ports[index]}", timeout=5.0, retries=0) as ref:
            return ref.call(method, params or {})

    def leader(self, other_than: int | None = None) -> tuple[int] | None:
        """(index,) of the one runtime that leads, if exactly one does (and it is not
        `other_than`); a tuple, as index 0 is falsy."""
        leading = []
        for index, run in enumerate(self.runs):
            if run.process is None or run.process.poll() is not None:
                continue
            try:
                if self.call(index, "Manager.IsLeader")["Leader"]:
                    leading.append(index)
            except (RpcTimeout, RemoteError):
                continue
        if len(leading) == 1 and leading[0] != other_than:
            return (leading[0],)
        return None

    def describe(self, index: int) -> dict[str, Any]:
        return dict(self.call(index, "Group.DescribeGroup", {"ID": GROUP})["Description"])


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    with etcd_in_use():  # first: another suite may have it frozen for a while
        require("etcd", etcd_up(), f"nothing answers at {ETCD}")
        running = Pair(tmp_path)
        try:
            yield running
        finally:
            for run in running.runs:
                run.stop()
            kill_all(running.shared)


def test_a_paused_update_is_still_paused_after_a_leader_change(pair: Pair, tmp_path: Path) -> None:
    gate = Gate(tmp_path)
    log = tmp_path / "checks.log"
    for run in pair.runs:
        run.start(leading=False)
    (first,) = wait_for(pair.leader, what="one leader")
    leader = pair.runs[first]
    pair.call(first, "Group.CommitGroup", {"Spec": gate.group("v1", healthy_timeout="10m")})
    converge(leader, gate, pair.shared)
    leader.offset = leader.log.stat().st_size
    broken_spec = gate.group("v3", healthy_timeout="3s", log=log)
    pair.call(first, "Group.CommitGroup", {"Spec": broken_spec})
    broken = pause(leader)
    members = census(pair.shared)
    assert broken in members and len(members) == SIZE

    for run in pair.runs:  # from here on, events of the new leader only
        run.offset = run.log.stat().st_size
    leader.kill()
    (second,) = wait_for(lambda: pair.leader(other_than=first), what="a new leader")
    successor = pair.runs[second]

    def looked() -> dict[str, Any] | None:
        described = pair.describe(second)
        return described if len(described["Instances"]) == SIZE else None

    conditions = wait_for(looked, what="the new leader to look at the group")["Conditions"]
    assert any("paused" in c for c in conditions), (
        f"after a leader change the update is no longer paused; the group's conditions:"
        f" {conditions}"
    )
    stays_paused(successor, log, broken, pair.shared, members)
    assert any("paused" in c for c in pair.describe(second)["Conditions"])
    no_orphans_nor_duplicates(gate, members)
