"""Following a group's rollout from the CLI (`group commit|rollback|scale --wait`, `group
status`): read the group's summary from `Manager.Status` until it has converged at the revision
asked for, showing what it does and waits for. On a terminal a live `rich` display (imported
only then: the client stays light), otherwise one plain line per change, no ANSI.

Reading a summary (`reading`) is pure; `follow` polls and draws.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar

import click

from infrakit.wire.common import Unsupported, param

POLL = 0.5  # seconds between two readings of the group's status
DEFAULT_TIMEOUT = 900.0  # beyond the default ProgressDeadline (600s): the rollout says first
MAX_TIMEOUT = 7 * 86400.0  # as long as a ProgressDeadline may be

Summary = dict[str, Any]
F = TypeVar("F", bound=Callable[..., Any])


class Reading(NamedTuple):
    """One look at the group, as `--wait` shows it: `done` once converged at the revision
    followed, `failed` why it will not get there by itself (paused, rolled back...)."""

    group: str
    revision: int | None
    replaced: int
    total: int
    healthy: int
    size: int
    waiting: str  # what it waits for now, with how long it has waited
    plain: str  # the same, without the seconds (a plain line is printed once per change)
    done: bool = False
    failed: str | None = None

    def line(self, timed: bool = False) -> str:
        """One line saying where the group is: revision, replaced/total, healthy/size and
        what it waits for (with the seconds if `timed`)."""
        parts = [self.group]
        if self.revision is not None:
            parts.append(f"revision {self.revision}")
        if self.total:
            parts.append(f"replaced {self.replaced}/{self.total}")
        parts.append(f"healthy {self.healthy}/{self.size}")
        what = self.waiting if timed else self.plain
        return "  ".join(parts) + (f": {what}" if what else "")


def reading(summary: Summary, revision: int | None = None) -> Reading:
    """What the group's summary (`Manager.Status`'s entry for it) says of a change made at
    `revision` (None: whatever the group is at)."""
    group = str(param(summary, "ID"))
    update = param(summary, "Update") or {}
    phases = param(summary, "Phases") or {}
    total, done = _count(param(update, "Total")), _count(param(update, "Done"))
    now = param(summary, "Revision")
    now = now if isinstance(now, int) else None
    paused = param(update, "Paused")
    conditions = [str(c) for c in param(summary, "Conditions") or []]
    waiting, plain = _waiting(summary, update, conditions)
    # Until the group has taken the committed spec, what it says of its rollout is the
    # previous spec's (a runtime that does not say is trusted).
    seen = param(summary, "SpecSeen") is not False
    failed = None
    if revision is not None and now is not None and now > revision:
        failed = f"the group moved on to revision {now}"
    elif paused and seen:
        failed = f"paused: {paused}"
    converged = bool(param(summary, "Converged")) and seen and not (total and done < total)
    return Reading(
        group=group,
        revision=now,
        replaced=done,
        total=total,
        healthy=_count(phases.get("running")),
        size=_count(param(summary, "Size")),
        waiting=waiting,
        plain=plain,
        done=converged and failed is None and not param(summary, "Destroying"),
        failed=failed,
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _waiting(summary: Summary, update: dict[str, Any], conditions: list[str]) -> tuple[str, str]:
    """What the group waits for, with and without the seconds."""
    if param(summary, "SpecSeen") is False:
        said = "waiting for the group to take the new spec"
        return said, said
    if param(update, "Paused"):
        said = f"paused: {param(update, 'Paused')}"
        return said, said
    if conditions:
        said = "; ".join(conditions)
        return said, said
    flights = [f for f in param(update, "InFlight") or [] if isinstance(f, dict)]
    if flights:
        timed, plain = zip(*(_in_flight(f, update) for f in flights), strict=True)
        return "; ".join(timed), "; ".join(plain)
    if param(summary, "Converged"):
        return "", ""
    phases = param(summary, "Phases") or {}
    busy = {k: v for k, v in phases.items() if k != "running" and v}
    said = ", ".join(f"{v} {k}" for k, v in sorted(busy.items()))
    said = f"waiting for instances ({said})" if said else "waiting for the group to converge"
    return said, said


def _in_flight(flight: dict[str, Any], update: dict[str, Any]) -> tuple[str, str]:
    """What one replacement under way waits for: `waiting for web-2 to turn healthy (12s of
    HealthyTimeout 60s)`."""
    lid = str(param(flight, "LogicalID"))
    phase = param(flight, "Phase")
    elapsed = _seconds(param(flight, "Elapsed"))
    timeout = _seconds(param(update, "HealthyTimeout"))
    if phase == "replacing":
        what = f"replacing {lid}: draining and destroying its old instance"
        return f"{what} ({elapsed})", what
    if phase == "running":
        ready = _seconds(param(flight, "ReadyFor"))
        need = _seconds(param(update, "MinReadyTime"))
        what = f"waiting for {lid} to stay healthy for MinReadyTime {need}"
        return f"{what} ({ready} so far)", what
    if param(flight, "Outgoing"):
        what = f"waiting for {lid}'s replacement to turn healthy (its old instance still serves)"
    else:
        what = f"waiting for {lid} to turn healthy"
    return f"{what} ({elapsed} of HealthyTimeout {timeout})", f"{what} (HealthyTimeout {timeout})"


def _seconds(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "?"
    from infrakit.duration import format_duration  # only once there is something to show

    return format_duration(float(round(value))) if value >= 1 else "0s"


def wait_options(function: F) -> F:
    """Add `--wait` and `--timeout` to a command that changes a group."""
    function = click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True, max=MAX_TIMEOUT),
        default=DEFAULT_TIMEOUT,
        show_default=True,
        metavar="SECONDS",
        help="Seconds --wait waits at most (the runtime goes on after).",
    )(function)
    return click.option(
        "--wait",
        is_flag=True,
        help="Follow the group until it has converged, showing its progress; exit 1 if it"
        " pauses, fails or moves on to another revision first.",
    )(function)


def find(status: dict[str, Any] | None, group_id: str) -> Summary | None:
    """The summary of `group_id` in a `Manager.Status` answer, if it is there."""
    groups = param(status, "Groups") if status is not None else None
    for summary in groups if isinstance(groups, list) else []:
        if isinstance(summary, dict) and param(summary, "ID") == group_id:
            return summary
    return None


def follow(
    ask: Callable[[], dict[str, Any] | None],
    group_id: str,
    revision: int | None,
    timeout: float,
    moved_on: Callable[[int], str] = lambda _n: "",
    show: bool = True,
) -> Reading:
    """Poll `ask` (`Manager.Status`) until group `group_id` has converged at `revision`;
    return the last reading. Raise a ClickException (exit status 1) saying why if it pauses,
    moves on to a later revision (`moved_on(n)` says what that revision is), goes away, or
    has not converged within `timeout` seconds. With `show`, draw the progress on stdout."""
    deadline = time.monotonic() + timeout
    with _display(show and sys.stdout.isatty(), show) as draw:
        while True:
            summary = find(ask(), group_id)
            if summary is None:
                raise click.ClickException(f"group {group_id} is not managed any more")
            now = reading(summary, revision)
            draw(now)
            if now.done:
                return now
            if now.failed is not None:
                why = now.failed
                if now.revision is not None and revision is not None and now.revision > revision:
                    said = moved_on(now.revision)
                    why = f"{why}{f' ({said})' if said else ''} before converging"
                raise click.ClickException(f"{group_id}: {why}")
            if time.monotonic() > deadline:
                raise click.ClickException(
                    f"{group_id} has not converged after {timeout:g}s ({now.line()});"
                    " the runtime keeps at it"
                )
            time.sleep(POLL)


@contextmanager
def _display(terminal: bool, show: bool) -> Iterator[Callable[[Reading], None]]:
    """A function that shows each reading: live with `rich` on a terminal, else a plain line
    whenever what it says changes (nothing at all unless `show`)."""
    if not show:
        yield lambda _r: None
        return
    if not terminal:
        last = [""]

        def plain(now: Reading) -> None:
            line = now.line()
            if line != last[0]:
                last[0] = line
                click.echo(line)

        yield plain
        return
    with _live() as draw:
        yield draw


@contextmanager
def _live() -> Iterator[Callable[[Reading], None]]:
    """The live display: a bar for the rollout (replaced of total; healthy of size while
    nothing is to be replaced), healthy instances, the time elapsed and what it waits for."""
    from rich.console import Console  # only on a terminal, only while waiting
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[waiting]}"),
        console=Console(),
    )
    task = progress.add_task("", total=None, counts="", waiting="starting")

    def draw(now: Reading) -> None:
        described = now.group + (f" rev {now.revision}" if now.revision is not None else "")
        counts = f"healthy {now.healthy}/{now.size}"
        if now.total:
            counts = f"replaced {now.replaced}/{now.total}  {counts}"
            completed, total = now.replaced, now.total
        else:
            completed, total = now.healthy, max(now.size, 1)
        progress.update(
            task,
            description=described,
            completed=completed,
            total=total,
            counts=counts,
            waiting=now.failed or now.waiting or ("converged" if now.done else ""),
        )

    with progress:
        yield draw


def revision_said(history: Callable[[], dict[str, Any]]) -> Callable[[int], str]:
    """`moved_on` for `follow`: what revision N of the group's history says (its change and
    who made it), or nothing from a runtime that keeps no history."""

    def said(number: int) -> str:
        try:
            found = history()
        except Unsupported:
            return ""
        for revision in param(found, "Revisions") or []:
            if isinstance(revision, dict) and param(revision, "Revision") == number:
                return f"{param(revision, 'Change')} by {param(revision, 'Who')}"
        return ""

    return said
