"""Kill -9 an instance plugin at every line it runs, one crash point per forked child.

Run as `python crash_points.py KIND OP BASE TOKEN`: for k = 1, 2, ... a child of this (single
threaded) process makes a plugin of KIND (`process` or `file`) on BASE/k and runs OP
(`provision`, or `destroy` of an instance it provisioned first) with a line tracer that
SIGKILLs the child at the k-th line run in the plugin's own modules (`/proc` helpers and the
standard library count as single steps). It stops after the first child that finishes. One
JSON line per point says where it crashed: `{"k", "dir", "killed", "instance"}`.

Every instance carries `CRASH_TOKEN=TOKEN-k` (process) or `{"Token": "TOKEN-k"}` (file), so the
test can find what each point left.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

import infrakit.plugins
from infrakit.spi import Spec

PLUGINS = Path(infrakit.plugins.__file__).parent
# Files whose lines are crash points: the plugins and their atomic file helpers.
TRACED = {
    str(PLUGINS / "_atomic.py"),
    str(PLUGINS / "instance" / "process.py"),
    str(PLUGINS / "instance" / "file.py"),
    str(PLUGINS / "instance" / "_dead.py"),
}


def make(kind: str, directory: Path) -> Any:
    if kind == "process":
        from infrakit.plugins.instance.process import ProcessInstancePlugin

        return ProcessInstancePlugin(directory, stop_timeout=5.0)
    from infrakit.plugins.instance.file import FileInstancePlugin

    return FileInstancePlugin(directory)


def spec(kind: str, token: str) -> Spec:
    if kind == "process":
        properties: Any = {"Env": {"CRASH_TOKEN": token}}
    else:
        properties = {"Token": token}
    return Spec(properties=properties, tags={"g": "crash"}, init="exec sleep 1000")


def crash_at(k: int) -> None:
    """SIGKILL this process at the k-th traced line."""
    count = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
            if count == k:
                os.kill(os.getpid(), signal.SIGKILL)
        return local

    def start(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename in TRACED else None

    sys.settrace(start)


def child(kind: str, op: str, directory: Path, token: str, k: int, report: int) -> None:
    plugin = make(kind, directory)
    the_spec = spec(kind, token)
    instance = plugin.provision(the_spec) if op == "destroy" else None
    os.write(report, (instance or "").encode())
    crash_at(k)
    if op == "provision":
        instance = plugin.provision(the_spec)
    else:
        plugin.destroy(instance)
    sys.settrace(None)


def main() -> None:
    kind, op, base, token = sys.argv[1:5]
    k = 0
    while True:
        k += 1
        directory = Path(base) / str(k)
        read, write = os.pipe()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            try:
                child(kind, op, directory, f"{token}-{k}", k, write)
            except BaseException:
                traceback.print_exc()
                os._exit(3)
            os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            instance = pipe.read().decode()
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        if not killed and os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"crash point {k}: the child failed ({status})")
        point = {"k": k, "dir": str(directory), "killed": killed, "instance": instance}
        print(json.dumps(point), flush=True)
        if not killed:
            return


if __name__ == "__main__":
    main()
