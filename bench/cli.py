"""How long each `infrakit` client command takes, start to exit, against real servers.

Starts `infrakit plugin start file` and `infrakit run` on a one-group cluster file (file
instances, vanilla flavor) in a temporary INFRAKIT_HOME, waits until both answer, then runs
each command `--runs` times as a subprocess through the installed `infrakit` entry point and
prints the p50 and max wall time of each. Then the import time of each CLI module
(`python -X importtime`, cumulative, best of 5), and the floor every command pays before any
code of ours: the wall time of `python -c pass`, of importing click, and click and pyzmq.
Stops both servers and removes the home at the end.

Python writes and reuses bytecode as it does for a user (PYTHONDONTWRITEBYTECODE is dropped;
the cache goes under the temporary home, PYTHONPYCACHEPREFIX), and one untimed run of each
command fills it; `--no-bytecode` measures with every module compiled from source each time
instead. PYTHONPATH is passed on: point it at another checkout to measure that one.

    .venv/bin/python bench/cli.py [--runs 20] [--no-bytecode]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

BIN = Path(sys.executable).parent
INFRAKIT = str(BIN / "infrakit") if (BIN / "infrakit").exists() else shutil.which("infrakit")
GROUP = "workers"
PLUGIN = "instance-file"
MODULES = [
    "infrakit.cli.main",
    "infrakit.cli.client",
    "infrakit.cli.manager",
    "infrakit.cli.instance",
    "infrakit.cli.plugin_list",
    "infrakit.cli.validate",
]
STARTUP_DEADLINE = 120.0


def cluster(size: int) -> dict[str, object]:
    """The benchmark's cluster: one group of file instances, quick to converge."""
    return {
        "Groups": [
            {
                "ID": GROUP,
                "Properties": {
                    "Allocation": {"Size": size},
                    "Instance": {"Plugin": "instance-file", "Properties": {"Note": "bench"}},
                    "Flavor": {"Plugin": "flavor-vanilla"},
                },
            }
        ]
    }


def commands(cluster_file: Path) -> list[tuple[str, list[str]]]:
    """(label, argv after `infrakit`) of every command timed, client commands first."""
    return [
        ("home", ["home"]),
        ("group ls", ["group", "ls"]),
        (f"group describe {GROUP}", ["group", "describe", GROUP]),
        ("manager status", ["manager", "status"]),
        ("plugin ls", ["plugin", "ls"]),
        (f"instance --name {PLUGIN} describe", ["instance", "--name", PLUGIN, "describe"]),
        ("validate FILE", ["validate", str(cluster_file)]),
        ("--help", ["--help"]),
    ]


