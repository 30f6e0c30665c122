"""`infrakit group|manager|events|keys` as a user runs them, against a real runtime started in
the test process: it serves the Group API at ipc://<plugins dir>/group while it leads."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from support import file_group, wait_for

from actors.remote import CurveServerConfig, RpcServer, load_keypair
from infrakit import Runtime
from infrakit.wire.group import group_handlers

INFRAKIT = [sys.executable, "-m", "infrakit.cli.main"]


class Cli:
    """Runs the CLI in a child process with this test's home and no other INFRAKIT_ setting."""

    def __init__(self, home: Path, tmp_path: Path) -> None:
        self.home = home
        self.tmp_path = tmp_path
        self.vars = {k: v for k, v in os.environ.items() if not k.startswith("INFRAKIT_")}
        self.vars["INFRAKIT_HOME"] = str(home)

    def run(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*INFRAKIT, *args],
            env={**self.vars, **extra_env},
            capture_output=True,
            text=True,
            timeout=180,
        )

    def ok(self, *args: str, **extra_env: str) -> str:
        result = self.run(*args, **extra_env)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def file(self, name: str, data: object) -> str:
        path = self.tmp_path / name
        path.write_text(json.dumps(data))
        return str(path)


@pytest.fixture
def cli(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.delenv("INFRAKIT_PLUGINS_DIR", raising=False)
    monkeypatch.delenv("INFRAKIT_ENDPOINT", raising=False)
    return Cli(home, tmp_path)


@pytest.fixture
def runtime(home: Path, cli: Cli) -> Iterator[Runtime]:
    with Runtime(home=home) as running:
        assert running.is_leader()
        wait_for(lambda: (home / "plugins" / "group").exists(), 10, "the Group API socket")
        yield running


def test_commit_then_describe_list_and_inspect(cli: Cli, runtime: Runtime) -> None:
    spec = cli.file("group.json", file_group())
    pretend = cli.ok("group", "commit", spec, "--pretend")
    assert pretend == "Committing cattle would involve: Managing 2 instances\n"
    assert runtime.inspect() == []
    assert cli.ok("group", "commit", spec) == "Committed cattle: Managing 2 instances\n"
    instances = {d["ID"] for d in runtime.wait_converged("cattle")["Instances"]}

    assert set(cli.ok("group", "describe", "cattle", "-q").split()) == instances
    table = cli.ok("group", "describe", "cattle").splitlines()
    assert table[0].split() == ["ID", "LOGICAL", "TAGS"]
    assert {row.split()[0] for row in table[1:]} == instances
    assert all("infrakit.group=cattle" in row for row in table[1:])
    assert sorted(row.split()[1] for row in table[1:]) == ["cattle-0", "cattle-1"]  # slots
    description = json.loads(cli.ok("group", "describe", "cattle", "--json"))
    assert description["Converged"] is True and len(description["Instances"]) == 2
    assert sorted(i["LogicalID"] for i in description["Instances"]) == ["cattle-0", "cattle-1"]

    assert cli.ok("group", "ls").splitlines() == ["ID      SIZE  STATE", "cattle  2     converged"]
    assert cli.ok("group", "ls", "-q") == "cattle\n"
    assert json.loads(cli.ok("group", "inspect", "cattle"))["ID"] == "cattle"
    missing = cli.run("group", "inspect", "sheep")
    assert (missing.returncode, missing.stderr) == (
        1,
        "Error: Group 'sheep' is not being watched\n",
    )


def test_a_refused_spec_prints_every_fault_on_its_own_line(cli: Cli, runtime: Runtime) -> None:
    bad = file_group()
    bad["Properties"]["Allocation"]["Size"] = -1
    del bad["Properties"]["Flavor"]
    result = cli.run("group", "commit", cli.file("bad.json", bad))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("Properties.Allocation.Size: ")
    assert lines[1].startswith("Properties.Flavor: ")
    assert runtime.inspect() == []
    junk = cli.tmp_path / "junk.json"
    junk.write_text("{not json")
    not_json = cli.run("group", "commit", str(junk))
    assert not_json.returncode == 1
    assert not_json.stderr.startswith(f"{junk}: not valid JSON: ")


def test_free_and_destroy(cli: Cli, runtime: Runtime) -> None:
    spec = file_group(size=1)
    runtime.commit(spec)
    instance = runtime.wait_converged("cattle")["Instances"][0]["ID"]
    assert cli.ok("group", "free", "cattle") == "Freed cattle\n"
    assert runtime.inspect() == []
    unknown = cli.run("group", "free", "cattle")
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "Error: Group 'cattle' is not being watched\n",
    )

    runtime.commit(spec)  # adopts the freed instance
    assert [d["ID"] for d in runtime.wait_converged("cattle")["Instances"]] == [instance]
    out = cli.ok("group", "destroy", "cattle", "--wait", "--timeout", "20")
    assert out == "Destroying cattle\nDestroyed cattle\n"
    assert runtime.inspect() == []
    assert not (runtime.home / "instances" / "file" / instance).exists()


