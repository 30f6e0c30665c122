"""kill -9 of the process and file plugins at every line of provision and destroy (see
crash_points.py): whatever a crash leaves is found by a later plugin object. Each live process
is described, and describe, destroy and sweep then leave nothing: no process, no directory, no
temp file."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import environments

from infrakit.plugins.instance.file import FileInstancePlugin
from infrakit.plugins.instance.process import ProcessInstancePlugin

HARNESS = Path(__file__).with_name("crash_points.py")
TAGS = {"g": "crash"}


def crash_everywhere(kind: str, op: str, base: Path, token: str) -> list[dict[str, Any]]:
    """Run the harness; the crash points, the last of which ran to the end."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run(
        [sys.executable, str(HARNESS), kind, op, str(base), token],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    points = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(points) > 10 and not points[-1]["killed"], points
    print(f"{kind} {op}: {len(points) - 1} crash points")
    return points


def processes_carrying(token: str) -> dict[str, set[str]]:
    """Live processes whose environment has CRASH_TOKEN=<token>-k: token-k -> instance IDs."""
    found: dict[str, set[str]] = {}
    for env in environments().values():
        mark = env.get("CRASH_TOKEN", "")
        if mark.startswith(f"{token}-"):
            found.setdefault(mark, set()).add(env.get("INFRAKIT_INSTANCE_ID", "?"))
    return found


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def hidden(directory: Path) -> list[str]:
    return [name for name in leftovers(directory) if name.startswith(".")]


@pytest.mark.parametrize("op", ["provision", "destroy"])
def test_a_process_plugin_killed_at_any_line_leaves_no_process_unseen_and_nothing_after(
    tmp_path: Path, op: str
) -> None:
    token = secrets.token_hex(4)
    points = crash_everywhere("process", op, tmp_path, token)
    live = processes_carrying(token)
    try:
        for point in points:
            k, directory = point["k"], Path(point["dir"])
            plugin = ProcessInstancePlugin(directory, stop_timeout=5.0)
            described = {d.id for d in plugin.describe_instances(TAGS)}
            running = live.get(f"{token}-{k}", set())
            assert running <= described, f"point {k}: {running} runs, described: {described}"
            assert len(described) <= 1
            if op == "provision":  # the first look removes what the crash left half made
                assert hidden(directory) == [], f"point {k} left {hidden(directory)}"
            for instance in described:
                assert hidden(directory / instance) == [], f"point {k}"
            for instance in described | ({point["instance"]} - {""}):
                plugin.destroy(instance)  # the caller tries again
            plugin.sweep(TAGS)
            assert leftovers(directory) == [], f"point {k} left {leftovers(directory)}"
        assert processes_carrying(token) == {}
    finally:
        kill_carrying(token)


def test_file_provision_killed_at_any_line_leaves_no_temp_file(tmp_path: Path) -> None:
    points = crash_everywhere("file", "provision", tmp_path, secrets.token_hex(4))
    for point in points:
        k, directory = point["k"], Path(point["dir"])
        plugin = FileInstancePlugin(directory)
        described = plugin.describe_instances(TAGS)  # a first look removes stale temp files
        assert len(described) <= 1
        assert leftovers(directory) == [d.id for d in described], f"point {k}"
        assert plugin.sweep(TAGS) == []
        assert leftovers(directory) == [d.id for d in described]


def kill_carrying(token: str) -> None:
    """Teardown: SIGKILL whatever a failed test left running."""
    for pid, env in environments().items():
        if env.get("CRASH_TOKEN", "").startswith(f"{token}-"):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
