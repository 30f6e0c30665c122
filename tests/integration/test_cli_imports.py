"""The client commands stay light: run against a real runtime and a real plugin, none of them
loads the runtime's machinery (the actor library, asyncio, pydantic, an HTTP server), whose
imports cost several times a command's own work."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import cli_env, file_group, wait_for

from infrakit import Runtime

HEAVY = ["asyncio", "http.server", "infrakit.runtime", "pydantic", "pykka", "rich", "zmq.asyncio"]
"""Modules no client command needs: the runtime's, not a client's (`rich` draws `--wait`'s
progress on a terminal only; these probes write to a file)."""

# Runs `infrakit ARGS` in-process as the entry point does, then writes which of HEAVY it
# loaded to the file named by the first argument.
PROBE = f"""
import json, sys
from infrakit.cli.main import main
out, args = sys.argv[1], sys.argv[2:]
try:
    main.main(args, prog_name="infrakit")  # the entry point, but for its quick exit
except SystemExit as stop:
    code = stop.code
with open(out, "w") as file:
    json.dump(sorted(m for m in sys.modules if m in {HEAVY!r}), file)
sys.exit(code)
"""


def loaded(home: Path, out: Path, *args: str) -> list[str]:
    """Which HEAVY modules `infrakit ARGS` loaded; the command must succeed."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        env=cli_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    heavy: list[str] = json.loads(out.read_text())
    return heavy


@pytest.fixture
def plugin(home: Path) -> Iterator[None]:
    """`infrakit plugin start file --name files`, serving in `home`'s plugins directory (beside
    the runtime's own instance-file)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "infrakit.cli.main", "plugin", "start", "file", "--name", "files"],
        env=cli_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: lines.extend(stdout), daemon=True).start()
    try:
        wait_for(lambda: lines or process.poll() is not None, what="the plugin to listen")
        assert lines and lines[0].startswith("Listening at: "), process.poll()
        yield
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture
def runtime(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    monkeypatch.delenv("INFRAKIT_PLUGINS_DIR", raising=False)
    monkeypatch.delenv("INFRAKIT_ENDPOINT", raising=False)
    with Runtime(home=home) as running:
        wait_for(lambda: (home / "plugins" / "group").exists(), what="the Group API socket")
        running.commit(file_group(size=1))
        running.wait_converged("cattle")
        yield running


@pytest.mark.parametrize(
    "args",
    [
        ["group", "ls"],
        ["group", "describe", "cattle"],
        ["group", "inspect", "cattle"],
        ["group", "status", "cattle"],
        ["manager", "status"],
        ["plugin", "ls"],
        ["instance", "--name", "files", "describe"],
        ["instance", "--name", "instance-file", "describe"],
        ["home"],
    ],
    ids=" ".join,
)
def test_a_client_command_loads_none_of_the_runtime(
    args: list[str], runtime: Runtime, plugin: None, home: Path, tmp_path: Path
) -> None:
    assert loaded(home, tmp_path / "loaded.json", *args) == []


def test_a_commit_followed_with_wait_loads_none_of_the_runtime(
    runtime: Runtime, home: Path, tmp_path: Path
) -> None:
    """`group commit --wait` on a pipe: plain lines, no `rich`, nothing of the runtime."""
    spec = tmp_path / "cattle.json"
    spec.write_text(json.dumps(file_group(size=2)))
    assert loaded(home, tmp_path / "loaded.json", "group", "commit", str(spec), "--wait") == []


def test_a_refused_connection_loads_none_of_the_runtime_either(home: Path, tmp_path: Path) -> None:
    """The error path too: nothing answers, and the command says so without the runtime."""
    out = tmp_path / "loaded.json"
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), "group", "ls"],
        env={**cli_env(home), "INFRAKIT_ENDPOINT": f"ipc://{tmp_path / 'nothing'}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Error: no runtime answers at ")
    assert json.loads(out.read_text()) == []
