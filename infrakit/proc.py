"""Which process is which on Linux, PID reuse aside: a PID with its start time (from
`/proc/<pid>/stat`) names one process for ever, so a record of both never mistakes a later
process for the one it recorded."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["ProcStat", "is_running", "proc_stat", "self_token", "token_alive"]

_DEAD_STATES = frozenset("ZXx")


@dataclass(frozen=True)
class ProcStat:
    """The fields of `/proc/<pid>/stat` we need."""

    state: str
    pgrp: int
    session: int
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
        return ProcStat(
            state=fields[0].decode(),
            pgrp=int(fields[2]),
            session=int(fields[3]),
            start_time=int(fields[19]),
        )
    except (IndexError, ValueError):
        return None


def is_running(pid: int, start_time: int) -> bool:
    """True if `pid` is the process that started at `start_time` and is not a zombie."""
    st = proc_stat(pid)
    return st is not None and st.start_time == start_time and st.running


_self_token: tuple[int, str] = (0, "")


def self_token() -> str:
    """`<pid>-<start time>` of this process: a name for it that no later process will have."""
    global _self_token
    pid = os.getpid()
    if _self_token[0] != pid:  # first call, or in a forked child
        st = proc_stat(pid)
        _self_token = (pid, f"{pid}-{st.start_time if st is not None else 0}")
    return _self_token[1]


def token_alive(token: str) -> bool:
    """Whether the process a `self_token()` names still runs."""
    pid, _, start = token.partition("-")
    try:
        return is_running(int(pid), int(start))
    except ValueError:
        return False
