"""The instance plugins' polling watcher keeps serving whatever a subscriber does."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from support import wait_for

from infrakit.plugins.instance._watch import PollingWatcher


def test_a_subscriber_that_raises_anything_is_logged_and_the_watch_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SystemExit too: raised on a thread it ended the watcher without a word, and with it
    every group's news of vanished instances."""
    watched = tmp_path / "watched"
    watched.mkdir()
    watcher = PollingWatcher(lambda: sorted(p.name for p in watched.iterdir()), 0.02, "test-watch")
    seen: list[int] = []
    changed = threading.Event()

    def exits() -> None:
        raise SystemExit("a subscriber gave up")

    def counts() -> None:
        seen.append(len(list(watched.iterdir())))
        changed.set()

    with caplog.at_level("ERROR"):
        watcher.subscribe(exits)
        watcher.subscribe(counts)
        for n in range(1, 4):
            changed.clear()
            (watched / f"instance-{n}").write_text("{}")
            wait_for(lambda n=n: n in seen, timeout=10, what=f"news of instance {n}")

    assert watcher.running
    failures = [r for r in caplog.records if "exits" in r.getMessage()]
    assert failures and all(r.levelname == "ERROR" and r.exc_info for r in failures)
    watcher.close()


def test_a_snapshot_that_raises_anything_is_logged_and_polling_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []
    changed = threading.Event()

    def snapshot() -> object:
        calls.append(1)
        if len(calls) == 2:  # the first look after the baseline taken on subscribe
            raise SystemExit("the look gave up")
        return len(calls)

    watcher = PollingWatcher(snapshot, 0.02, "test-snapshot")
    with caplog.at_level("ERROR"):
        watcher.subscribe(changed.set)
        assert changed.wait(10), "the watcher stopped polling after a failed look"
    assert watcher.running
    assert any(r.exc_info and "polling failed" in r.getMessage() for r in caplog.records)
    watcher.close()
