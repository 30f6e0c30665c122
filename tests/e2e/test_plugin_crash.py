"""A plugin process killed with SIGKILL during convergence and again during a rolling update:
the runtime survives, starts the plugin again (a cluster file's `Launch`), the group converges,
and no instance is duplicated or orphaned (checked by tags on the instance files)."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from conftest import Cli
from support import wait_for

from infrakit.pidfile import read_pid_file

SIZE = 12


def group(note: str) -> dict[str, Any]:
    return {
        "ID": "herd",
        "Properties": {
            "Allocation": {"Size": SIZE},
            "Instance": {"Plugin": "instance-files", "Properties": {"Note": note}},
            "Flavor": {"Plugin": "flavor-vanilla"},
            "Health": {"Interval": "200ms"},
            "Update": {"MaxParallel": 2},
        },
    }


def tags_on_disk(files: Path) -> list[dict[str, str]]:
    found = []
    for path in files.iterdir():
        if path.name.startswith("."):
            continue
        try:
            found.append(json.loads(path.read_text())["Tags"])
        except (OSError, ValueError):
            continue
    return found


def plugin_pid(cli: Cli) -> int | None:
    written = read_pid_file(cli.plugins / "instance-files.pid")
    return None if written is None else written.pid


def test_a_killed_plugin_comes_back_and_nothing_is_duplicated(cli: Cli, tmp_path: Path) -> None:
    files = tmp_path / "files"
    launch = [sys.executable, "-m", "infrakit.cli.main", "plugin", "start", "file"]
    cluster = tmp_path / "cluster.json"
    cluster.write_text(
        json.dumps(
            {
                "Plugins": [
                    {
                        "Name": "instance-files",
                        "Launch": [*launch, "--name", "instance-files", "--option", f"Dir={files}"],
                    }
                ]
            }
        )
    )
    runtime = cli.start("run", str(cluster), ready="gained leadership: leading")
    first_pid = wait_for(lambda: plugin_pid(cli), what="the launched plugin")
    spec = tmp_path / "herd.json"
    spec.write_text(json.dumps(group("v1")))
    assert "Managing 12 instances" in cli("group", "commit", str(spec))

    # Kill the plugin while the group converges.
    wait_for(lambda: files.exists() and len(tags_on_disk(files)) >= 1, what="a first instance")
    os.kill(first_pid, signal.SIGKILL)
    second_pid = wait_for(
        lambda: (pid := plugin_pid(cli)) not in (None, first_pid) and pid, what="a new plugin"
    )

    def converged(hash_count: int) -> bool:
        out = cli("group", "describe", "herd", "--json", check=False)
        if not out.strip():
            return False
        description = json.loads(out)
        hashes = {i["Tags"]["infrakit.config.hash"] for i in description["Instances"]}
        return bool(description["Converged"]) and len(hashes) == hash_count

    wait_for(lambda: converged(1), timeout=60, what="convergence after the crash")
    tags = tags_on_disk(files)
    slots = Counter(t["infrakit.logical_id"] for t in tags)
    assert sorted(slots) == sorted(f"herd-{n}" for n in range(SIZE))
    assert set(slots.values()) == {1}
    old_hash = {t["infrakit.config.hash"] for t in tags}

    # Kill it again in the middle of a rolling update.
    spec.write_text(json.dumps(group("v2")))
    assert "Performing a rolling update on 12 instances" in cli("group", "commit", str(spec))
    wait_for(
        lambda: any(t["infrakit.config.hash"] not in old_hash for t in tags_on_disk(files)),
        what="the update to begin",
    )
    os.kill(second_pid, signal.SIGKILL)

    def rolled() -> bool:
        tags = tags_on_disk(files)
        return (
            len(tags) == SIZE
            and not {t["infrakit.config.hash"] for t in tags} & old_hash
            and converged(1)
        )

    wait_for(rolled, timeout=90, what="the update to finish after the crash")
    slots = Counter(t["infrakit.logical_id"] for t in tags_on_disk(files))
    assert set(slots.values()) == {1} and len(slots) == SIZE
    assert runtime.poll() is None  # the runtime lived through it all

    # Each death is routine recovery: one WARNING line saying what happened, no traceback.
    assert runtime.stdout is not None
    logged = runtime.stdout.read() or ""
    assert "Traceback" not in logged, logged
    warnings = [line for line in logged.splitlines() if " WARNING " in line]
    deaths = [line for line in warnings if "instance-files exited with code -9" in line]
    assert len(deaths) == 2, warnings
    assert all("restarting in" in line for line in deaths), deaths
