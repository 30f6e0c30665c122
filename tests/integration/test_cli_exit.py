"""How the `infrakit` program ends: a client command skips the interpreter's teardown (a tenth
of its time, bench/cli.py), and nothing a user would notice may go with it: every byte of its
output arrives, its exit status is the one it chose, and work it left running still finishes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BUFFERED = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
"""A user's environment: output buffered, as it is unless PYTHONUNBUFFERED is set."""

# The program as its entry point runs it, with one extra command that writes `size` bytes and
# ends as told: an exit status, a message, or after starting a thread that finishes later.
PROGRAM = """
import sys, threading, time
import click
from infrakit.cli.main import main

@main.command()
@click.argument("size", type=int)
@click.argument("how")
@click.argument("where", required=False)
def spill(size, how, where):
    for _ in range(size // 1024):
        print("x" * 1023)  # buffered: nothing flushes it but the program's end
    sys.stderr.write("end\\n")
    if how == "thread":
        def late():
            time.sleep(0.2)
            with open(where, "w") as file:
                file.write("finished")
        threading.Thread(target=late).start()
    elif how.isdigit():
        sys.exit(int(how))
    elif how != "return":
        sys.exit(how)

main()
"""


def spill(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, "spill", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=BUFFERED,
    )


def test_all_output_arrives_through_a_pipe() -> None:
    size = 4099 * 1024  # far more than a pipe holds, and not a whole number of buffers
    result = spill(str(size), "return")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("x" * 1023 + "\n") * (size // 1024)
    assert result.stderr == "end\n"


def test_the_exit_status_is_the_commands() -> None:
    assert spill("10", "3").returncode == 3
    failed = spill("10", "it went wrong")
    assert failed.returncode == 1
    assert failed.stderr == "end\nit went wrong\n"


def test_a_thread_the_command_left_running_finishes(tmp_path: Path) -> None:
    marker = tmp_path / "late"
    result = spill("10", "thread", str(marker))
    assert result.returncode == 0, result.stderr
    assert marker.read_text() == "finished"


def test_a_closed_pipe_ends_the_command_quietly() -> None:
    """`infrakit group ls | head -1`: the reader goes away; no traceback reaches the user."""
    program = [sys.executable, "-c", PROGRAM, "spill", str(1024 * 1024), "return"]
    with subprocess.Popen(
        program, env=BUFFERED, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.read(10)
        process.stdout.close()
        errors = process.stderr.read().decode()
        process.wait(timeout=60)
    assert "Traceback" not in errors
