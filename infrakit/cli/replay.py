"""`infrakit events --since`: the runtime's recent events (`Events.Recent` on its Group API),
merged with the live stream by sequence number, so that each event is printed once and none
the buffer still holds is missed between the replay and the first live event."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from infrakit.cli.client import Manager, connect_manager
from infrakit.duration import MAX_DURATION, format_duration, parse_duration


def parse_since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    """`--since`'s DURATION in seconds (Go's form, e.g. `5m`, within a week), or None."""
    if value is None:
        return None
    try:
        return parse_duration(value, maximum=MAX_DURATION)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


class Replay:
    """The replay of one `infrakit events`: what it printed last (by sequence number), and the
    runtime to ask again once, for what happened between its answer and the first live event
    (a subscription takes a moment to reach the publisher)."""

    def __init__(self, group_id: str | None) -> None:
        self.group_id = group_id
        self.last = 0
        self._manager: Manager | None = None

    def fetch(
        self, endpoint: str, curve_key: Path | None, server_key: Path | None, since: float
    ) -> list[dict[str, Any]]:
        """The events of the last `since` seconds, oldest first; says on stderr when the
        buffer no longer holds all of them, or when no runtime can replay."""
        try:
            self._manager = connect_manager(endpoint, curve_key, server_key)
        except click.ClickException as error:
            click.echo(f"no replay: {error.message}; following live events", err=True)
            return []
        answer = self._ask(since, 0)
        if answer.get("Truncated"):
            oldest = answer.get("Oldest")
            back = time.strftime("%H:%M:%S", time.localtime(oldest)) if oldest else "now"
            max_age = answer.get("MaxAge")
            kept = format_duration(max_age) if isinstance(max_age, int | float) else "?"
            click.echo(
                f"the runtime keeps only its last {answer.get('Capacity')} events, for at most"
                f" {kept}: the replay goes back to {back} only",
                err=True,
            )
        return self._taken(answer)

    def admit(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """What to print for a live `event`: nothing if printed already; else, the first time,
        what the replay missed before it, then the event itself."""
        seq = event.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            return [event]  # an older runtime: no numbers
        if seq <= self.last:
            return []
        missed: list[dict[str, Any]] = []
        manager, self._manager = self._manager, None
        if manager is not None:
            with manager:
                if seq > self.last + 1:
                    answer = self._ask(MAX_DURATION, self.last, manager)
                    missed = [e for e in self._taken(answer) if e.get("seq", seq) < seq]
        self.last = seq
        return [*missed, event]

    def close(self) -> None:
        manager, self._manager = self._manager, None
        if manager is not None:
            manager.close()

    def _ask(self, since: float, after: int, manager: Manager | None = None) -> dict[str, Any]:
        asked = manager or self._manager
        if asked is None:
            return {}
        try:
            return asked.ask(lambda group: group.recent_events(since, self.group_id, after))
        except click.ClickException as error:  # e.g. an older runtime: method not found
            click.echo(f"no replay: {error.message}", err=True)
            return {}

    def _taken(self, answer: dict[str, Any]) -> list[dict[str, Any]]:
        """The answer's events, each once, recording the last one's number."""
        taken = []
        for event in answer.get("Events") or []:
            seq = event.get("seq") if isinstance(event, dict) else None
            if isinstance(seq, int) and seq > self.last:
                taken.append(event)
                self.last = seq
        return taken
