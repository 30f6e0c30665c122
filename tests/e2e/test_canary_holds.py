"""Canaries, suspended processes and standby as an operator uses them (issue 14, phase 2): a
real `infrakit run` and the CLI as subprocesses, in a home of the test's own. Health commands
write down each check they make, so that "nothing happened" is asserted after a number of
checks, never after a sleep."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from conftest import Cli
from support import wait_for
from test_revisions import GROUP, Operator, Run, infrakit, runs, runtime

assert runs  # the fixture, used by name below

MORE_CHECKS = 8  # health checks after which a held group must still not have moved


class Checks:
    """The health checks the group's instances had, from the file their command writes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def count(self) -> int:
        return len(self.path.read_text().split()) if self.path.exists() else 0

    def wait_more(self, more: int = MORE_CHECKS) -> None:
        """Wait until `more` further checks were made (of any instance)."""
        start = self.count()
        wait_for(lambda: self.count() >= start + more, what=f"{more} more health checks")


def spec(
    version: str,
    checks: Checks,
    size: int = 4,
    health: str = "true",
    grace: str = "10m",
    **update: Any,
) -> dict[str, Any]:
    """The group at `version`: file instances whose every health check is written to `checks`
    (one line: the instance's ID) before `health` decides it."""
    record = f'echo "$INFRAKIT_INSTANCE_ID" >> {shlex.quote(str(checks.path))}; {health}'
    return {
        "ID": GROUP,
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": "instance-file", "Properties": {"Note": version}},
            "Flavor": {"Plugin": "flavor-vanilla", "Properties": {"Health": {"Command": record}}},
            "Health": {"Interval": "100ms", "GracePeriod": grace, "UnhealthyAfter": 2},
            "Update": {"MaxUnavailable": 1, "HealthyTimeout": "10m", **update},
        },
    }


def summary(op: Operator) -> dict[str, Any]:
    status = json.loads(op.ok("manager", "status", "--json"))
    return next(g for g in status["Groups"] if g["ID"] == GROUP)


def conditions(op: Operator) -> list[str]:
    return list(op.describe()["Conditions"])


def said(op: Operator, words: str) -> bool:
    return any(words in c for c in conditions(op))


def by_config(op: Operator) -> dict[str, int]:
    found: dict[str, int] = {}
    for config in op.hashes().values():
        found[config] = found.get(config, 0) + 1
    return found


def activity(op: Operator) -> str:
    """What the group's activity history says, one entry a line."""
    entries = json.loads(op.ok("group", "activity", GROUP, "--json"))
    return "\n".join(str(e["What"]) for e in entries)


def config_of(op: Operator) -> str:
    return str(op.history()["Revisions"][-1]["Config"])


def test_a_canary_waits_for_promote_across_a_restart_then_the_rest_rolls(
    cli: Cli, tmp_path: Path, runs: list[Run]
) -> None:
    run = runtime(cli, tmp_path, runs)
    op, checks = Operator(cli, tmp_path), Checks(tmp_path / "checks")
    assert op.commit(spec("v1", checks)).returncode == 0
    v1 = config_of(op)
    op.wait_converged(v1, 4)

    refused = infrakit(cli, "group", "promote", GROUP)
    assert refused.returncode == 1 and "no canary waiting" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr

    assert op.commit(spec("v2", checks, Canary=1, MaxSurge=2, MaxUnavailable=2)).returncode == 0
    v2 = config_of(op)
    waiting = f"canary 1/1 healthy; waiting for `infrakit group promote {GROUP}`"
    wait_for(lambda: said(op, waiting), what="the canary to wait for its promotion")
    checks.wait_more()
    assert by_config(op) == {v1: 3, v2: 1}
    assert summary(op)["Update"]["Canary"] == waiting
    assert waiting in op.ok("group", "status", GROUP)
    assert waiting in activity(op)

    # The wait is stored with the rollout: a restarted runtime still waits.
    run.stop()
    run.start()
    wait_for(lambda: said(op, waiting), what="the canary still waiting after a restart")
    checks.wait_more()
    assert by_config(op) == {v1: 3, v2: 1}

    promoted = op.ok("group", "promote", GROUP)
    assert promoted.startswith(f"Promoted {GROUP}: canaries promoted")
    op.wait_converged(v2, 4)
    again = infrakit(cli, "group", "promote", GROUP, "--json")
    assert again.returncode == 1 and "no canary waiting" in again.stderr


def test_auto_promote_rolls_the_rest_by_itself(cli: Cli, tmp_path: Path, runs: list[Run]) -> None:
    runtime(cli, tmp_path, runs)
    op, checks = Operator(cli, tmp_path), Checks(tmp_path / "checks")
    assert op.commit(spec("v1", checks)).returncode == 0
    op.wait_converged(config_of(op), 4)
    assert op.commit(spec("v2", checks, Canary=1, AutoPromote="1s")).returncode == 0
    op.wait_converged(config_of(op), 4)
    said_then = activity(op)
    assert "(AutoPromote after 1s)" in said_then
    assert "canaries promoted by AutoPromote" in said_then


