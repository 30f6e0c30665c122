"""Reading Linux's /proc to tell whether a recorded process (group) still runs, PID reuse aside."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from dataclasses import dataclass

_DEAD_STATES = frozenset("ZXx")


@dataclass(frozen=True)
class ProcStat:
    """The fields of `/proc/<pid>/stat` we need."""

    state: str
    pgrp: int
    start_time: int  # field 22: clock ticks after boot; with the PID it names one process

    @property
    def running(self) -> bool:
        """False for zombies and dead tasks."""
        return self.state not in _DEAD_STATES


def proc_stat(pid: int) -> ProcStat | None:
    """Parse `/proc/<pid>/stat`, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain anything, even ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return ProcStat(state=fields[0].decode(), pgrp=int(fields[2]), start_time=int(fields[19]))
    except (IndexError, ValueError):
        return None


def is_running(pid: int, start_time: int) -> bool:
    """True if `pid` is the process that started at `start_time` and is not a zombie."""
    st = proc_stat(pid)
    return st is not None and st.start_time == start_time and st.running


def group_running(pgid: int) -> bool:
    """True while any non-zombie process is in process group `pgid`."""
    st = proc_stat(pgid)
    if st is not None and st.running and st.pgrp == pgid:
        return True
    try:
        it = os.scandir("/proc")
    except OSError:
        return False
    with it:
        for entry in it:
            if not entry.name.isdigit():
                continue
            member = proc_stat(int(entry.name))
            if member is not None and member.pgrp == pgid and member.running:
                return True
    return False


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
