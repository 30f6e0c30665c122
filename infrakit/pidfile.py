"""Plugin pid files: which process serves a plugin, and which runtime launched it.

`<plugins dir>/<name>.pid` holds the serving process's pid on its first line (so `head -1` and
`read pid < NAME.pid` still work), then `key=value` lines:

    start=<when it started, in clock ticks after boot: with the pid, it names one process>
    launcher=<pid>-<start>:<token> of the runtime that launched it ($INFRAKIT_LAUNCHER)

A runtime launching a plugin (a cluster file's `Launch`) sets `INFRAKIT_LAUNCHER`; a plugin
started by hand has no launcher line.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from infrakit.proc import is_running, proc_stat, self_token, token_alive

LAUNCHER_ENV = "INFRAKIT_LAUNCHER"


@dataclass(frozen=True)
class Launcher:
    """A runtime that launches plugins: its process (`self_token()`, pid and start time) and a
    token that tells two runtimes of one process apart."""

    process: str
    token: str

    @classmethod
    def of_this_process(cls, token: str) -> Launcher:
        return cls(self_token(), token)

    @classmethod
    def parse(cls, text: str) -> Launcher | None:
        """`<pid>-<start>:<token>`, or None if `text` is not that."""
        process, _, token = text.partition(":")
        pid, _, start = process.partition("-")
        if not (pid.isdigit() and start.isdigit() and token):
            return None
        return cls(process, token)

    @property
    def pid(self) -> int:
        return int(self.process.partition("-")[0])

    def alive(self) -> bool:
        return token_alive(self.process)

    def __str__(self) -> str:
        return f"{self.process}:{self.token}"


@dataclass(frozen=True)
class PidFile:
    """What a plugin's pid file says."""

    pid: int
    start: int | None  # None in a file written by an older version
    launcher: Launcher | None

    def running(self) -> bool:
        """Whether that very process still runs (a reused pid does not count)."""
        if self.start is not None:
            return is_running(self.pid, self.start)
        stat = proc_stat(self.pid)
        return stat is not None and stat.running


def write_pid_file(path: Path) -> None:
    """Write this process's pid file atomically (readers never see half of it), naming the
    runtime in `$INFRAKIT_LAUNCHER` as its launcher if set."""
    pid = os.getpid()
    stat = proc_stat(pid)
    lines = [str(pid)]
    if stat is not None:
        lines.append(f"start={stat.start_time}")
    launcher = Launcher.parse(os.environ.get(LAUNCHER_ENV, ""))
    if launcher is not None:
        lines.append(f"launcher={launcher}")
    temporary = path.with_name(f".{path.name}.{pid}")
    temporary.write_text("\n".join(lines) + "\n")
    temporary.replace(path)


def read_pid_file(path: Path) -> PidFile | None:
    """The pid file at `path`, or None if there is none or it is not one."""
    try:
        first, *rest = path.read_text().splitlines()
        pid = int(first)
    except (OSError, ValueError):
        return None
    fields = dict(line.partition("=")[::2] for line in rest)
    start = None
    with contextlib.suppress(ValueError):
        start = int(fields.get("start", ""))
    return PidFile(pid, start, Launcher.parse(fields.get("launcher", "")))