def test_a_failing_canary_rolls_back_at_once_without_canaries(
    cli: Cli, tmp_path: Path, runs: list[Run]
) -> None:
    runtime(cli, tmp_path, runs)
    op, checks = Operator(cli, tmp_path), Checks(tmp_path / "checks")
    # v1 says Canary 1 too: the rollback to it must not wait for a promotion.
    assert op.commit(spec("v1", checks, Canary=1, MaxUnavailable=4)).returncode == 0
    v1 = config_of(op)
    op.wait_converged(v1, 4)
    wait_for(lambda: op.history()["Revisions"][-1]["RolledOut"], what="v1 marked rolled out")
    bad = spec(
        "v2",
        checks,
        health="false",
        Canary=1,
        MaxUnavailable=4,
        HealthyTimeout="1s",
        OnFailure="rollback",
    )
    assert op.commit(bad).returncode == 0
    wait_for(lambda: op.history()["Revision"] == 3, what="the rollback's revision")
    assert op.history()["Revisions"][-1]["Change"].startswith("rollback to rev 1")
    op.wait_converged(v1, 4)
    assert not said(op, "waiting for")


def test_suspended_heal_launch_and_terminate_hold_the_group_until_unsuspended(
    cli: Cli, tmp_path: Path, runs: list[Run]
) -> None:
    run = runtime(cli, tmp_path, runs)
    op, checks = Operator(cli, tmp_path), Checks(tmp_path / "checks")
    assert op.commit(spec("v1", checks, size=3)).returncode == 0
    v1 = config_of(op)
    before = op.wait_converged(v1, 3)

    # heal: a vanished instance is not replaced, across a restart; unsuspended, it is.
    out = json.loads(op.ok("group", "suspend", GROUP, "heal", "--json"))
    assert out["Suspended"] == ["heal"]
    victim = sorted(before)[0]
    op.ok("instance", "--name", "instance-file", "destroy", victim)
    wait_for(lambda: summary(op)["Phases"].get("held") == 1, what="the emptied slot held")
    checks.wait_more()
    assert len(op.hashes()) == 2 and victim not in op.hashes()
    assert said(op, "suspended: heal")
    run.stop()
    run.start()
    assert said(op, "suspended: heal") or summary(op)["Suspended"] == ["heal"]
    checks.wait_more()
    assert len(op.hashes()) == 2
    op.ok("group", "unsuspend", GROUP, "heal")
    op.wait_converged(v1, 3)

    # launch: a scale-out provisions nothing until unsuspended.
    op.ok("group", "suspend", GROUP, "launch")
    op.ok("group", "scale", GROUP, "5")
    wait_for(lambda: summary(op)["Phases"].get("held") == 2, what="two new slots held")
    checks.wait_more()
    assert len(op.hashes()) == 3
    op.ok("group", "unsuspend", GROUP, "launch")
    five = op.wait_converged(v1, 5)

    # terminate: a scale-in destroys nothing until unsuspended.
    op.ok("group", "suspend", GROUP, "terminate")
    op.ok("group", "scale", GROUP, "2")
    wait_for(lambda: summary(op)["Size"] == 2, what="the scale-in committed")
    checks.wait_more()
    assert set(op.hashes()) == set(five)
    assert not op.describe()["Converged"]
    op.ok("group", "unsuspend", GROUP, "terminate")
    op.wait_converged(v1, 2)
    bad = infrakit(cli, "group", "suspend", GROUP, "nap")
    assert bad.returncode == 2 and "nap" in bad.stderr and "Traceback" not in bad.stderr


def test_an_instance_in_standby_is_neither_counted_nor_replaced_until_unstandby(
    cli: Cli, tmp_path: Path, runs: list[Run]
) -> None:
    run = runtime(cli, tmp_path, runs)
    op, checks = Operator(cli, tmp_path), Checks(tmp_path / "checks")
    sick = tmp_path / "sick"
    health = f'test ! -e {shlex.quote(str(sick))}-"$INFRAKIT_INSTANCE_ID"'
    assert op.commit(spec("v1", checks, size=3, health=health, grace="1s")).returncode == 0
    v1 = config_of(op)
    op.wait_converged(v1, 3)
    slot = f"{GROUP}-1"
    described = op.describe()["Instances"]
    (patient,) = [i["ID"] for i in described if i["LogicalID"] == slot]

    out = json.loads(op.ok("instance", "standby", GROUP, slot, "--json"))
    assert out["Standby"] == [slot]
    Path(f"{sick}-{patient}").touch()
    wait_for(lambda: summary(op)["Phases"].get("unhealthy") == 1, what="the patient unhealthy")
    checks.wait_more()
    assert patient in op.hashes() and op.describe()["Converged"]  # out of the counts
    assert said(op, f"in standby: {slot}")

    run.stop()
    run.start()
    wait_for(lambda: summary(op)["Phases"].get("unhealthy") == 1, what="unhealthy again")
    checks.wait_more()
    assert patient in op.hashes() and said(op, f"in standby: {slot}")

    refused = infrakit(cli, "instance", "standby", GROUP, "nobody")
    assert refused.returncode == 1 and "no instance 'nobody'" in refused.stderr

    op.ok("instance", "unstandby", GROUP, slot)
    wait_for(lambda: patient not in op.hashes(), what="the patient replaced")
    op.wait_converged(v1, 3)
