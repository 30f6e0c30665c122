"""A group's revisions as an operator uses them (issue 14): every commit numbered with who made
it, `group history`, `group rollback`, `--expect-revision`, `group scale`, `group pause` and
`resume`, and OnFailure going back to the last revision that fully rolled out. A real
`infrakit run` and the CLI as subprocesses, in a home of the test's own."""

from __future__ import annotations

import getpass
import json
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli
from support import (
    etcd_cluster,
    etcd_in_use,
    etcd_up,
    free_port,
    require,
    stop_session,
    wait_for,
)

INFRAKIT = [sys.executable, "-m", "infrakit.cli.main"]
GROUP = "web"
HASH = "infrakit.config.hash"
MORE_CHECKS = 10  # health checks after which a paused update must still not have moved on


def infrakit(cli: Cli, *args: str) -> subprocess.CompletedProcess[str]:
    """`infrakit ARGS` in the test's home, whatever its exit status."""
    return subprocess.run(
        [*INFRAKIT, *args], env=cli.env, capture_output=True, text=True, timeout=180
    )


class Run:
    """`infrakit run CLUSTER` on the test's home, its output in a file (a pipe could fill)."""

    def __init__(self, cli: Cli, cluster: Path, log: Path) -> None:
        self.cli, self.cluster, self.log = cli, cluster, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [*INFRAKIT, "run", str(self.cluster)],
                env=self.cli.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self.leads, what=f"the runtime to lead ({self.log})")

    def leads(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log.read_text()
        out = infrakit(self.cli, "manager", "status", "--json")
        return out.returncode == 0 and json.loads(out.stdout).get("Leader") is True

    def stop(self) -> None:
        if self.process is not None:
            stop_session(self.process)


class Operator:
    """The CLI against one runtime, and what the group looks like through it."""

    def __init__(self, cli: Cli, tmp_path: Path) -> None:
        self.cli, self.tmp = cli, tmp_path

    def ok(self, *args: str) -> str:
        out = infrakit(self.cli, *args)
        assert out.returncode == 0, f"infrakit {' '.join(args)}: {out.stderr}"
        return out.stdout

    def commit(self, spec: dict[str, Any], *flags: str) -> subprocess.CompletedProcess[str]:
        path = self.tmp / f"spec-{uuid.uuid4().hex[:8]}.json"
        path.write_text(json.dumps(spec))
        return infrakit(self.cli, "group", "commit", str(path), *flags)

    def history(self) -> dict[str, Any]:
        return json.loads(self.ok("group", "history", GROUP, "--json"))

    def spec(self) -> dict[str, Any]:
        return json.loads(self.ok("group", "inspect", GROUP))

    def describe(self) -> dict[str, Any]:
        return json.loads(self.ok("group", "describe", GROUP, "--json"))

    def hashes(self) -> dict[str, str]:
        """Instance ID -> config hash of every instance of the group."""
        return {i["ID"]: i["Tags"].get(HASH, "?") for i in self.describe()["Instances"]}

    def converged_at(self, config: str, size: int) -> dict[str, str] | None:
        """The instances, once the group has converged with `size` of them all at `config`."""
        described = self.describe()
        found = {i["ID"]: i["Tags"].get(HASH, "?") for i in described["Instances"]}
        if described["Converged"] and len(found) == size and set(found.values()) == {config}:
            return found
        return None

    def wait_converged(self, config: str, size: int) -> dict[str, str]:
        return wait_for(
            lambda: self.converged_at(config, size), what=f"{size} instances at {config[:8]}"
        )


def spec(
    version: str,
    size: int = 3,
    health: str = "true",
    on_failure: str = "pause",
    healthy_timeout: str = "10m",
) -> dict[str, Any]:
    """The group at `version` (file instances, a vanilla flavor with a health command)."""
    return {
        "ID": GROUP,
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": "instance-file", "Properties": {"Note": version}},
            "Flavor": {"Plugin": "flavor-vanilla", "Properties": {"Health": {"Command": health}}},
            "Health": {"Interval": "100ms", "GracePeriod": "10m"},
            "Update": {
                "MaxParallel": 1,
                "HealthyTimeout": healthy_timeout,
                "OnFailure": on_failure,
            },
        },
    }


