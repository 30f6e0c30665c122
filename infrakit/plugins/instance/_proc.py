"""Reading Linux's /proc for the instance plugins: whether a recorded process group still runs,
and an instance's processes found by what they carry in their environment."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from infrakit.proc import ProcStat, is_running, proc_stat, self_token, token_alive

__all__ = [
    "CHILDREN",
    "ENV_INSTANCE_DIR",
    "ENV_INSTANCE_ID",
    "Carrier",
    "ProcStat",
    "carriers",
    "group_running",
    "is_running",
    "kill_group",
    "proc_stat",
    "self_token",
    "signal_group",
    "stop_carriers",
    "token_alive",
]

# Set in the environment of every process an instance plugin starts for an instance (and so
# inherited by its children): which instance, and where its directory is.
ENV_INSTANCE_ID = "INFRAKIT_INSTANCE_ID"
ENV_INSTANCE_DIR = "INFRAKIT_INSTANCE_DIR"


def group_running(pgid: int) -> bool:
    """True while any non-zombie process is in process group `pgid`."""
    st = proc_stat(pgid)
    if st is not None and st.running and st.pgrp == pgid:
        return True
    for pid in _pids():
        member = proc_stat(pid)
        if member is not None and member.pgrp == pgid and member.running:
            return True
    return False


def _pids() -> list[int]:
    """Every PID in /proc just now."""
    try:
        with os.scandir("/proc") as it:
            return [int(entry.name) for entry in it if entry.name.isdigit()]
    except OSError:
        return []


def signal_group(pid: int, start_time: int, sig: int) -> bool:
    """Send `sig` to the process group led by `pid` unless that PID now names another process.

    The group may outlive its leader; while any member lives the kernel does not hand the PID
    out again, so signalling the group is safe when the leader is gone or is still ours.
    Returns whether a signal was sent.
    """
    st = proc_stat(pid)
    if st is not None and st.start_time != start_time:
        return False  # the PID was reused: not ours
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def kill_group(pid: int, start_time: int) -> None:
    """SIGKILL the group led by `pid` (PID-reuse guarded); for clean-ups."""
    signal_group(pid, start_time, signal.SIGKILL)


@dataclass(frozen=True)
class Carrier:
    """A live process whose environment names an instance (its own, or one it inherited)."""

    pid: int
    start_time: int
    pgrp: int
    instance_id: str
    instance_dir: str | None  # None: started by an older version, which did not set it


def carriers(state_dir: Path) -> list[Carrier]:
    """Every live process that carries an instance of `state_dir`: its `INFRAKIT_INSTANCE_DIR`
    is a directory of `state_dir`, or it has an `INFRAKIT_INSTANCE_ID` and no directory (an
    older version's; the caller matches its ID). One pass over /proc.

    The environment is the one a process was started with, inherited by its children unless
    they clear it, so this finds an instance's processes even if no record names them.
    """
    prefix = f"{state_dir}/"
    found: list[Carrier] = []
    mark = f"{ENV_INSTANCE_ID}=".encode()
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        if mark not in raw:
            continue
        env = dict(
            item.split("=", 1) for item in raw.decode("utf-8", "replace").split("\0") if "=" in item
        )
        directory = env.get(ENV_INSTANCE_DIR)
        if directory is not None and not directory.startswith(prefix):
            continue
        st = proc_stat(pid)
        if st is None or not st.running:
            continue
        found.append(
            Carrier(
                pid=pid,
                start_time=st.start_time,
                pgrp=st.pgrp,
                instance_id=env.get(ENV_INSTANCE_ID, ""),
                instance_dir=directory,
            )
        )
    return found


def stop_carriers(found: Iterable[Carrier], timeout: float) -> bool:
    """SIGTERM every process in `found` (and each process group one of them leads), wait up
    to `timeout` seconds for them to end, then SIGKILL what is left. Returns whether all ended.
    """
    found = list(found)
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
        left = [c for c in found if is_running(c.pid, c.start_time)]
        if not left:
            return True
        for carrier in left:
            if carrier.pid == carrier.pgrp:
                signal_group(carrier.pid, carrier.start_time, sig)
            if is_running(carrier.pid, carrier.start_time):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(carrier.pid, sig)
        deadline = time.monotonic() + wait
        while any(is_running(c.pid, c.start_time) for c in left):
            CHILDREN.reap()
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
    return not any(is_running(c.pid, c.start_time) for c in found)


class ChildTable:
    """Processes this Python process started, kept so they can be reaped (never left as zombies).

    Shared by every plugin object in the process, so whichever polls first reaps.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def add(self, child: subprocess.Popen[bytes]) -> None:
        """Remember a started child."""
        with self._lock:
            self._children[child.pid] = child

    def reap(self) -> None:
        """Collect the exit status of every child that has ended."""
        with self._lock:
            children = list(self._children.values())
        done = [c.pid for c in children if c.poll() is not None]
        if done:
            with self._lock:
                for pid in done:
                    self._children.pop(pid, None)

    def wait(self, pid: int, timeout: float) -> None:
        """Wait up to `timeout` for child `pid` to end (no-op if it is not our child)."""
        with self._lock:
            child = self._children.get(pid)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout)
            self.reap()


CHILDREN = ChildTable()
