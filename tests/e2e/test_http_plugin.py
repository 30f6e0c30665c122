"""A plugin speaking Go InfraKit's wire (JSON-RPC over HTTP on a unix socket), named in a
cluster file by its `unix://` endpoint: a group on it converges, an instance removed out of
band is healed, and the plugin process killed (SIGKILL) mid-convergence and started again
leaves exactly Size instances, none duplicated or orphaned. `plugin ls` tells it from the
runtime's own ZeroMQ socket."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli
from support import wait_for

SIZE = 20
SERVER = Path(__file__).with_name("http_plugin_server.py")
ROOT = Path(__file__).resolve().parents[2]


def group(size: int) -> dict[str, Any]:
    return {
        "ID": "herd",
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": "instance-http", "Properties": {"Note": "v1"}},
            "Flavor": {"Plugin": "flavor-vanilla"},
            "Health": {"Interval": "200ms"},
        },
    }


def tags_on_disk(files: Path) -> list[dict[str, str]]:
    found = []
    for path in files.iterdir() if files.exists() else ():
        if path.name.startswith("."):
            continue
        try:
            found.append(json.loads(path.read_text())["Tags"])
        except (OSError, ValueError, KeyError):
            continue
    return found


class PluginProcess:
    """The test's HTTP plugin server as a real process, started (again) on demand."""

    def __init__(self, socket: Path, files: Path, delay: float) -> None:
        self.socket, self.files, self.delay = socket, files, delay
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        args = [sys.executable, str(SERVER), str(self.socket), str(self.files), str(self.delay)]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def plugin(cli: Cli, tmp_path: Path) -> Iterator[PluginProcess]:
    cli.plugins.mkdir(parents=True, exist_ok=True)
    served = PluginProcess(cli.plugins / "instance-http", tmp_path / "files", 1.0)
    yield served
    served.kill()


def start_runtime(cli: Cli, tmp_path: Path, socket: Path) -> subprocess.Popen[str]:
    cluster = tmp_path / "cluster.json"
    plugins = [{"Name": "instance-http", "Endpoint": f"unix://{socket}"}]
    cluster.write_text(json.dumps({"Plugins": plugins}))
    return cli.start("run", str(cluster), "--log-level", "info", ready="gained leadership")


def describe(cli: Cli) -> dict[str, Any] | None:
    out = cli("group", "describe", "herd", "--json", check=False)
    return json.loads(out) if out.strip() else None


def converged(cli: Cli, size: int) -> bool:
    description = describe(cli)
    return bool(description and description["Converged"] and len(description["Instances"]) == size)


def exactly_once(files: Path, size: int) -> bool:
    slots = Counter(t.get("infrakit.logical_id") for t in tags_on_disk(files))
    return sorted(slots) == sorted(f"herd-{n}" for n in range(size)) and set(slots.values()) == {1}


def test_converges_heals_and_is_listed_as_http(
    cli: Cli, plugin: PluginProcess, tmp_path: Path
) -> None:
    plugin.delay = 0.0
    plugin.start()
    runtime = start_runtime(cli, tmp_path, plugin.socket)
    spec = tmp_path / "herd.json"
    spec.write_text(json.dumps(group(3)))
    cli("group", "commit", str(spec))
    wait_for(lambda: converged(cli, 3), what="convergence")
    assert exactly_once(plugin.files, 3)

    # Out of band, one instance goes: the group makes a new one.
    victim = next(p for p in plugin.files.iterdir() if not p.name.startswith("."))
    victim.unlink()
    wait_for(lambda: converged(cli, 3) and exactly_once(plugin.files, 3), what="healing")

    listing = cli("plugin", "ls").splitlines()
    assert listing[0].split() == ["NAME", "INTERFACES", "TRANSPORT", "LISTEN"]
    rows = {line.split()[0]: line.split() for line in listing[1:]}
    assert rows["instance-http"][1:] == ["Instance/0.1.0", "http", f"unix://{plugin.socket}"]
    assert rows["group"][-2:] == ["zmq", f"ipc://{cli.plugins / 'group'}"]

    # The CLI reaches it by name too, as it reaches a ZeroMQ plugin.
    listed = cli("instance", "--name", "instance-http", "describe", "-q").split()
    assert sorted(listed) == sorted(p.name for p in plugin.files.iterdir() if p.name[0] != ".")
    assert runtime.poll() is None


def test_killed_mid_convergence_then_back_nothing_duplicated(
    cli: Cli, plugin: PluginProcess, tmp_path: Path
) -> None:
    plugin.start()
    runtime = start_runtime(cli, tmp_path, plugin.socket)
    spec = tmp_path / "herd.json"
    spec.write_text(json.dumps(group(SIZE)))
    cli("group", "commit", str(spec))
    wait_for(lambda: len(tags_on_disk(plugin.files)) >= 1, what="the first instances")
    plugin.kill()
    assert len(tags_on_disk(plugin.files)) < SIZE  # killed mid-convergence
    plugin.delay = 0.0
    plugin.start()  # takes over the stale socket file
    wait_for(lambda: converged(cli, SIZE), what="convergence after the crash")
    assert exactly_once(plugin.files, SIZE)
    assert runtime.poll() is None

    assert runtime.stdout is not None
    logged = runtime.stdout.read() or ""
    endpoint = f"unix://{plugin.socket}"
    assert f"plugin instance-http at {endpoint} is down" in logged
    assert f"plugin instance-http at {endpoint} is back" in logged


def test_a_plugin_may_start_after_the_runtime(
    cli: Cli, plugin: PluginProcess, tmp_path: Path
) -> None:
    """Its socket appears after the runtime started: the runtime says it is up (its first
    connection: nothing came back), and a group on it converges."""
    plugin.delay = 0.0
    runtime = start_runtime(cli, tmp_path, plugin.socket)
    plugin.start()
    spec = tmp_path / "herd.json"
    spec.write_text(json.dumps(group(3)))
    cli("group", "commit", str(spec))
    wait_for(lambda: converged(cli, 3) and exactly_once(plugin.files, 3), what="convergence")
    assert runtime.poll() is None

    assert runtime.stdout is not None
    logged = runtime.stdout.read() or ""
    assert f"plugin instance-http at unix://{plugin.socket} is up" in logged  # not "back"
    assert "is back" not in logged
