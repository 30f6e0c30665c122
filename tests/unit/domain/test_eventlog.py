"""The runtime's recent events (infrakit/eventlog.py): numbered in order, bounded, and honest
about what it no longer holds."""

from __future__ import annotations

import time

from infrakit.eventlog import EventLog
from infrakit.events import Event


def test_events_are_numbered_in_order_and_handed_on_in_that_order() -> None:
    log = EventLog()
    heard: list[int] = []
    log.subscribe(lambda seq, _event: heard.append(seq))
    for n in range(5):
        log.record(Event("g", "provisioned", f"made {n}"))
    replay = log.recent(60)
    seqs = [e["seq"] for e in replay.events]
    assert seqs == heard == list(range(seqs[0], seqs[0] + 5))
    assert [e["message"] for e in log.recent(60, after=seqs[2]).events] == ["made 3", "made 4"]
    assert not replay.truncated


def test_only_the_last_events_are_kept_and_the_replay_says_so() -> None:
    log = EventLog(capacity=3)
    for n in range(5):
        log.record(Event("a" if n % 2 else "b", "provisioned", f"made {n}"))
    replay = log.recent(60)
    assert [e["message"] for e in replay.events] == ["made 2", "made 3", "made 4"]
    assert replay.truncated and replay.to_json()["Capacity"] == 3
    assert [e["message"] for e in log.recent(60, group="a").events] == ["made 3"]


def test_events_older_than_asked_for_or_kept_are_left_out() -> None:
    log = EventLog(max_age=60)
    log.record(Event("g", "provisioned", "ancient", time=time.time() - 120))
    log.record(Event("g", "provisioned", "older", time=time.time() - 30))
    log.record(Event("g", "provisioned", "new"))
    assert [e["message"] for e in log.recent(10).events] == ["new"]
    assert not log.recent(10).truncated  # what was dropped is older than asked for
    wide = log.recent(600)
    assert [e["message"] for e in wide.events] == ["older", "new"] and wide.truncated