def run(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Seconds `argv` took from spawn to exit, and what it did."""
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    return time.perf_counter() - started, done


def wait_until(what: str, check: Callable[[], bool]) -> None:
    """Poll `check()` until it is true; exit with a message after STARTUP_DEADLINE."""
    deadline = time.monotonic() + STARTUP_DEADLINE
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"bench: {what} did not come up within {STARTUP_DEADLINE:g}s")
        time.sleep(0.2)


@contextlib.contextmanager
def servers(home: Path, cluster_file: Path, env: dict[str, str]) -> Iterator[None]:
    """A plugin (`infrakit plugin start file`, up first: a leading runtime serves its own
    instance-file where no live server holds that socket) and a runtime (`infrakit run`) on
    `home`, answering; both stopped with SIGTERM afterwards."""
    logs = home / "logs"
    logs.mkdir()
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, argv: list[str], check: list[str]) -> None:
        with open(logs / f"{name}.log", "wb") as log:
            server = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        started.append(server)

        def answering() -> bool:
            if server.poll() is not None:
                said = (logs / f"{name}.log").read_text(errors="replace").strip()
                sys.exit(f"bench: `{' '.join(argv[1:])}` exited: {said[-2000:]}")
            return run([INFRAKIT, *check], env)[1].returncode == 0

        wait_until(f"the {name}", answering)

    try:
        start(
            "plugin",
            [INFRAKIT, "plugin", "start", "file"],
            ["instance", "--name", PLUGIN, "describe"],
        )
        start("runtime", [INFRAKIT, "run", str(cluster_file)], ["group", "describe", GROUP])
        yield
    finally:
        for server in started:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
        for server in started:
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def time_commands(
    labelled: list[tuple[str, list[str]]], env: dict[str, str], runs: int
) -> list[tuple[str, float, float]]:
    """(label, p50 ms, max ms) of each command over `runs` runs (after one to warm the page
    cache); a run that fails stops the benchmark, saying why."""
    rows = []
    for label, args in labelled:
        samples = []
        for attempt in range(runs + 1):
            seconds, done = run([INFRAKIT, *args], env)
            if done.returncode != 0:
                sys.exit(f"bench: `infrakit {' '.join(args)}` failed: {done.stderr.strip()}")
            if attempt:
                samples.append(seconds * 1000)
        rows.append((label, statistics.median(samples), max(samples)))
    return rows


def import_ms(module: str, env: dict[str, str], tries: int = 5) -> float:
    """Cumulative import time of `module` in ms (`-X importtime`), best of `tries`; run in the
    home, so that `-c`'s current directory on sys.path shadows nothing."""
    best = float("inf")
    pattern = re.compile(r"import time:\s+\d+\s+\|\s+(\d+)\s+\|\s*(\S+)\s*$")
    for _ in range(tries):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            env=env,
            cwd=env["INFRAKIT_HOME"],
            capture_output=True,
            text=True,
            check=True,
        )
        for line in done.stderr.splitlines():
            found = pattern.match(line)
            if found and found.group(2) == module:
                best = min(best, int(found.group(1)) / 1000)
    return best


FLOORS = ["pass", "import click", "import click, zmq"]
"""What every command pays before any of ours: Python, then click, then pyzmq."""


def wall_ms(code: str, env: dict[str, str], tries: int = 15) -> float:
    """Median wall ms of `python -c CODE` (run in the home, as `import_ms`)."""
    argv = [sys.executable, "-c", code]
    samples = []
    for _ in range(tries):
        started = time.perf_counter()
        subprocess.run(argv, env=env, cwd=env["INFRAKIT_HOME"], capture_output=True, check=True)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each command")
    parser.add_argument("--size", type=int, default=3, help="instances in the group")
    parser.add_argument(
        "--no-bytecode", action="store_true", help="compile every module from source each run"
    )
    options = parser.parse_args()
    if INFRAKIT is None:
        sys.exit("bench: no `infrakit` entry point beside this Python nor on PATH")
    home = Path(tempfile.mkdtemp(prefix="infrakit-bench-cli-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAKIT_")}
    env["INFRAKIT_HOME"] = str(home)
    env.pop("PYTHONPYCACHEPREFIX", None)
    if options.no_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(home / "pycache")
    cluster_file = home / "cluster.json"
    cluster_file.write_text(json.dumps(cluster(options.size)))
    try:
        with servers(home, cluster_file, env):
            rows = time_commands(commands(cluster_file), env, options.runs)
            sockets = len(run([INFRAKIT, "plugin", "ls", "-q"], env)[1].stdout.split())
        imports = [(module, import_ms(module, env)) for module in MODULES]
        floors = [(code, wall_ms(code, env)) for code in FLOORS]
    finally:
        shutil.rmtree(home, ignore_errors=True)
    bytecode = "compiled each run" if options.no_bytecode else "bytecode cached"
    print(f"{'command':<48} {'p50 ms':>8} {'max ms':>8}   ({options.runs} runs, {bytecode})")
    for label, p50, worst in rows:
        print(f"{'infrakit ' + label:<48} {p50:8.1f} {worst:8.1f}")
    print(f"(plugin ls asked {sockets} sockets: the plugin's and those the runtime serves)")
    print()
    print(f"{'import (cumulative, best of 5)':<48} {'ms':>8}")
    for module, ms in imports:
        print(f"{module:<48} {ms:8.1f}")
    print()
    print(f"{'floor: wall of python -c (p50 of 15)':<48} {'ms':>8}")
    for code, ms in floors:
        print(f"{code:<48} {ms:8.1f}")


if __name__ == "__main__":
    main()
