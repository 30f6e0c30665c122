"""A plugin launched by the runtime (a cluster file's `Launch`) never outlives a clean stop and
is never duplicated: after a kill -9 of the runtime, the restarted runtime stops the orphan and
launches its own (exactly one plugin process, serving, no traceback); a follower on the same
home leaves the leader's plugin alone until that leader dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import Cli
from support import alive, wait_for

NAME = "instance-files"


def plugin_processes(files: Path) -> list[int]:
    """PIDs of the live `infrakit plugin start` processes serving the files in `files`."""
    wanted = f"Dir={files}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"plugin" in argv and b"start" in argv and wanted in argv and alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def cluster(tmp_path: Path, files: Path) -> Path:
    launch = [sys.executable, "-m", "infrakit.cli.main", "plugin", "start", "file"]
    path = tmp_path / "cluster.json"
    plugin = {"Name": NAME, "Launch": [*launch, "--name", NAME, "--option", f"Dir={files}"]}
    path.write_text(json.dumps({"Plugins": [plugin], "Manager": {"LeaderPoll": "200ms"}}))
    return path


def group(size: int) -> dict[str, Any]:
    return {
        "ID": "herd",
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": NAME},
            "Flavor": {"Plugin": "flavor-vanilla"},
            "Health": {"Interval": "200ms"},
        },
    }


def serves(cli: Cli, tmp_path: Path, size: int) -> bool:
    """Whether a group on the plugin converges at `size`: the plugin answers provisions."""
    spec = tmp_path / f"herd-{size}.json"
    spec.write_text(json.dumps(group(size)))
    if "instances" not in cli("group", "commit", str(spec), check=False):
        return False
    out = cli("group", "describe", "herd", "--json", check=False)
    description = json.loads(out) if out.strip() else {}
    return bool(description.get("Converged")) and len(description["Instances"]) == size


def output(process: subprocess.Popen[str]) -> str:
    """What a background `infrakit run` has printed so far (all of it once it has ended)."""
    assert process.stdout is not None
    return process.stdout.read() or ""


def replaced(files: Path, old: list[int]) -> bool:
    """Whether exactly one plugin process serves, and not one of `old`."""
    found = plugin_processes(files)
    return len(found) == 1 and found != old


def stop_cleanly(process: subprocess.Popen[str], files: Path) -> None:
    """SIGTERM a runtime: it says nothing of a traceback, and leaves no plugin behind."""
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(120)
    said = output(process)
    assert "Traceback" not in said, said
    wait_for(lambda: plugin_processes(files) == [], timeout=60, what="no plugin left")


def leading(cli: Cli, tmp_path: Path) -> tuple[Path, Path, subprocess.Popen[str], list[int]]:
    """A leading `infrakit run` that launched the plugin: the plugin's files directory, the
    cluster file, the runtime, and the plugin's pid."""
    files = tmp_path / "files"
    path = cluster(tmp_path, files)
    runtime = cli.start("run", str(path), ready="gained leadership: leading")
    plugin = wait_for(lambda: plugin_processes(files), timeout=60, what="the launched plugin")
    return files, path, runtime, plugin


def test_after_a_kill_9_one_plugin_serves_and_a_clean_stop_leaves_none(
    cli: Cli, tmp_path: Path
) -> None:
    files, path, first, orphan = leading(cli, tmp_path)
    wait_for(lambda: serves(cli, tmp_path, 1), timeout=60, what="the plugin to serve")

    os.killpg(first.pid, signal.SIGKILL)
    first.wait(30)
    assert plugin_processes(files) == orphan, "the plugin outlives a kill -9 (its own session)"

    again = cli.start("run", str(path), ready="gained leadership: leading")
    wait_for(lambda: replaced(files, orphan), timeout=60, what="the orphan replaced by one")
    wait_for(lambda: serves(cli, tmp_path, 2), timeout=60, what="the new plugin to serve")
    assert len(plugin_processes(files)) == 1

    stop_cleanly(again, files)
    assert "already running" not in (cli.home / "logs" / f"{NAME}.log").read_text()


def test_a_follower_leaves_the_leaders_plugin_alone_until_the_leader_dies(
    cli: Cli, tmp_path: Path
) -> None:
    files, path, leader, leaders = leading(cli, tmp_path)
    follower = cli.start("run", str(path), ready=f"plugin {NAME}: served by pid {leaders[0]}")
    wait_for(lambda: serves(cli, tmp_path, 1), timeout=60, what="the plugin to serve")
    assert plugin_processes(files) == leaders

    os.killpg(leader.pid, signal.SIGKILL)
    leader.wait(30)
    wait_for(lambda: replaced(files, leaders), timeout=60, what="the orphan replaced by one")
    wait_for(lambda: serves(cli, tmp_path, 2), timeout=60, what="the follower's plugin to serve")

    stop_cleanly(follower, files)
