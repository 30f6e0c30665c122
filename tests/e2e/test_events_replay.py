"""`infrakit events --since DURATION` replays the events a runtime still holds (issue 13): started
after a restart, it shows the adoptions that just happened, then the live events, each event
once (by its sequence number); a bad DURATION is one clear line."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import INFRAKIT, Cli
from support import process_group, wait_for
from test_builtin_reach import GROUP, members
from test_update_resume import Run, lone_runtime
from test_update_resume import runs as runs  # the fixture


class Follower:
    """`infrakit events ARGS` in the background, its stdout lines gathered as they come."""

    def __init__(self, cli: Cli, *args: str) -> None:
        self.process = subprocess.Popen(
            [*INFRAKIT, "events", *args],
            env=cli.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))

    def seen(self) -> list[str]:
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return self.lines

    def stop(self) -> str:
        """Stop it; its stderr (a few lines: the pipe cannot fill). Its stdout is the reader
        thread's to the end, as two readers of one pipe would race."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(timeout=30)
        self._reader.join(timeout=30)
        assert self.process.stderr is not None
        with self.process.stderr as err:
            return err.read()


@pytest.fixture
def followers() -> Iterator[list[Follower]]:
    started: list[Follower] = []
    yield started
    for follower in started:
        follower.stop()


def restarted_with_adoptions(cli: Cli, tmp_path: Path, runs: list[Run]) -> tuple[Run, set[str]]:
    """A runtime that manages a group of 2 processes, stopped and started again: the second
    start adopts them."""
    state = cli.home / "instances" / "process"
    run = lone_runtime(cli, tmp_path, runs)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(process_group(GROUP, 2)))
    cli("group", "commit", str(spec))
    made = wait_for(lambda: m if len(m := members(state)) == 2 else None, what="2 instances")
    wait_for(lambda: run.events("converged"), what="the group to converge")
    run.stop()
    run.start()
    wait_for(lambda: len(run.events("adopted")) == 2, what="the restarted runtime to adopt")
    return run, made


def test_events_since_replays_the_adoptions_of_a_restart_then_follows_live(
    cli: Cli, tmp_path: Path, runs: list[Run], followers: list[Follower]
) -> None:
    run, made = restarted_with_adoptions(cli, tmp_path, runs)
    lines = Follower(cli, "--since", "1m")
    followers.append(lines)
    wait_for(
        lambda: all(any(ln.endswith(f" adopted {i}") for ln in lines.seen()) for i in made),
        what="the replayed adoptions",
    )
    as_json = Follower(cli, "reached", "--since", "1m", "--json")
    followers.append(as_json)

    def adopted() -> list[dict[str, object]]:
        events = [json.loads(line) for line in as_json.seen()]
        return [e for e in events if e["kind"] == "adopted"]

    replayed = wait_for(lambda: len(a := adopted()) == 2 and a, what="the JSON replay")
    assert {e["instance"] for e in replayed} == made

    # Then the live events, each once, in order, after the replayed ones.
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(process_group(GROUP, 3)))
    cli("group", "commit", str(spec))
    wait_for(lambda: any("provisioned" in ln for ln in lines.seen()), what="a live event")

    def provisioned() -> list[dict[str, object]]:
        events = [json.loads(line) for line in as_json.seen()]
        return [e for e in events if e["kind"] == "provisioned"]

    wait_for(provisioned, what="a live event in JSON")
    seqs = [json.loads(line)["seq"] for line in as_json.seen()]
    assert seqs == sorted(set(seqs)), f"an event printed twice or out of order: {seqs}"
    assert {json.loads(line)["group"] for line in as_json.seen()} == {"reached"}
    assert len([ln for ln in lines.seen() if "provisioned" in ln]) == 1, lines.seen()
    assert run.leads()


@pytest.mark.parametrize(
    ("since", "fault"),
    [
        ("2 parsecs", "not a duration: '2 parsecs'"),
        ("8h0m1s" * 30, "not a duration"),
        ("200h", "must be at most 168h"),
    ],
)
def test_a_bad_since_is_one_clear_line(cli: Cli, since: str, fault: str) -> None:
    result = subprocess.run(
        [*INFRAKIT, "events", "--since", since],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert "--since" in result.stderr and fault in result.stderr, result.stderr
