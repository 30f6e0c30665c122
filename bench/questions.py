"""How long `infrakit group describe` and `infrakit manager status` take while the group's
instance plugin (another process) is frozen with SIGSTOP: there, but answering nothing.

A runtime serves a Size=3 group on `infrakit plugin start file`; once it has converged the
plugin is stopped, and each command is timed --rounds times as a user runs it (a new CLI
process each time, so its start-up is counted). Before the views, both took the plugin's 30 s
call timeout and printed `Error: 30.0 seconds`.

    .venv/bin/python bench/questions.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "infrakit.cli.main"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from infrakit import Runtime

    home = Path(tempfile.mkdtemp(prefix="ik-questions-")) / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAKIT_")}
    env["INFRAKIT_HOME"] = str(home)
    plugin = subprocess.Popen(
        [*CLI, "plugin", "start", "file", "--option", f"Dir={home.parent / 'files'}"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert plugin.stdout is not None and plugin.stdout.readline().startswith("Listening at")
    endpoint = f"ipc://{home / 'plugins' / 'instance-file'}"
    group = {
        "ID": "cattle",
        "Properties": {
            "Allocation": {"Size": 3},
            "Instance": {"Plugin": "instance-file", "Properties": {}},
            "Flavor": {"Plugin": "flavor-vanilla"},
            "Health": {"Interval": "200ms"},
        },
    }
    try:
        config = {"Plugins": [{"Name": "instance-file", "Endpoint": endpoint}]}
        with Runtime(config, home=home) as runtime:
            runtime.commit(group)
            runtime.wait_converged("cattle")
            os.killpg(plugin.pid, signal.SIGSTOP)
            print("instance plugin frozen (SIGSTOP); each command run as a user runs it:")
            for command in (["group", "describe", "cattle"], ["manager", "status"]):
                took = []
                for _ in range(args.rounds):
                    started = time.monotonic()
                    done = subprocess.run([*CLI, *command], env=env, capture_output=True)
                    took.append(time.monotonic() - started)
                    assert done.returncode == 0, done.stderr
                print(
                    f"  infrakit {' '.join(command):<24} median {statistics.median(took):.2f}s"
                    f"  max {max(took):.2f}s  ({args.rounds} runs)"
                )
            os.killpg(plugin.pid, signal.SIGCONT)  # so that the group's look ends and it stops
    finally:
        os.killpg(plugin.pid, signal.SIGCONT)
        os.killpg(plugin.pid, signal.SIGKILL)
        plugin.wait(30)


if __name__ == "__main__":
    main()
