"""Helpers shared by the tests: waiting on a condition with a deadline, and cleaning up the
real processes that process-instance groups leave running (by design) after a test."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import zmq

T = TypeVar("T")


# No test waits less than this for its condition: a deadline only stops a broken test from
# hanging, and a machine running two suites at once is slow (seen: 20 s was not enough).
MIN_DEADLINE = 120.0


def wait_for(predicate: Callable[[], T], timeout: float = MIN_DEADLINE, what: str = "") -> T:
    """Poll `predicate` until it returns something truthy, and return that; fail once the
    deadline (`timeout`, but at least MIN_DEADLINE seconds) has passed."""
    timeout = max(timeout, MIN_DEADLINE)
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.02)


def file_group(group_id: str = "cattle", size: int = 2) -> dict[str, Any]:
    """A group spec on the file instance plugin and the vanilla flavor, quick to converge."""
    return {
        "ID": group_id,
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": "instance-file", "Properties": {"Note": "v1"}},
            "Flavor": {"Plugin": "flavor-vanilla"},
            "Health": {"Interval": "100ms"},
        },
    }


def process_group(group_id: str, size: int) -> dict[str, Any]:
    """A group spec of `size` real processes that sleep (the process plugin's defaults)."""
    return {
        "ID": group_id,
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": "instance-process"},
            "Flavor": {"Plugin": "flavor-vanilla", "Properties": {"Init": ["exec sleep 600"]}},
        },
    }


INFRAKIT = [sys.executable, "-m", "infrakit.cli.main"]


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment with `home` as INFRAKIT_HOME, no other INFRAKIT_ setting,
    and `extra` on top: what a user's shell gives `infrakit`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAKIT_")}
    return {**env, "INFRAKIT_HOME": str(home), **extra}