@pytest.fixture
def runs(cli: Cli) -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        run.stop()


def runtime(cli: Cli, tmp_path: Path, runs: list[Run], config: Any = None) -> Run:
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps(config or {"Groups": []}))
    run = Run(cli, cluster, tmp_path / "run.log")
    runs.append(run)
    run.start()
    return run


def test_history_rollback_expected_revision_and_scale(
    cli: Cli, tmp_path: Path, runs: list[Run]
) -> None:
    run = runtime(cli, tmp_path, runs)
    op = Operator(cli, tmp_path)
    configs = []
    for version in ("v1", "v2", "v3"):
        assert op.commit(spec(version)).returncode == 0
        configs.append(op.history()["Revisions"][-1]["Config"])
        op.wait_converged(configs[-1], 3)

    history = op.history()
    assert history["Revision"] == 3
    revisions = history["Revisions"]
    assert [r["Revision"] for r in revisions] == [1, 2, 3]
    assert {r["Who"] for r in revisions} == {getpass.getuser()}
    assert revisions[0]["Change"] == "created (size 3)"
    assert "Instance.Properties" in revisions[1]["Change"]
    table = op.ok("group", "history", GROUP).splitlines()
    assert table[0].split() == ["REV", "TIME", "WHO", "CONFIG", "CHANGE"]
    assert len(table) == 4 and getpass.getuser() in table[1] and configs[0][:8] in table[1]

    # A stale expected revision is refused, naming the current one; nothing changes.
    stale = op.commit(spec("v4"), "--expect-revision", "2")
    assert stale.returncode == 1 and stale.stdout == ""
    assert "at revision 3, not 2" in stale.stderr and "Traceback" not in stale.stderr
    assert op.history()["Revision"] == 3
    assert op.spec()["Properties"]["Instance"]["Properties"] == {"Note": "v3"}

    # Back to revision 1: a new revision, the spec restored, the instances rolled back.
    back = op.ok("group", "rollback", GROUP, "--to", "1", "--expect-revision", "3")
    assert back.startswith(f"Rolled back {GROUP} (revision 4): ")
    assert op.history()["Revisions"][-1]["Change"] == "rollback to rev 1"
    assert op.spec()["Properties"]["Instance"]["Properties"] == {"Note": "v1"}
    before = op.wait_converged(configs[0], 3)

    # Scale: a revision of its own, and no instance is replaced.
    scaled = json.loads(op.ok("group", "scale", GROUP, "5", "--json"))
    assert scaled["Revision"] == 5
    assert op.history()["Revisions"][-1]["Change"] == "scale 3 -> 5"
    after = op.wait_converged(configs[0], 5)
    assert set(before) <= set(after), "scaling replaced instances"
    stale_scale = infrakit(cli, "group", "scale", GROUP, "2", "--expect-revision", "4")
    assert stale_scale.returncode == 1 and "at revision 5, not 4" in stale_scale.stderr

    # A LogicalIDs group cannot be scaled: one clear line.
    pets = spec("pets")
    pets["ID"] = "pets"
    pets["Properties"]["Allocation"] = {"LogicalIDs": ["a", "b"]}
    assert op.commit(pets).returncode == 0
    refused = infrakit(cli, "group", "scale", "pets", "3")
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert "Properties.Allocation.LogicalIDs" in refused.stderr and "Size group" in refused.stderr

    # The history survives a restart of the runtime.
    run.stop()
    run.start()
    assert [r["Revision"] for r in op.history()["Revisions"]] == [1, 2, 3, 4, 5]


