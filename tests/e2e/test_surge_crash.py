"""A runtime killed mid-surge (issue 14): kill -9 `infrakit run` while a slot holds both its old
instance and the new one made before it, restart it, and the rollout finishes with the new
instance kept, the old one retired, and no duplicate nor orphan anywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import Cli
from support import wait_for
from test_update_resume import (
    SIZE,
    Gate,
    Run,
    census,
    commit,
    converge,
    describe,
    lone_runtime,
    no_orphans_nor_duplicates,
    runs,  # noqa: F401 (a fixture)
)


def surging(gate: Gate, version: str) -> dict[str, Any]:
    spec = gate.group(version, healthy_timeout="10m")
    spec["Properties"]["Update"] = {"MaxSurge": 1, "MaxUnavailable": 0, "HealthyTimeout": "10m"}
    return spec


def test_a_runtime_killed_mid_surge_neither_duplicates_nor_orphans(
    cli: Cli,
    tmp_path: Path,
    runs: list[Run],  # noqa: F811
) -> None:
    gate = Gate(tmp_path)
    state = cli.home / "instances" / "process"
    run = lone_runtime(cli, tmp_path, runs)
    commit(run, tmp_path, surging(gate, "v1"))
    (v1,) = {h for _, h in converge(run, gate, state).values()}

    commit(run, tmp_path, surging(gate, "v2"))

    def surged() -> tuple[str, str] | None:
        """(slot, new instance) once a slot holds its new instance beside the old one (which
        the test never lets be healthy: the surge stays half done)."""
        members = census(state)
        fresh = [(lid, i) for i, (lid, h) in members.items() if h != v1]
        return fresh[0] if len(members) == SIZE + 1 and len(fresh) == 1 else None

    slot, new = wait_for(surged, what="a slot to hold its old and its new instance")
    (old,) = [i for i, (lid, h) in census(state).items() if lid == slot and h == v1]
    run.kill()

    run.start()

    def completed() -> bool:
        members = census(state)
        gate.allow(*(i for i, (_, h) in members.items() if h != v1))
        if len(members) != SIZE or any(h == v1 for _, h in members.values()):
            return False
        described = describe(run)
        return described is not None and described["Converged"]

    wait_for(completed, what="the rollout to finish after the restart")
    members = census(state)
    assert new in members and members[new][0] == slot, (
        f"the new instance {new} of {slot} was not kept: {members}"
    )
    assert old not in members
    no_orphans_nor_duplicates(gate, members)
