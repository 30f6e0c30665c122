"""What the CLI prints for people and for scripts: `--json` on every command that prints data (one
JSON document on stdout holding what the table shows, errors still on stderr), and colour only
on a terminal, never with NO_COLOR set. Against a real runtime in the test process and real
plugin processes; colour is read through a real pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import INFRAKIT, cli_env, file_group, wait_for

from infrakit import Runtime

ESC = "\x1b["


def run(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """`infrakit ARGS` with stdout and stderr piped, as a script runs it."""
    return subprocess.run(
        [*INFRAKIT, *args], env=cli_env(home, **extra), capture_output=True, text=True, timeout=120
    )


def as_json(home: Path, *args: str, **extra: str) -> Any:
    """The one JSON document `infrakit ARGS --json` prints on stdout (it must succeed)."""
    result = run(home, *args, "--json", **extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def in_terminal(home: Path, *args: str, **extra: str) -> str:
    """What `infrakit ARGS` shows on a terminal: stdout and stderr both on a pseudo-terminal."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [*INFRAKIT, *args],
        env=cli_env(home, **extra),
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
        process.wait(120)
    return b"".join(chunks).decode()


@pytest.fixture
def runtime(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    monkeypatch.delenv("INFRAKIT_PLUGINS_DIR", raising=False)
    with Runtime(home=home) as running:
        assert running.is_leader()
        wait_for(lambda: (home / "plugins" / "group").exists(), 10, "the Group API socket")
        yield running


def test_group_and_manager_commands_print_json(home: Path, runtime: Runtime) -> None:
    spec = home.parent / "group.json"
    spec.write_text(json.dumps(file_group()))
    pretend = as_json(home, "group", "commit", str(spec), "--pretend")
    message = "Managing 2 instances"
    plan = [
        {"LogicalID": f"cattle-{n}", "Action": "add", "Reason": "new group", "Instance": None}
        for n in range(2)
    ]
    said = {"Group": "cattle", "Message": message, "Sentence": message}
    assert pretend == {**said, "Pretend": True, "Revision": 0, "Plan": plan}
    committed = as_json(home, "group", "commit", str(spec))
    assert committed == {**said, "Pretend": False, "Revision": 1}
    instances = {d["ID"] for d in runtime.wait_converged("cattle")["Instances"]}

    groups = as_json(home, "group", "ls")
    assert groups == [{"ID": "cattle", "Size": 2, "State": "converged", "Conditions": []}]
    assert as_json(home, "group", "inspect", "cattle")["ID"] == "cattle"
    described = as_json(home, "group", "describe", "cattle")
    assert {d["ID"] for d in described["Instances"]} == instances

    status = as_json(home, "manager", "status")
    assert status["Leader"] is True and status["Location"] == runtime.location
    assert [group["ID"] for group in status["Groups"]] == ["cattle"]

    assert as_json(home, "group", "free", "cattle") == {"Group": "cattle", "Freed": True}
    runtime.commit(file_group())
    runtime.wait_converged("cattle")
    destroyed = as_json(home, "group", "destroy", "cattle", "--wait")
    assert destroyed == {"Group": "cattle", "Destroyed": True}
    assert as_json(home, "group", "ls") == []


def test_an_error_with_json_is_one_line_on_stderr_and_nothing_on_stdout(home: Path) -> None:
    result = run(home, "group", "ls", "--json")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: no runtime answers at ipc://")
    assert result.stderr.count("\n") == 1


class Plugins:
    """Real plugin processes in a plugins directory of this test's own; all killed after."""

    def __init__(self, home: Path, tmp_path: Path) -> None:
        self.home = home
        self.env = {"INFRAKIT_PLUGINS_DIR": str(tmp_path / "p")}
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, kind: str) -> None:
        process = subprocess.Popen(
            [*INFRAKIT, "plugin", "start", kind],
            env=cli_env(self.home, **self.env),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.processes.append(process)
        lines: list[str] = []
        stdout = process.stdout
        assert stdout is not None
        threading.Thread(target=lambda: lines.extend(stdout), daemon=True).start()
        wait_for(lambda: lines or process.poll() is not None, 15, f"plugin {kind} to listen")
        assert lines and lines[0].startswith("Listening at: "), (lines, process.poll())

    def json(self, *args: str) -> Any:
        return as_json(self.home, *args, **self.env)

    def close(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait(10)


@pytest.fixture
def plugins(home: Path, tmp_path: Path) -> Iterator[Plugins]:
    running = Plugins(home, tmp_path)
    yield running
    running.close()


def test_plugin_instance_and_flavor_commands_print_json(plugins: Plugins, tmp_path: Path) -> None:
    plugins.start("file")
    plugins.start("vanilla")
    listing = plugins.json("plugin", "ls")
    socket = tmp_path / "p" / "instance-file"
    assert {"Name": "instance-file", "Interfaces": ["Instance/0.1.0"], "Transport": "zmq",
            "Listen": f"ipc://{socket}"} in listing  # fmt: skip
    assert sorted(plugin["Name"] for plugin in listing) == ["flavor-vanilla", "instance-file"]

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"Tags": {"role": "web"}, "LogicalID": "web-1"}))
    file = ("instance", "--name", "instance-file")
    made = plugins.json(*file, "provision", str(spec))
    described = plugins.json(*file, "describe")
    assert [(d["ID"], d["LogicalID"], d["Tags"]) for d in described] == [
        (made["ID"], "web-1", {"role": "web"})
    ]
    assert plugins.json(*file, "validate", str(spec)) == {"Valid": True}
    assert plugins.json(*file, "destroy", made["ID"]) == {"ID": made["ID"], "Destroyed": True}
    assert plugins.json(*file, "describe") == []

    vanilla = ("flavor", "--name", "flavor-vanilla")
    properties = tmp_path / "properties.json"
    properties.write_text(json.dumps({"Init": ["echo two"], "Tags": {"role": "web"}}))
    assert plugins.json(*vanilla, "validate", str(properties)) == {"Valid": True}
    prepare = tmp_path / "prepare.json"
    prepare.write_text(json.dumps({"Properties": {"Init": ["echo two"]}, "Spec": {"Init": "one"}}))
    assert plugins.json(*vanilla, "prepare", str(prepare))["Init"] == "one\necho two"
    health = tmp_path / "health.json"
    health.write_text(json.dumps({"Properties": {}, "Instance": {"ID": "i-1", "Tags": {}}}))
    assert plugins.json(*vanilla, "healthy", str(health)) == {"Health": "healthy"}


