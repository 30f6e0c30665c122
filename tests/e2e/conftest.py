"""End-to-end fixtures: a fresh home and plugins directory, the CLI as a subprocess, the
machine's etcd held for a test, private local-plugin state, and no process left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from support import ETCD, etcd_in_use, etcd_up, kill_all, require, stop_session

INFRAKIT = [sys.executable, "-m", "infrakit.cli.main"]


class Cli:
    """Runs `infrakit ...` in a private INFRAKIT_HOME, the way a user would."""

    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "home"
        self.plugins = self.home / "plugins"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("INFRAKIT_")},
            "INFRAKIT_HOME": str(self.home),
        }
        self.background: list[subprocess.Popen[str]] = []

    def __call__(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            [*INFRAKIT, *args], env=self.env, capture_output=True, text=True, timeout=180
        )
        if check:
            assert result.returncode == 0, f"infrakit {' '.join(args)}: {result.stderr}"
        return result.stdout

    def start(self, *args: str, ready: str) -> subprocess.Popen[str]:
        """Start `infrakit ARGS` in the background; return once it prints `ready`."""
        process = subprocess.Popen(
            [*INFRAKIT, *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.background.append(process)
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line)
            if ready in line:
                break
        else:
            raise AssertionError(f"infrakit {' '.join(args)} ended: {''.join(seen)}")
        os.set_blocking(process.stdout.fileno(), False)
        return process

    def stop_all(self) -> None:
        for process in self.background:
            stop_session(process, grace=20)


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(tmp_path)
    yield runner
    runner.stop_all()
    kill_all(runner.home / "instances" / "process")


@pytest.fixture(autouse=True)
def private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """XDG_STATE_HOME in the test's own temp dir: under an etcd store the local plugins keep
    their state in a host-wide directory there by default, which no test may share or leave."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))


@pytest.fixture
def etcd() -> Iterator[IO[str]]:
    """The machine's etcd, held for this test (see `support.etcd_in_use`)."""
    with etcd_in_use() as lock:  # first: another suite may have it frozen for a while
        require("etcd", etcd_up(), f"nothing answers at {ETCD}")
        yield lock
