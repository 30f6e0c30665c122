"""Several `infrakit run` processes on the machine's etcd, each on its own home as on several
hosts, and what really runs under them, read from /proc: the harness of the chaos test and of
the sharding tests. A census names each live instance process by group and slot, and
`violations` says which of them are duplicates or orphans, whatever any manager says."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self

from support import (
    ETCD,
    INFRAKIT,
    cli_env,
    environments,
    etcd_cluster,
    etcd_forget,
    etcd_keys,
    free_port,
    start_runtime,
    stop_session,
)

from actors.remote import RemoteRef
from actors.rpc_errors import RemoteError, RpcTimeout
from infrakit.manager.localstate import shared_state_home
from infrakit.manager.store.etcd import EtcdStore

TTL = 2.0  # the leader key's TTL in `support.etcd_cluster`
CALL_TIMEOUT = 5.0
TOKEN = "TEST_TOKEN"  # in every instance's environment: how a test finds its processes
GROUP_ENV = "TEST_GROUP"  # ... and which group made it (the process plugin sets the slot)
LOGICAL_ID = "infrakit.logical_id"


class Runtimes:
    """`count` runtimes sharing etcd (a private key prefix) and the process plugin's state
    directory, as hosts share a cloud; each serves the Group API on its own TCP port and its
    home's socket. `shared` is the plugin's `Dir` (None: its host-wide default under
    XDG_STATE_HOME); `manager` adds keys to every cluster file's `Manager` (say, `Mode`), and
    `groups` are every cluster file's `Groups`."""

    def __init__(
        self,
        root: Path,
        count: int,
        *,
        shared: Path | None = None,
        manager: Mapping[str, Any] | None = None,
        groups: list[dict[str, Any]] | None = None,
    ) -> None:
        self.root = root
        self.count = count
        self.prefix = f"/infrakit-test-{uuid.uuid4().hex[:8]}"
        self.store_prefix = f"{self.prefix}/groups/"
        self.ports = [free_port() for _ in range(count)]
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * count
        self.frozen: set[int] = set()
        default = shared_state_home(self.store_prefix) / "instances" / "process"
        self.state = shared if shared is not None else default
        self.configs = []
        for index, port in enumerate(self.ports):
            config = etcd_cluster(shared, self.prefix, port)
            config["Manager"].update(manager or {})
            if groups is not None:
                config["Groups"] = groups
            path = root / f"cluster-{index}.json"
            path.write_text(json.dumps(config))
            self.configs.append(path)

    def home(self, index: int) -> Path:
        return self.root / f"home-{index}"

    def log(self, index: int) -> Path:
        return self.root / f"runtime-{index}.log"

    def endpoint(self, index: int) -> str:
        """Runtime `index`'s Group API on TCP: also where the others say it is (its location)."""
        return f"tcp://127.0.0.1:{self.ports[index]}"

    def index(self, location: str) -> int | None:
        """The runtime at `location`, if it is one of ours."""
        endpoints = [self.endpoint(i) for i in range(self.count)]
        return endpoints.index(location) if location in endpoints else None

    def start(self, index: int) -> None:
        self.processes[index] = start_runtime(
            self.configs[index], self.home(index), self.log(index)
        )

    def call(self, index: int, method: str, params: dict[str, Any] | None = None) -> Any:
        with RemoteRef(self.endpoint(index), timeout=CALL_TIMEOUT, retries=0) as ref:
            return ref.call(method, params or {})

    def ask(self, index: int, method: str, params: dict[str, Any] | None = None) -> Any:
        """`call`, or None if the runtime does not answer (yet) or answers with an error."""
        with contextlib.suppress(RpcTimeout, RemoteError):
            return self.call(index, method, params)
        return None

    def cli(self, index: int, *args: str) -> subprocess.CompletedProcess[str]:
        """`infrakit ARGS` as a user on runtime `index`'s host runs it: its home's socket."""
        return subprocess.run(
            [*INFRAKIT, *args],
            env=cli_env(self.home(index)),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def answering(self) -> list[int]:
        """The runtimes that run and are not frozen (a frozen one would only time out).
        Raises AssertionError, with its log, for one that exited of itself (the test only
        kills with SIGKILL): no wait for it to answer can end well."""
        found = []
        for index, process in enumerate(self.processes):
            code = process.poll() if process is not None else -signal.SIGKILL
            if code is None and index not in self.frozen:
                found.append(index)
            elif code is not None and code != -signal.SIGKILL:
                tail = self.log(index).read_text(errors="replace")[-2000:]
                raise AssertionError(f"runtime {index} exited with status {code}:\n{tail}")
        return found

    def kill(self, index: int) -> None:
        """kill -9 the runtime alone: its instances (sessions of their own) live on."""
        process = self.processes[index]
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)

    def signal(self, index: int, sig: int) -> None:
        """Send `sig` to the runtime alone; SIGSTOP counts it frozen until SIGCONT."""
        process = self.processes[index]
        assert process is not None
        os.kill(process.pid, sig)
        if sig == signal.SIGSTOP:
            self.frozen.add(index)
        elif sig == signal.SIGCONT:
            self.frozen.discard(index)

    def stored(self) -> dict[str, Any]:
        """Every group as the store holds it."""
        return EtcdStore(ETCD, prefix=self.store_prefix).load()

    def stop(self) -> None:
        """Stop every runtime (as Ctrl-C would), then kill every instance process left."""
        for process in self.processes:
            if process is not None:
                stop_session(process, grace=20)
        for pid, env in environments().items():
            if env.get("INFRAKIT_INSTANCE_DIR", "").startswith((str(self.state), str(self.root))):
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        """Leave nothing behind: runtimes stopped, instances killed, the etcd prefix gone."""
        self.stop()
        etcd_forget(self.prefix + "/")
        assert etcd_keys(self.prefix + "/") == []

    def tracebacks(self) -> list[str]:
        """Each runtime's log lines that open a traceback, with the error they end with: a
        routine fault (a manager killed or frozen) is recovery, said in a line, never a bug's
        traceback."""
        found = []
        for index in range(self.count):
            path = self.log(index)
            lines = path.read_text(errors="replace").splitlines() if path.exists() else []
            for at, line in enumerate(lines):
                if line.startswith("Traceback"):
                    end = next((x for x in lines[at + 1 :] if x and not x[0].isspace()), "")
                    found.append(f"runtime {index}: {lines[at - 1]} ... {end}")
        return found

    def logs(self, tail: int = 2000) -> str:
        """The tail of every runtime's log, for a failure's message."""
        tails = []
        for index in range(self.count):
            path = self.log(index)
            text = path.read_text(errors="replace") if path.exists() else ""
            tails.append(f"--- runtime {index} ---\n{text[-tail:]}")
        return "\n".join(tails)