def test_no_runtime_is_one_clear_line_at_once(cli: Cli, tmp_path: Path) -> None:
    endpoint = f"ipc://{cli.home / 'plugins' / 'group'}"
    result = cli.run("group", "ls")
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: no runtime answers at {endpoint} (is `infrakit run` running?)\n"
    )
    stale = tmp_path / "stale"  # a socket file whose server died
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(stale))
    result = cli.run("manager", "status", "--endpoint", f"ipc://{stale}")
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: no runtime answers at ipc://{stale} ")


def test_manager_status(cli: Cli, runtime: Runtime) -> None:
    runtime.commit(file_group(size=1))
    runtime.wait_converged("cattle")
    lines = cli.ok("manager", "status").splitlines()
    fields = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in lines}
    assert fields["Leader"] == "yes"
    assert fields["Location"] == runtime.location
    assert "Groups" in fields
    assert ["-", "ID:", "cattle"] in [line.split() for line in lines]
    today = time.strftime("%Y-%m-%d")
    assert fields["LeaderSince"].startswith(today), "times of day, not raw clock readings"
    assert fields["LookedAt"].startswith(today)


def test_a_commit_sent_to_a_follower_reaches_the_leader(
    cli: Cli, runtime: Runtime, tmp_path: Path
) -> None:
    """The tiny server here is a follower's Group API, reached through INFRAKIT_ENDPOINT: it
    answers "not the leader" with the leader's location, and the CLI forwards the call there."""
    follower = Runtime(home=runtime.home, location="the-follower").start(wait_for_leadership=0)
    server = RpcServer(
        f"ipc://{tmp_path / 'follower'}", group_handlers(follower.group_plugin)
    ).start()
    try:
        endpoint = {"INFRAKIT_ENDPOINT": server.endpoint}
        result = cli.run("group", "commit", cli.file("group.json", file_group()), **endpoint)
        assert result.returncode == 0, result.stderr
        assert f"(forwarded to the leader at {runtime.location})" in result.stderr
        assert result.stdout.startswith("Committed cattle: ")
        assert [spec["ID"] for spec in runtime.inspect()] == ["cattle"]
        status = cli.ok("manager", "status", **endpoint)
        rows = [line.split() for line in status.splitlines()]
        assert ["Leader:", "no"] in rows
        assert ["LeaderLocation:", runtime.location] in rows
    finally:
        server.stop()
        follower.stop()


