"""Two `infrakit run` processes on one real etcd, each with its own home, as on two hosts (or
the README's "several homes on one host"): every manager answers on its own home's socket (a
follower forwards to the leader), both list both managers and agree on who leads, and with the
process plugin's default `Dir` a new leader adopts the old leader's instances instead of
making them again. Instances are real processes, counted from /proc, whatever any record says."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import signal
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from support import (
    ETCD,
    INFRAKIT,
    cli_env,
    environments,
    free_port,
    process_group,
    wait_for,
)

from actors.remote import RemoteRef
from actors.rpc_errors import RemoteError, RpcTimeout


class Pair:
    """Two runtimes sharing etcd (a private key prefix) and one host-wide state directory (the
    test's, through XDG_STATE_HOME), each with its own home and `tcp://` endpoint."""

    def __init__(self, root: Path, plugins: list[list[dict[str, Any]]] | None = None) -> None:
        self.root = root
        self.prefix = f"/infrakit-test-{uuid.uuid4().hex[:8]}"
        self.ports = [free_port(), free_port()]
        self.homes = [root / "home-0", root / "home-1"]
        self.state = root / "state"
        self.processes: list[subprocess.Popen[bytes] | None] = [None, None]
        self.configs = []
        for index, port in enumerate(self.ports):
            config: dict[str, Any] = {
                "Manager": {
                    "Leader": {
                        "Kind": "etcd",
                        "Endpoints": [ETCD],
                        "TTL": "2s",
                        "Key": f"{self.prefix}/leader",
                    },
                    "Store": {"Kind": "etcd", "Endpoints": [ETCD], "Prefix": f"{self.prefix}/g/"},
                    "LeaderPoll": "500ms",
                    "Listen": [f"tcp://127.0.0.1:{port}"],
                }
            }
            if plugins is not None:
                config["Plugins"] = plugins[index]
            path = root / f"cluster-{index}.json"
            path.write_text(json.dumps(config))
            self.configs.append(path)

    def env(self, index: int) -> dict[str, str]:
        return cli_env(self.homes[index], XDG_STATE_HOME=str(self.state))

    def endpoint(self, index: int) -> str:
        return f"tcp://127.0.0.1:{self.ports[index]}"

    def log(self, index: int) -> Path:
        return self.root / f"runtime-{index}.log"

    def start(self, index: int) -> subprocess.Popen[bytes]:
        log = open(self.log(index), "ab")  # noqa: SIM115 - lives with the process
        process = subprocess.Popen(
            [*INFRAKIT, "run", str(self.configs[index])],
            env=self.env(index),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[index] = process
        return process

    def cli(self, index: int, *args: str) -> subprocess.CompletedProcess[str]:
        """`infrakit ARGS` in runtime `index`'s home, with no --endpoint: its home's socket."""
        return subprocess.run(
            [*INFRAKIT, *args], env=self.env(index), capture_output=True, text=True, timeout=120
        )

    def call(self, index: int, method: str, params: dict[str, Any] | None = None) -> Any:
        with RemoteRef(self.endpoint(index), timeout=2.0, retries=0) as ref:
            return ref.call(method, params or {})

    def leader(self) -> int | None:
        """The index of the one runtime that says it leads, if exactly one does."""
        leading = []
        for index, process in enumerate(self.processes):
            if process is None or process.poll() is not None:
                continue
            with contextlib.suppress(RpcTimeout, RemoteError):
                if self.call(index, "Manager.IsLeader")["Leader"]:
                    leading.append(index)
        return leading[0] if len(leading) == 1 else None

    def one_leader(self) -> int:
        (index,) = wait_for(
            lambda: (i,) if (i := self.leader()) is not None else None, what="one leader"
        )
        return index

    def stop(self) -> None:
        for process in self.processes:
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        for pid in instances(self.root):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)


def instances(root: Path) -> dict[int, str]:
    """PID -> logical ID of every live instance process made under `root`, wherever its
    state directory is: what a user counts with `ps`."""
    return {
        pid: env.get("INFRAKIT_LOGICAL_ID", "")
        for pid, env in environments().items()
        if env.get("INFRAKIT_INSTANCE_DIR", "").startswith(str(root))
    }


@pytest.fixture
def pair(tmp_path: Path, etcd: IO[str]) -> Iterator[Pair]:
    running = Pair(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def test_the_followers_home_answers_and_reaches_the_leader(pair: Pair, tmp_path: Path) -> None:
    pair.start(0)
    assert pair.one_leader() == 0
    pair.start(1)
    wait_for(lambda: "following the leader at" in pair.log(1).read_text(), what="the log line")
    log = pair.log(1).read_text()
    assert f"following the leader at {pair.endpoint(0)}" in log
    assert "another runtime leads on this home" not in log

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(process_group("web", 2)))
    committed = pair.cli(1, "group", "commit", str(spec))
    assert committed.returncode == 0, committed.stderr
    assert committed.stdout.startswith("Committed web: ")
    wait_for(lambda: sorted(instances(tmp_path).values()) == ["web-0", "web-1"], what="2 up")

    listed = pair.cli(1, "group", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(g["ID"], g["Size"]) for g in json.loads(listed.stdout)] == [("web", 2)]
    described = pair.cli(1, "group", "describe", "web", "--json")
    assert described.returncode == 0, described.stderr
    assert len(json.loads(described.stdout)["Instances"]) == 2

    # Recorded once, by the leader, as made by the CLI's user (not by the follower).
    history = pair.call(0, "Group.History", {"ID": "web"})
    assert [r["Revision"] for r in history["Revisions"]] == [1]
    (revision,) = history["Revisions"]
    assert revision["Who"] == getpass.getuser()
    assert revision["Authenticated"] is False


def test_both_homes_list_both_managers_and_agree_on_the_leader(pair: Pair) -> None:
    pair.start(0)
    pair.start(1)
    leader = pair.one_leader()
    everyone = sorted([pair.endpoint(0), pair.endpoint(1)])

    def managers(index: int) -> list[tuple[str, bool]] | None:
        done = pair.cli(index, "manager", "status", "--json")
        if done.returncode != 0:
            return None
        listed = json.loads(done.stdout).get("ManagerList") or []
        return sorted((m["Location"], m["Leader"]) for m in listed) or None

    expected = sorted((e, e == pair.endpoint(leader)) for e in everyone)
    wait_for(lambda: managers(0) == expected, what="home 0 lists both managers")
    wait_for(lambda: managers(1) == expected, what="home 1 lists both managers")
    for index in (0, 1):
        status = json.loads(pair.cli(index, "manager", "status", "--json").stdout)
        assert status["Managers"] == everyone  # the older field, unchanged
        assert status["LeaderLocation"] == pair.endpoint(leader)
        homes = {m["Location"]: m["Home"] for m in status["ManagerList"]}
        assert homes == {pair.endpoint(i): str(pair.homes[i]) for i in (0, 1)}
        assert all(m["Since"] for m in status["ManagerList"])
    text = pair.cli(1 - leader, "manager", "status")
    assert text.returncode == 0, text.stderr
    assert pair.endpoint(leader) in text.stdout and str(pair.homes[leader]) in text.stdout


def test_with_listen_set_the_leaders_home_still_answers(pair: Pair) -> None:
    pair.start(0)
    assert pair.one_leader() == 0
    listed = pair.cli(0, "group", "ls")
    assert listed.returncode == 0, listed.stderr


def test_a_new_leader_adopts_the_old_leaders_processes(pair: Pair, tmp_path: Path) -> None:
    """The process plugin with its default `Dir`: kill -9 of the leader, and the follower (on
    another home) takes the 3 instances over: still 3 live, one per slot."""
    pair.start(0)
    assert pair.one_leader() == 0
    pair.start(1)

    def follows() -> bool:
        with contextlib.suppress(RpcTimeout, RemoteError):
            return bool(pair.call(1, "Manager.IsLeader") == {"Leader": False})
        return False

    wait_for(follows, what="a follower")
    pair.call(0, "Group.CommitGroup", {"Spec": process_group("ha", 3)})
    wait_for(lambda: len(instances(tmp_path)) == 3, what="3 instances")
    before = instances(tmp_path)
    process = pair.processes[0]
    assert process is not None
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    wait_for(lambda: pair.leader() == 1, what="the follower to lead")
    wait_for(
        lambda: (s := pair.call(1, "Manager.Status"))["Groups"] and s["Groups"][0]["Converged"],
        what="the group converged under the new leader",
    )
    now = instances(tmp_path)
    assert Counter(now.values()) == Counter({"ha-0": 1, "ha-1": 1, "ha-2": 1})
    assert now == before  # the very same processes


def test_managers_whose_process_dirs_differ_on_one_host_refuse(
    tmp_path: Path, etcd: IO[str]
) -> None:
    """Each home's own `Dir` (as a user might write it): the second manager on the host would
    not see the first's instances, so it refuses to start and says why in one line."""
    plugins = [
        [{"Name": "instance-process", "Kind": "process", "Options": {"Dir": str(home)}}]
        for home in (tmp_path / "home-0" / "procs", tmp_path / "home-1" / "procs")
    ]
    pair = Pair(tmp_path, plugins)
    try:
        pair.start(0)
        assert pair.one_leader() == 0
        second = pair.start(1)
        assert second.wait(60) == 1
        errors = [
            line for line in pair.log(1).read_text().splitlines() if line.startswith("Error:")
        ]
        assert len(errors) == 1, pair.log(1).read_text()
        (error,) = errors
        assert "instance-process" in error and str(tmp_path / "home-0" / "procs") in error
        assert pair.endpoint(0) in error
    finally:
        pair.stop()


def test_two_runtimes_on_one_home_keep_one_socket_owner(tmp_path: Path) -> None:
    """No etcd: the file election. The second runtime on the home never takes the live socket;
    it takes it over once the first is gone (kill -9), and answers there."""
    home = tmp_path / "home"
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps({"Manager": {"LeaderPoll": "200ms"}}))
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    processes = []
    try:
        for log in logs:
            with open(log, "ab") as out:
                processes.append(
                    subprocess.Popen(
                        [*INFRAKIT, "run", str(cluster)],
                        env=cli_env(home),
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            if len(processes) == 1:
                wait_for(lambda: (home / "plugins" / "group").exists(), what="the socket")

        def status() -> Any:
            done = subprocess.run(
                [*INFRAKIT, "manager", "status", "--json"],
                env=cli_env(home),
                capture_output=True,
                text=True,
                timeout=60,
            )
            return json.loads(done.stdout) if done.returncode == 0 else None

        wait_for(lambda: "leads on this home" in logs[1].read_text(), what="the follower")
        assert f"another runtime leads on this home (pid {processes[0].pid})" in (
            logs[1].read_text()
        )
        assert status()["Leader"] is True  # the first one answers on the socket
        processes[0].kill()
        processes[0].wait(10)
        wait_for(lambda: (s := status()) is not None and s["Leader"], what="the second takes over")
        assert processes[1].poll() is None
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