def test_offline_commands_print_json(home: Path, tmp_path: Path) -> None:
    keys = as_json(home, "keys", "generate", str(tmp_path / "keys"), "--name", "me")
    assert keys == {
        "PublicKey": str(tmp_path / "keys" / "me.key"),
        "SecretKey": str(tmp_path / "keys" / "me.key_secret"),
    }
    spec = tmp_path / "group.json"
    spec.write_text(json.dumps(file_group()))
    checked = as_json(home, "validate", str(spec))
    assert checked == {"File": str(spec), "Valid": True, "Kind": "group", "Groups": ["cattle"]}
    assert as_json(home, "home") == {"Home": str(home)}


def test_colour_on_a_terminal_only_and_never_with_no_color(home: Path, tmp_path: Path) -> None:
    empty = {"INFRAKIT_PLUGINS_DIR": str(tmp_path / "none")}
    table = in_terminal(home, "plugin", "ls", **empty)
    assert "NAME" in table and ESC in table, repr(table)
    error = in_terminal(home, "group", "ls")
    assert "Error:" in error and ESC in error, repr(error)

    for args in (("plugin", "ls"), ("group", "ls")):
        plain = in_terminal(home, *args, NO_COLOR="1", **empty)
        assert plain.strip() and ESC not in plain, repr(plain)
        piped = run(home, *args, **empty)
        assert ESC not in piped.stdout + piped.stderr


def test_a_converged_group_is_green_on_a_terminal(home: Path, runtime: Runtime) -> None:
    runtime.commit(file_group(size=1))
    runtime.wait_converged("cattle")
    listing = in_terminal(home, "group", "ls")
    assert "\x1b[32mconverged" in listing, repr(listing)
    assert "converged" in run(home, "group", "ls").stdout
