"""The activity history from events to a real file store: each action with its cause (the
finding that caused a replacement), bounded per group, kept across instances of the log, and
written only while leading."""

from __future__ import annotations

from pathlib import Path

from support import wait_for

from infrakit import events
from infrakit.activity import ActivityLog
from infrakit.events import Event
from infrakit.manager.store.file import FileStore


def event(
    kind: str, message: str, lid: str | None = "web-3", instance: str | None = None, **data: str
) -> Event:
    return Event("web", kind, message, logical_id=lid, instance=instance, data=dict(data))


def test_a_replacement_is_kept_with_the_finding_that_caused_it(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "global.config")
    log = ActivityLog(store, leading=lambda: True, flush_every=0.01)
    log.record(event(events.UNHEALTHY, "i-1 unhealthy for 3 checks", instance="i-1"))
    log.record(event(events.HEALTHY, "i-9 is healthy", instance="i-9"))  # not an action
    log.record(
        event(events.REPLACING, "replacing i-1 (unhealthy)", instance="i-1", Reason="unhealthy")
    )
    log.record(event(events.DESTROYED, "destroyed i-1", instance="i-1"))
    log.record(event(events.PROVISIONED, "provisioned i-2", instance="i-2"))
    log.stop()

    again = ActivityLog(store, leading=lambda: True)
    try:
        found = [(e["What"], e["Cause"]) for e in again.history("web")]
    finally:
        again.stop()
    assert found == [
        ("replacing web-3", "i-1 unhealthy for 3 checks"),
        ("destroyed i-1", "i-1 unhealthy for 3 checks"),
        ("provisioned i-2 as web-3", "i-1 unhealthy for 3 checks"),
    ]


def test_the_history_keeps_the_newest_entries_of_each_group(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "global.config")
    log = ActivityLog(store, leading=lambda: True, per_group=3, flush_every=0.01)
    for n in range(5):
        log.record(event(events.ADOPTED, f"adopted i-{n}", lid=f"web-{n}", instance=f"i-{n}"))
    wait_for(lambda: len(store.load_activity("web")) == 3, what="the history written")
    assert [e["Instance"] for e in log.history("web")] == ["i-2", "i-3", "i-4"]
    assert [e["Instance"] for e in log.history("web", limit=1)] == ["i-4"]
    log.stop()


def test_a_follower_records_nothing(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "global.config")
    log = ActivityLog(store, leading=lambda: False, flush_every=0.01)
    log.record(event(events.COMMITTED, "committed: Managing 3 instances", lid=None))
    log.stop()
    assert store.load_activity("web") == []
    assert not (tmp_path / "global.activity.json").exists()


def test_a_destroyed_group_leaves_no_history_and_a_new_one_starts_afresh(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "global.config")
    log = ActivityLog(store, leading=lambda: True, flush_every=0.01)
    log.record(event(events.ADOPTED, "adopted i-1", instance="i-1"))
    wait_for(lambda: store.load_activity("web"), what="the history written")
    log.record(event(events.GROUP_DESTROYED, "destroyed: every instance is gone", lid=None))
    wait_for(lambda: not store.load_activity("web"), what="the history removed")
    assert log.history("web") == []
    log.record(event(events.COMMITTED, "committed: Managing 1 instances", lid=None))
    log.stop()
    assert [e["What"] for e in store.load_activity("web")] == ["committed: Managing 1 instances"]


def test_an_abandoned_drain_is_kept_with_its_reason(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "global.config")
    log = ActivityLog(store, leading=lambda: True, flush_every=0.01)
    said = "drain of i-1 abandoned after 5m (Update.DrainTimeout); destroying it anyway"
    log.record(event(events.DRAIN_ABANDONED, said, instance="i-1"))
    log.stop()
    assert [(e["What"], e["Cause"]) for e in store.load_activity("web")] == [
        ("destroyed i-1 undrained", said)
    ]