def test_pause_stops_a_rollout_midway_and_resume_finishes_it(
    cli: Cli, tmp_path: Path, runs: list[Run]
) -> None:
    run = runtime(cli, tmp_path, runs)
    op = Operator(cli, tmp_path)
    assert op.commit(spec("v1")).returncode == 0
    v1 = op.history()["Revisions"][-1]["Config"]
    op.wait_converged(v1, 3)

    go, checks = tmp_path / "go", tmp_path / "checks"
    health = f'echo "$INFRAKIT_INSTANCE_ID" >> {shlex.quote(str(checks))}; test -e {go}'
    assert op.commit(spec("v2", health=health)).returncode == 0
    v2 = op.history()["Revisions"][-1]["Config"]
    first = wait_for(
        lambda: [i for i, h in op.hashes().items() if h == v2], what="a first v2 instance"
    )
    assert "rolling update paused at" in op.ok("group", "pause", GROUP)
    # Committing the same spec again (InfraKit's way to resume a failed update) keeps an
    # operator's pause: only `resume` ends it.
    assert op.commit(spec("v2", health=health)).returncode == 0
    # Kept across a restart.
    run.stop()
    run.start()
    assert op.history()["Paused"] == f"paused by {getpass.getuser()}"
    go.touch()  # the replacement under way now turns healthy; no other may start

    def checked_since(count: int) -> bool:
        return checks.exists() and checks.read_text().split().count(first[0]) >= count

    wait_for(lambda: checked_since(MORE_CHECKS), what="more health checks while paused")
    assert [i for i, h in op.hashes().items() if h == v2] == first

    assert "resumed" in op.ok("group", "resume", GROUP)
    op.wait_converged(v2, 3)
    wait_for(lambda: op.history()["Revisions"][-1]["RolledOut"], what="v2 marked rolled out")
    assert op.history()["Paused"] is None


def test_on_failure_rolls_back_to_the_last_revision_that_fully_rolled_out(
    cli: Cli, tmp_path: Path, runs: list[Run]
) -> None:
    runtime(cli, tmp_path, runs)
    op = Operator(cli, tmp_path)
    assert op.commit(spec("A")).returncode == 0
    a = op.history()["Revisions"][-1]["Config"]
    op.wait_converged(a, 3)
    wait_for(lambda: op.history()["Revisions"][-1]["RolledOut"], what="A marked rolled out")

    # B fails and pauses: it never fully rolls out.
    assert op.commit(spec("B", health="false", healthy_timeout="1s")).returncode == 0
    wait_for(lambda: any("paused" in c for c in op.describe()["Conditions"]), what="B to pause")
    # C fails too, and rolls back: to A, not to B.
    c_spec = spec("C", health="false", on_failure="rollback", healthy_timeout="1s")
    assert op.commit(c_spec).returncode == 0
    wait_for(lambda: op.history()["Revision"] == 4, what="the rollback's revision")
    latest = op.history()["Revisions"][-1]
    assert latest["Who"] == "OnFailure" and latest["Change"].startswith("rollback to rev 1")
    assert op.spec()["Properties"]["Instance"]["Properties"] == {"Note": "A"}
    op.wait_converged(a, 3)


def test_history_is_kept_in_the_etcd_store_across_restarts(
    cli: Cli, tmp_path: Path, runs: list[Run]
) -> None:
    require("etcd", etcd_up())
    with etcd_in_use():
        prefix = f"/infrakit-test/revisions-{uuid.uuid4().hex[:8]}"
        port = free_port()
        config = etcd_cluster(tmp_path / "shared", prefix, port)
        cli.env["INFRAKIT_ENDPOINT"] = f"tcp://127.0.0.1:{port}"
        run = runtime(cli, tmp_path, runs, config)
        op = Operator(cli, tmp_path)
        for version in ("v1", "v2"):
            assert op.commit(spec(version, size=1)).returncode == 0
        assert [r["Revision"] for r in op.history()["Revisions"]] == [1, 2]
        run.stop()
        run.start()
        history = op.history()
        assert [r["Revision"] for r in history["Revisions"]] == [1, 2]
        assert history["Revisions"][0]["Spec"]["Properties"]["Instance"]["Properties"] == {
            "Note": "v1"
        }
        op.ok("group", "destroy", GROUP, "--wait")
