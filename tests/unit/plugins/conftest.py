"""Fixtures for the built-in plugin tests: plugins on temp dirs, and no process left behind."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import wait_for as _wait_for

from infrakit.plugins.instance._proc import (
    CHILDREN,
    carriers,
    group_running,
    kill_group,
    stop_carriers,
)
from infrakit.plugins.instance.file import FileInstancePlugin
from infrakit.plugins.instance.process import ProcessInstancePlugin

WaitFor = Callable[..., None]


@pytest.fixture
def wait_for() -> WaitFor:
    """`wait_for(predicate, timeout=10.0)`: poll until true, fail the test on the deadline."""
    return _wait_for


@pytest.fixture
def file_plugin(tmp_path: Path) -> Iterator[FileInstancePlugin]:
    """A file instance plugin on a fresh directory, watching at a short interval."""
    plugin = FileInstancePlugin(tmp_path / "instances", watch_interval=0.02)
    yield plugin
    plugin.close()


def kill_recorded_processes(state_dir: Path) -> None:
    """SIGKILL the process group of every instance recorded under `state_dir`, and every process
    that carries one of its instances, and wait. Only processes that name a directory of
    `state_dir`: one that carries an instance ID alone (a health check's, another suite's) is
    none of this test's business."""
    groups: list[int] = []
    for record_path in state_dir.glob("*/instance.json"):
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("PID") is None:
            continue  # never started, or found below by what it carries
        kill_group(record["PID"], record["StartTime"])
        groups.append(record["PID"])
    stop_carriers([c for c in carriers(state_dir) if c.instance_dir is not None], timeout=0)
    for pgid in groups:

        def gone(pgid: int = pgid) -> bool:
            CHILDREN.reap()
            return not group_running(pgid)

        _wait_for(gone)


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A process plugin state dir whose recorded processes are killed at teardown."""
    path = tmp_path / "state"
    yield path
    kill_recorded_processes(path)


@pytest.fixture
def proc_plugin(state_dir: Path) -> Iterator[ProcessInstancePlugin]:
    """A process instance plugin with short timeouts, closed at teardown."""
    plugin = ProcessInstancePlugin(state_dir, stop_timeout=2.0, watch_interval=0.02)
    yield plugin
    plugin.close()