def test_events_prints_one_line_per_event_of_the_group(cli: Cli, tmp_path: Path) -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    publisher = context.socket(zmq.XPUB)
    publisher.setsockopt(zmq.LINGER, 0)
    endpoint = f"ipc://{tmp_path / 'events'}"
    publisher.bind(endpoint)
    follower = subprocess.Popen(
        [*INFRAKIT, "events", "cattle", "--endpoint", endpoint],
        env=cli.vars,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert publisher.poll(15_000), "the events command never subscribed"
        assert publisher.recv() == b"\x01cattle"
        lines: list[str] = []
        assert follower.stdout is not None
        stdout = follower.stdout
        threading.Thread(target=lambda: lines.extend(stdout), daemon=True).start()

        def send(group: str, message: str, logical_id: str | None) -> None:
            event = {"group": group, "kind": "x", "message": message, "logical_id": logical_id}
            event |= {"instance": None, "data": {}, "time": 0}
            publisher.send_multipart([group.encode(), json.dumps(event).encode()])

        send("cattle-2", "not mine", None)  # the topic is a prefix: the client filters
        send("cattle", "converged: 2 instances", None)
        send("cattle", "provisioned i-1", "cattle-0")
        wait_for(lambda: len(lines) >= 2, 10, "two event lines")
        assert [line.split(" ", 1)[1] for line in lines] == [
            "cattle: converged: 2 instances\n",
            "cattle: cattle-0 provisioned i-1\n",
        ]
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 0
    finally:
        if follower.poll() is None:
            follower.kill()
        follower.wait(10)
        publisher.close(linger=0)


def test_keys_and_curve_keep_strangers_out(cli: Cli, runtime: Runtime, tmp_path: Path) -> None:
    keys, clients = tmp_path / "keys", tmp_path / "clients"
    out = cli.ok("keys", "generate", str(keys), "--name", "server")
    assert out == f"public key: {keys / 'server.key'}\nsecret key: {keys / 'server.key_secret'}\n"
    assert stat.S_IMODE((keys / "server.key_secret").stat().st_mode) == 0o600
    cli.ok("keys", "generate", str(clients), "--name", "alice")
    cli.ok("keys", "generate", str(keys), "--name", "mallory")
    (keys / "alice.key_secret").write_bytes((clients / "alice.key_secret").read_bytes())
    (clients / "alice.key_secret").unlink()

    public, secret = load_keypair(keys / "server.key_secret")
    assert secret is not None
    curve = CurveServerConfig(public, secret, str(clients))
    server = RpcServer(
        "tcp://127.0.0.1:0", group_handlers(runtime.group_plugin), curve=curve
    ).start()
    try:
        runtime.commit(file_group(size=0))
        as_alice = ["--curve-key", str(keys / "alice.key_secret")]
        server_key = ["--server-key", str(keys / "server.key")]
        endpoint = ["--endpoint", server.endpoint]
        assert cli.ok("group", "ls", "-q", *endpoint, *as_alice, *server_key) == "cattle\n"
        as_mallory = ["--curve-key", str(keys / "mallory.key_secret")]
        refused = cli.run("group", "ls", *endpoint, *as_mallory, *server_key)
        assert refused.returncode == 1
        assert refused.stderr.count("\n") == 1
        assert "authentication refused" in refused.stderr
        half = cli.run("group", "ls", *endpoint, *as_alice)
        assert half.returncode == 1
        assert half.stderr == "Error: --curve-key and --server-key go together\n"
    finally:
        server.stop()


def test_keys_generate_imports_neither_the_runtime_nor_pydantic(tmp_path: Path) -> None:
    """`keys generate` took over 30 s under load: nearly all of its time was importing the
    actor tree and pydantic, which it does not use. Measured as what it imports, not as a
    time, which load would make meaningless."""
    script = (
        "import sys; from infrakit.cli.main import main\n"
        "try: main.main(['keys', 'generate', sys.argv[1]])\n"
        "except SystemExit: pass\n"
        "heavy = {'pydantic', 'infrakit.runtime', 'infrakit.spec', 'actors', 'zmq.asyncio'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "keys")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
    assert (tmp_path / "keys" / "client.key_secret").exists()


def test_a_cluster_file_committed_by_mistake_is_recognised(cli: Cli, runtime: Runtime) -> None:
    """Seen: `ID: is required / Properties: is required / Groups: unknown key`."""
    cluster = cli.file("cluster.json", {"groups": [file_group()]})
    result = cli.run("group", "commit", cluster)
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: {cluster} is a cluster file (it has Groups), and `group commit` takes one"
        ' group spec, {"ID": ..., "Properties": ...}: run the cluster with'
        f" `infrakit run {cluster}`, or commit one of its Groups from a file of its own\n"
    )
    assert runtime.inspect() == []
