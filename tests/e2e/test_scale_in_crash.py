"""Scale-in's moves across a kill -9 of `infrakit run`, and with a plugin that cannot relabel.

The instance plugin is the file plugin in a process of its own (gated_label_plugin.py), whose
Label the test can hold at the move (after the victim is destroyed, before the survivor is
relabelled into its slot) or refuse. Instances are counted from their files."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli
from support import stop_session, wait_for
from test_update_resume import Run, commit, runs  # noqa: F401 (a fixture)

GROUP = "herd"
PLUGIN = Path(__file__).with_name("gated_label_plugin.py")


class Files:
    """The gated plugin's process, its instance files and its control directory."""

    def __init__(self, cli: Cli, root: Path) -> None:
        self.dir = root / "files"
        self.control = root / "control"
        self.control.mkdir()
        self.process = subprocess.Popen(
            [sys.executable, str(PLUGIN), "instance-gated", str(self.dir), str(self.control)],
            env=cli.env,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "Listening"

    def census(self) -> dict[str, str]:
        """Logical ID -> instance ID of every instance file; a slot twice fails the test."""
        found: dict[str, str] = {}
        for path in self.dir.glob("*") if self.dir.exists() else ():
            if path.name.startswith("."):
                continue
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # being written
            lid = record["Tags"]["infrakit.logical_id"]
            assert lid not in found, f"two instances in {lid}: {found[lid]}, {record['ID']}"
            found[lid] = record["ID"]
        return found


@pytest.fixture
def files(cli: Cli, tmp_path: Path) -> Iterator[Files]:
    served = Files(cli, tmp_path)
    yield served
    stop_session(served.process)


def runtime(cli: Cli, tmp_path: Path, runs: list[Run]) -> Run:  # noqa: F811
    cluster = tmp_path / "cluster.json"
    plugin = {"Name": "instance-gated", "Endpoint": f"ipc://{cli.plugins}/instance-gated"}
    cluster.write_text(json.dumps({"Plugins": [plugin], "Groups": []}))
    run = Run(cli.home, cluster, tmp_path / "run.log")
    runs.append(run)
    run.start()
    return run


def group(version: str, size: int) -> dict[str, Any]:
    return {
        "ID": GROUP,
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": "instance-gated", "Properties": {"Note": version}},
            "Flavor": {"Plugin": "flavor-vanilla"},
            "Health": {"Interval": "100ms"},
        },
    }


def converged(run: Run, files: Files, size: int) -> dict[str, str]:
    """Wait until slots 0..size-1 hold one instance each and the group says it converged."""

    def done() -> dict[str, str] | None:
        out = run.cli("group", "describe", GROUP, "--json")
        if out.returncode != 0 or not json.loads(out.stdout)["Converged"]:
            return None
        found = files.census()  # after the group said so: not a moment before it changed
        return found if sorted(found) == [f"{GROUP}-{n}" for n in range(size)] else None

    return wait_for(done, what=f"{size} instances in slots 0..{size - 1}, converged")


def outdated_in_slot_0(run: Run, files: Files, tmp_path: Path) -> dict[str, str]:
    """herd-0 at config v1, herd-1 and herd-2 at v2 (the rollout is suspended)."""
    commit(run, tmp_path, group("v1", 1))
    converged(run, files, 1)
    assert run.cli("group", "suspend", GROUP, "rollout").returncode == 0
    commit(run, tmp_path, group("v2", 3))
    return wait_for(lambda: len(found := files.census()) == 3 and found, what="3 instances")


def test_a_runtime_killed_mid_move_ends_with_the_survivors_and_no_duplicate(
    cli: Cli,
    files: Files,
    tmp_path: Path,
    runs: list[Run],  # noqa: F811
) -> None:
    run = runtime(cli, tmp_path, runs)
    before = outdated_in_slot_0(run, files, tmp_path)
    (files.control / "gate").touch()
    commit(run, tmp_path, group("v2", 2))

    # The Label that moves herd-2 into herd-0 is held: herd-0's outdated instance is gone.
    blocked = files.control / "blocked"
    wait_for(blocked.exists, what="the move's Label")
    assert blocked.read_text() == f"{before['herd-2']} {GROUP}-0"
    assert files.census() == {"herd-1": before["herd-1"], "herd-2": before["herd-2"]}
    run.kill()
    (files.control / "gate").unlink()  # the held Label is refused: nothing relabelled

    run.start()
    after = converged(run, files, 2)
    assert after == {"herd-0": before["herd-2"], "herd-1": before["herd-1"]}
    assert not run.events("provisioned"), [e["line"] for e in run.events()]


def test_a_plugin_that_cannot_relabel_removes_the_highest_slots(
    cli: Cli,
    files: Files,
    tmp_path: Path,
    runs: list[Run],  # noqa: F811
) -> None:
    (files.control / "refuse").touch()
    run = runtime(cli, tmp_path, runs)
    before = outdated_in_slot_0(run, files, tmp_path)
    commit(run, tmp_path, group("v2", 2))

    def fell_back() -> bool:
        out = run.cli("group", "describe", GROUP, "--json")
        conditions = json.loads(out.stdout)["Conditions"] if out.returncode == 0 else []
        said = any("the instance plugin cannot relabel" in c for c in conditions)
        return said and files.census() == {"herd-0": before["herd-0"], "herd-1": before["herd-1"]}

    wait_for(fell_back, what="herd-2 removed, herd-0 kept, and the group saying why")
    # The rollout then replaces herd-0 in place, over many looks: the move is not tried again.
    assert run.cli("group", "unsuspend", GROUP, "rollout").returncode == 0
    after = converged(run, files, 2)
    assert after["herd-1"] == before["herd-1"] and after["herd-0"] != before["herd-0"]
    refused = run.events("move-refused")
    assert len(refused) == 1, [e["line"] for e in refused]
    assert "this plugin cannot change an instance's tags" in refused[0]["line"]
    assert not run.events("moved", "scale-in")
