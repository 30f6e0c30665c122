"""A rolling update's events tell the truth in order (issue 13): once paused, the update never
says "rolling" again until a commit resumes it, even when the replacement that was in flight
turns healthy afterwards; that progress is said as progress of a paused update.

The instances are real processes behind the process plugin; each turns healthy only when the
test allows it (tests/e2e/test_update_resume.py's `Gate`), so the test decides the order."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from conftest import Cli
from support import wait_for
from test_update_resume import (
    SIZE,
    Gate,
    Run,
    census,
    commit,
    converge,
    lone_runtime,
)
from test_update_resume import runs as runs  # the fixture

ROLLOUT = ("update-started", "rolling", "update-paused", "update-done")


def rollout_lines(run: Run) -> list[tuple[str, str]]:
    """(kind, message) of every rolling update event since the runtime's latest start."""
    return [(e["kind"], e["line"].split(": ", 1)[-1]) for e in run.events(*ROLLOUT)]


def test_progress_after_a_pause_is_said_as_paused_until_a_commit_resumes_it(
    cli: Cli,
    tmp_path: Path,
    runs: list[Run],
) -> None:
    gate = Gate(tmp_path)
    state = cli.home / "instances" / "process"
    run = lone_runtime(cli, tmp_path, runs)
    commit(run, tmp_path, gate.group("v1", healthy_timeout="10m"))
    (v1,) = {h for _, h in converge(run, gate, state).values()}
    run.offset = run.log.stat().st_size

    # The first replacement is not allowed to be healthy within 2s: the update pauses.
    commit(run, tmp_path, gate.group("v2", healthy_timeout="2s"))
    wait_for(lambda: run.events("update-paused"), what="the update to pause")
    (late,) = [i for i, (_, h) in census(state).items() if h != v1]
    # ... then the replacement in flight turns healthy, while the update stays paused.
    gate.allow(late)

    def progress_while_paused() -> list[tuple[str, str]]:
        said = rollout_lines(run)
        paused = next(n for n, (kind, _) in enumerate(said) if kind == "update-paused")
        return [line for line in said[paused + 1 :] if f"1/{SIZE}" in line[1]]

    after = wait_for(progress_while_paused, what="the paused update to say 1 done")
    said = rollout_lines(run)
    assert all(kind != "rolling" for kind, _ in said), f"'rolling' while paused: {said}"
    assert not any(re.match(r"rolling \d", message) for _, message in after), said
    assert f"paused at 1/{SIZE}" in after[0][1] and "done while paused" in after[0][1], said

    # Committing again resumes it: only now does it say "rolling", from where it stands.
    commit(run, tmp_path, gate.group("v2", healthy_timeout="2s"))

    def finished() -> list[tuple[str, str]] | None:
        gate.allow(*(i for i, (_, h) in census(state).items() if h != v1))
        said = rollout_lines(run)
        return said if any(kind == "update-done" for kind, _ in said) else None

    said = wait_for(finished, what="the resumed update to finish")
    kinds = [kind for kind, _ in said]
    resumed = kinds.index("rolling")
    assert f"resumed at 1/{SIZE}" in said[resumed][1], said
    assert "update-paused" not in kinds[resumed:], said
    progress = [line for kind, line in said[resumed + 1 :] if kind == "rolling"]
    assert progress == [f"rolling {n}/{SIZE}" for n in range(2, SIZE + 1)], said
    assert _no_regression(said), said


def _no_regression(said: list[tuple[str, str]]) -> bool:
    """Whether the done counts the lines give never go down."""
    counts: list[Any] = []
    for _, message in said:
        for word in message.replace(":", " ").split():
            done, slash, total = word.partition("/")
            if slash and done.isdigit() and total == str(SIZE):
                counts.append(int(done))
    return counts == sorted(counts)