def instance_env(token: str, group: str) -> dict[str, str]:
    """The environment a test gives a group's instances (`Instance.Properties.Env`), for
    `census` to find them."""
    return {TOKEN: token, GROUP_ENV: group}


Running = list[tuple[str, str, int]]
"""(group, slot, PID) of live instance processes."""


def census(token: str, state: Path) -> Running:
    """(group, slot, PID) of every live process carrying the test's token, whatever any
    manager says: what really runs. Its slot is the one its record in the process plugin's
    `state` carries (a scale-in moves an instance to another slot by relabelling it, and a
    process's environment cannot change), else, unrecorded, the one it was started in."""
    return [
        (env.get(GROUP_ENV, "?"), recorded_slot(state, env), pid)
        for pid, env in environments().items()
        if env.get(TOKEN) == token
    ]


def recorded_slot(state: Path, env: dict[str, str]) -> str:
    """The slot the record of the instance `env` belongs to says (written atomically)."""
    started_in = env.get("INFRAKIT_LOGICAL_ID", "?")
    instance = env.get("INFRAKIT_INSTANCE_ID", "")
    try:
        record = json.loads((state / instance / "instance.json").read_text())
    except (OSError, ValueError):
        return started_in
    slot = (record.get("Tags") or {}).get(LOGICAL_ID) if isinstance(record, dict) else None
    return slot if isinstance(slot, str) and slot else started_in


def slot_index(group: str, slot: str) -> int | None:
    prefix = f"{group}-"
    number = slot[len(prefix) :] if slot.startswith(prefix) else ""
    return int(number) if number.isdigit() else None


def violations(allowed: Mapping[str, int], running: Running) -> list[str]:
    """What is wrong with `running` at any moment: two live instances in one slot (a
    duplicate), or one outside the first `allowed[group]` slots of its group (an orphan)."""
    found = []
    for (group, slot), count in Counter((g, s) for g, s, _ in running).items():
        if count > 1:
            pids = [p for g, s, p in running if (g, s) == (group, slot)]
            found.append(f"duplicate: {count} live instances in slot {slot} (PIDs {pids})")
    for group, slot, pid in running:
        index = slot_index(group, slot)
        if group not in allowed or index is None or index >= allowed[group]:
            found.append(f"orphan: PID {pid} in {group}/{slot}, allowed slots {dict(allowed)}")
    return found


class Sampler(threading.Thread):
    """Looks for duplicates and orphans as often as cheap while a test hurts its runtimes, so
    that a duplicate that lives only for a moment is seen too. `allowed` gives each group's
    slots that may run at the moment, `where` says when, for the report."""

    def __init__(
        self,
        token: str,
        state: Path,
        allowed: Callable[[], Mapping[str, int]],
        where: Callable[[], str] = lambda: "",
    ) -> None:
        super().__init__(daemon=True)
        self.token, self.state = token, state
        self.allowed, self.where = allowed, where
        self.seen: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):  # the sampling period, not a synchronisation
            running = census(self.token, self.state)  # then what may run: it only grows first
            for problem in violations(self.allowed(), running):
                self.seen.append(f"{problem} [{self.where()}]")

    def stop(self) -> list[str]:
        """Stop sampling; what was seen."""
        self.done.set()
        self.join()
        return self.seen