def run_cli(
    home: Path, *args: str, timeout: float = 120.0, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    """`infrakit ARGS` as a user runs it (see `cli_env`); `timeout` only keeps a broken test
    from hanging for ever."""
    return subprocess.run(
        [*INFRAKIT, *args],
        env=cli_env(home, **extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on just now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


ETCD = "http://127.0.0.1:2379"
"""The machine's etcd, started by scripts/services.sh."""


def etcd_up() -> bool:
    """Whether the machine's etcd answers its health check."""
    try:
        with urllib.request.urlopen(f"{ETCD}/health", timeout=1) as answer:
            return b"true" in answer.read()
    except OSError:
        return False


# The machine's etcd is shared by every suite that runs on it. A test that freezes it
# (SIGSTOP) holds this file's lock exclusively; every other test that needs etcd answering
# holds it shared, so that two suites at once never freeze etcd under each other's feet.
# flock favours no one: with suites taking turns at the shared lock, a freezer could wait for
# ever. So a freezer first takes the turnstile, which each test passes through on its way in:
# once a freezer waits, no test starts using etcd until it has thawed it.
ETCD_LOCK = Path(tempfile.gettempdir()) / "infrakit-test-etcd.lock"
ETCD_TURNSTILE = ETCD_LOCK.with_suffix(".turnstile")


@contextlib.contextmanager
def etcd_in_use() -> Iterator[IO[str]]:
    """Hold the machine's etcd for a test (shared with other suites' tests that only use it);
    `etcd_frozen` on the same lock makes it exclusive."""
    with open(ETCD_LOCK, "a") as lock:
        with open(ETCD_TURNSTILE, "a") as turnstile:
            fcntl.flock(turnstile, fcntl.LOCK_EX)  # waits while a freezer waits or freezes
            fcntl.flock(lock, fcntl.LOCK_SH)
        yield lock


@contextlib.contextmanager
def etcd_frozen(lock: IO[str], pid: int) -> Iterator[None]:
    """Freeze etcd (process `pid`) once no other suite's test uses it; thaw it after. `lock` is
    this test's shared hold (from `etcd_in_use`): let go first, so that two freezers never wait
    for each other."""
    fcntl.flock(lock, fcntl.LOCK_UN)
    with open(ETCD_TURNSTILE, "a") as turnstile:
        fcntl.flock(turnstile, fcntl.LOCK_EX)  # no test starts using etcd from here
        fcntl.flock(lock, fcntl.LOCK_EX)  # and those using it have finished
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)
            fcntl.flock(lock, fcntl.LOCK_SH)


def etcd_cluster(shared: Path | None, prefix: str, port: int) -> dict[str, Any]:
    """A cluster file for one of several runtimes on the machine's etcd: leader key and store
    under `prefix`, the process plugin's state in `shared` (as hosts share a cloud; None: its
    host-wide default), the Group API on 127.0.0.1:`port`."""
    plugins = [{"Name": "instance-process", "Kind": "process", "Options": {"Dir": str(shared)}}]
    return {
        **({"Plugins": plugins} if shared is not None else {}),
        "Manager": {
            "Leader": {"Kind": "etcd", "Endpoints": [ETCD], "TTL": "2s", "Key": f"{prefix}/leader"},
            "Store": {"Kind": "etcd", "Endpoints": [ETCD], "Prefix": f"{prefix}/groups/"},
            "LeaderPoll": "500ms",
            "Listen": [f"tcp://127.0.0.1:{port}"],
        },
    }


def recorded_pids(state_dir: Path) -> dict[str, int]:
    """Instance ID -> PID of every process instance recorded under `state_dir`."""
    pids = {}
    for record in state_dir.glob("*/instance.json"):
        try:
            pids[record.parent.name] = int(json.loads(record.read_text())["PID"])
        except (OSError, ValueError, KeyError):
            continue
    return pids


def alive(pid: int) -> bool:
    """True if `pid` runs and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def environments() -> dict[int, dict[str, str]]:
    """PID -> environment (as it was started with) of every live process one may read: how a
    test finds the processes an instance left, whatever any record says."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "environ").read_bytes()
        except OSError:
            continue
        if alive(int(entry.name)):
            items = raw.decode(errors="replace").split("\0")
            found[int(entry.name)] = dict(item.split("=", 1) for item in items if "=" in item)
    return found


def stop_session(process: subprocess.Popen[Any], grace: float = 60.0) -> None:
    """Stop a process started in a session of its own (`start_new_session=True`) as Ctrl-C
    would, with what it started: SIGTERM to the session (SIGCONT first, in case a test froze
    it), then SIGKILL if it has not exited within `grace` seconds."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGCONT)
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


def kill_all(state_dir: Path) -> None:
    """SIGKILL the process group of every recorded instance (test teardown)."""
    for pid in recorded_pids(state_dir).values():
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)


def require(component: str, available: bool, why: str = "") -> None:
    """Skip (loudly) a test whose real component is missing; in CI (CI=true), fail instead."""
    import pytest

    if available:
        return
    reason = f"{component} is not available here{': ' + why if why else ''}"
    reason += " (run scripts/services.sh as root to install and start it)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs {reason}")
    pytest.skip(reason)


def docker_available() -> bool:
    """True when a Docker engine answers on this machine."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        client.close()
    except Exception:
        return False
    return True


TEST_IMAGE = os.environ.get("INFRAKIT_TEST_IMAGE", "infrakit-test/busybox:latest")

# The label a test puts on the containers it makes, so that teardown finds them all.
TEST_LABEL = "infrakit.test"


_HANGING_SERVER = (
    "import sys, threading\n"
    "from actors.rpc_server import RpcServer\n"
    "hang = threading.Event()\n"
    "def slow(p):\n"
    "    print('called', flush=True)\n"
    "    hang.wait()\n"
    "server = RpcServer(sys.argv[1], {'Slow.Provision': slow, 'Slow.Describe': slow})\n"
    "server.start()\n"
    "print('ready', flush=True)\n"
    "hang.wait()\n"
)


def start_hanging_server(endpoint: str) -> subprocess.Popen[str]:
    """An `RpcServer` in a process of its own at `endpoint`, returned once it serves: its
    `Slow.Provision` and `Slow.Describe` print `called` on its stdout and never answer (a
    server to kill with a call in flight)."""
    process = subprocess.Popen(
        [sys.executable, "-c", _HANGING_SERVER, endpoint], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


class Router:
    """A bare ROUTER on 127.0.0.1 standing in for a server, to see exactly what arrives on the
    wire, and to answer (or not) as a test needs."""

    def __init__(self) -> None:
        self.sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.ROUTER)
        self.sock.linger = 0
        self.sock.bind("tcp://127.0.0.1:0")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def receive(self) -> tuple[bytes, dict[str, Any]]:
        """The next request: the sender's identity and the JSON-RPC message."""
        assert self.sock.poll(MIN_DEADLINE * 1000), f"nothing arrived in {MIN_DEADLINE:g}s"
        identity, body = self.sock.recv_multipart()
        message: dict[str, Any] = json.loads(body)
        return identity, message

    def answer(self, identity: bytes, id: Any, result: Any) -> None:
        """Send the reply `result` to request `id` of the sender `identity`."""
        reply = {"jsonrpc": "2.0", "id": id, "result": result}
        self.sock.send_multipart([identity, json.dumps(reply).encode()])

    def close(self) -> None:
        self.sock.close(linger=0)


def etcd_keys(prefix: str) -> list[str]:
    """Every key under `prefix` in the machine's etcd."""
    from actors.election.etcd import EtcdConnection, decode, prefix_end

    found = EtcdConnection(ETCD).get(prefix, range_end=prefix_end(prefix), keys_only=True)
    return [decode(kv["key"]) for kv in found]


def etcd_forget(prefix: str) -> None:
    """Delete every key under `prefix` in the machine's etcd (a test's teardown)."""
    from actors.election.etcd import EtcdConnection, encode, prefix_end

    EtcdConnection(ETCD).post(
        "kv/deleterange", {"key": encode(prefix), "range_end": prefix_end(prefix)}
    )


def start_runtime(cluster: Path, home: Path, log: Path) -> subprocess.Popen[bytes]:
    """`infrakit run CLUSTER` on `home` as a user starts it (see `cli_env`), in a session of
    its own (`stop_session` stops it), its output appended to `log` (a pipe could fill)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [*INFRAKIT, "run", str(cluster)],
            env=cli_env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
