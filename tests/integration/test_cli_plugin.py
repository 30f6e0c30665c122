"""`infrakit plugin start|ls`, `infrakit instance ...` and `infrakit flavor ...` as a user runs
them: real plugin processes on real sockets in a fresh plugins directory per test."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import wait_for

from infrakit.cli.main import main
from infrakit.pidfile import Launcher, read_pid_file
from infrakit.plugins import builtin_kinds

INFRAKIT = [sys.executable, "-m", "infrakit.cli.main"]


class Env:
    """A fresh INFRAKIT_HOME and plugins directory; every process started here dies after."""

    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "home"
        self.plugins = tmp_path / "p"
        self.vars = {
            **{k: v for k, v in os.environ.items() if not k.startswith("INFRAKIT_")},
            "INFRAKIT_HOME": str(self.home),
            "INFRAKIT_PLUGINS_DIR": str(self.plugins),
        }
        self.processes: list[subprocess.Popen[str]] = []

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run one CLI command to its end."""
        return subprocess.run(
            [*INFRAKIT, *args], env=self.vars, capture_output=True, text=True, timeout=30
        )

    def ok(self, *args: str) -> str:
        """Run one CLI command that must succeed; its standard output."""
        result = self.run(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def start(self, *args: str, **extra_env: str) -> subprocess.Popen[str]:
        """`infrakit plugin start ARGS`, returned once it says it listens."""
        process = subprocess.Popen(
            [*INFRAKIT, "plugin", "start", *args],
            env={**self.vars, **extra_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.processes.append(process)
        lines: list[str] = []
        assert process.stdout is not None
        stdout = process.stdout
        threading.Thread(target=lambda: lines.extend(stdout), daemon=True).start()
        wait_for(lambda: lines or process.poll() is not None, 15, "the plugin to listen")
        assert lines and lines[0].startswith("Listening at: ipc://"), (lines, process.poll())
        return process

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(10)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    environment = Env(tmp_path)
    yield environment
    environment.close()


def served_by(env: Env) -> int:
    """The pid on the first line of the plugin's pid file (the lines after it say more)."""
    return int((env.plugins / "instance-file.pid").read_text().splitlines()[0])


def test_the_pid_file_names_the_process_and_its_start_and_no_launcher_when_by_hand(
    env: Env,
) -> None:
    plugin = env.start("file")
    written = read_pid_file(env.plugins / "instance-file.pid")
    assert written is not None and written.pid == plugin.pid and written.running()
    assert written.launcher is None


def test_a_launched_plugin_names_its_launcher_in_the_pid_file(env: Env) -> None:
    launcher = Launcher.of_this_process("tok3n")
    plugin = env.start("file", INFRAKIT_LAUNCHER=str(launcher))
    written = read_pid_file(env.plugins / "instance-file.pid")
    assert written is not None and written.pid == plugin.pid
    assert written.launcher == launcher and written.launcher.alive()


def write(path: Path, data: object) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def test_a_started_plugin_is_listed_and_serves_instances(env: Env, tmp_path: Path) -> None:
    plugin = env.start("file")
    socket_path = env.plugins / "instance-file"
    assert stat.S_ISSOCK(socket_path.stat().st_mode)
    assert served_by(env) == plugin.pid
    assert stat.S_IMODE(env.plugins.stat().st_mode) == 0o700

    listing = env.ok("plugin", "ls").splitlines()
    assert listing[0].split() == ["NAME", "INTERFACES", "TRANSPORT", "LISTEN"]
    assert listing[1].split() == ["instance-file", "Instance/0.1.0", "zmq", f"ipc://{socket_path}"]
    assert env.ok("plugin", "ls", "-q") == "instance-file\n"

    spec = write(tmp_path / "spec.json", {"Tags": {"role": "web"}, "LogicalID": "web-1"})
    instance_id = env.ok("instance", "--name", "instance-file", "provision", spec).strip()
    assert instance_id.startswith("instance-")
    table = env.ok("instance", "--name", "instance-file", "describe").splitlines()
    assert table[1].split() == [instance_id, "web-1", "role=web"]
    assert env.ok("instance", "--name", "instance-file", "describe", "-q") == f"{instance_id}\n"
    assert (
        env.ok("instance", "--name", "instance-file", "describe", "-q", "--tags", "role=db") == ""
    )

    assert env.ok("instance", "--name", "instance-file", "destroy", instance_id)
    assert env.ok("instance", "--name", "instance-file", "describe", "-q") == ""

    # A Size group's instance has no LogicalID, only its slot tag: the table shows the slot.
    sized = write(tmp_path / "sized.json", {"Tags": {"infrakit.logical_id": "web-0"}})
    instance_id = env.ok("instance", "--name", "instance-file", "provision", sized).strip()
    table = env.ok("instance", "--name", "instance-file", "describe").splitlines()
    assert table[1].split() == [instance_id, "web-0", "infrakit.logical_id=web-0"]


def test_a_second_plugin_of_the_same_name_is_refused_in_one_line(env: Env) -> None:
    first = env.start("file")
    second = env.run("plugin", "start", "file")
    endpoint = f"ipc://{env.plugins / 'instance-file'}"
    assert second.returncode == 1
    assert second.stderr.startswith(f"Error: plugin instance-file is already running at {endpoint}")
    assert "under another name with --name" in second.stderr
    assert len(second.stderr.splitlines()) == 1
    assert first.poll() is None
    assert served_by(env) == first.pid
    assert env.ok("plugin", "ls", "-q") == "instance-file\n"


def test_sigterm_stops_the_plugin_and_removes_socket_and_pid_file(env: Env) -> None:
    plugin = env.start("file")
    plugin.send_signal(signal.SIGTERM)
    assert plugin.wait(10) == 0
    assert sorted(os.listdir(env.plugins)) == []


def test_a_killed_plugin_is_stale_and_a_new_one_takes_its_place(env: Env, tmp_path: Path) -> None:
    plugin = env.start("file")
    spec = write(tmp_path / "spec.json", {"LogicalID": "keep"})
    instance_id = env.ok("instance", "--name", "instance-file", "provision", spec).strip()
    plugin.kill()
    plugin.wait(10)

    listing = env.ok("plugin", "ls").splitlines()
    assert listing[1].split()[:2] == ["instance-file", "(stale)"]
    assert env.ok("plugin", "ls", "-q") == ""
    gone = env.run("instance", "--name", "instance-file", "describe")
    assert gone.returncode == 1
    assert gone.stderr.count("\n") == 1 and "no plugin answers at ipc://" in gone.stderr

    again = env.start("file")
    assert served_by(env) == again.pid
    assert env.ok("instance", "--name", "instance-file", "describe", "-q") == f"{instance_id}\n"


def test_a_named_plugin_with_options_is_reached_by_socket_name(env: Env, tmp_path: Path) -> None:
    store = tmp_path / "store"
    env.start("file", "--name", "disk", "--option", f"Dir={store}")
    spec = write(tmp_path / "spec.json", {})
    instance_id = env.ok("instance", "--name", "disk/instance", "provision", spec).strip()
    assert (store / instance_id).exists()
    assert env.ok("instance", "--name", "disk", "validate", spec) == "valid\n"
    bad = env.run("plugin", "start", "file", "--name", "x", "--option", "Colour=red")
    assert bad.returncode == 1 and bad.stderr == (
        "Error: options of plugin kind 'file': Colour: unknown key 'Colour'"
        " (expected one of: Dir)\n"
    )


def test_the_vanilla_flavor_prepares_validates_and_judges_health(env: Env, tmp_path: Path) -> None:
    env.start("vanilla")
    assert env.ok("plugin", "ls", "-q") == "flavor-vanilla\n"
    params = {
        "Properties": {"Init": ["echo two", "echo three"], "Tags": {"role": "web"}},
        "Spec": {"Init": "echo one", "Tags": {"a": "b"}},
        "Allocation": {"Size": 1},
    }
    prepared = json.loads(
        env.ok("flavor", "--name", "flavor-vanilla", "prepare", write(tmp_path / "p.json", params))
    )
    assert prepared["Init"] == "echo one\necho two\necho three"
    assert prepared["Tags"] == {"a": "b", "role": "web"}

    healthy = {"Properties": {}, "Instance": {"ID": "i-1", "Tags": {}}}
    health_file = write(tmp_path / "h.json", healthy)
    assert env.ok("flavor", "--name", "flavor-vanilla", "healthy", health_file) == "healthy\n"

    valid = write(tmp_path / "v.json", {"Init": ["ok"]})
    assert env.ok("flavor", "--name", "flavor-vanilla", "validate", valid) == "valid\n"
    invalid = env.run(
        "flavor", "--name", "flavor-vanilla", "validate", write(tmp_path / "x.json", {"Init": 5})
    )
    assert invalid.returncode == 1
    assert invalid.stderr.startswith("Init: "), invalid.stderr
    assert invalid.stderr.count("\n") == 1


@pytest.mark.parametrize("width", [60, 80, 100])
def test_plugin_start_help_names_every_kind_whole(width: int) -> None:
    """Seen: the usage line wrapped the list of kinds mid-word (`vanil la`, `a ws`)."""
    result = CliRunner().invoke(main, ["plugin", "start", "--help"], terminal_width=width)
    assert result.exit_code == 0
    words = set(result.output.replace(",", " ").replace(".", " ").split())
    assert set(builtin_kinds()) <= words, sorted(set(builtin_kinds()) - words)
    assert "docs/plugins/KIND.md" in result.output  # where each kind's options are documented
