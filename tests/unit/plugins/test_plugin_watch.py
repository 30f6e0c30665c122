"""The instance plugins' watchers: the polling one keeps serving whatever a subscriber does,
and the file plugin names what appeared and vanished (from inotify, or by polling)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from support import wait_for

from infrakit.plugins.instance._watch import PollingWatcher
from infrakit.plugins.instance.file import FileInstancePlugin
from infrakit.spi.instance import Changes, Spec


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


@pytest.mark.parametrize("notices", [True, False], ids=["inotify", "polling"])
def test_the_file_plugin_names_the_instances_that_appeared_and_vanished(
    tmp_path: Path, notices: bool
) -> None:
    plugin = FileInstancePlugin(tmp_path / "files")
    if not notices:
        plugin._notices = None  # as where the kernel gives no notices
    elif plugin._notices is None:
        pytest.fail("this Linux machine should give inotify notices")
    heard: list[Changes] = []
    lock = threading.Lock()

    def changed(changes: Changes) -> None:
        with lock:
            heard.append(changes)

    def appeared() -> set[str]:
        with lock:
            return {name for c in heard for name in c.appeared}

    def gone() -> set[str]:
        with lock:
            return {name for c in heard for name in c.gone}

    unsubscribe = plugin.watch_changes(changed)
    try:
        first = plugin.provision(Spec(properties={}, tags={"infrakit.group": "g"}))
        second = plugin.provision(Spec(properties={}, tags={"infrakit.group": "g"}))
        wait_for(lambda: {first, second} <= appeared(), what="both new instances named")
        (plugin.directory / first).unlink()
        wait_for(lambda: first in gone(), what="the deleted instance named as gone")
        (plugin.directory / ".tmp-leftover").write_text("")  # a temp file is no instance
        plugin.destroy(second)
        wait_for(lambda: second in gone(), what="the destroyed instance named as gone")
        assert not any(name.startswith(".") for name in appeared() | gone())
    finally:
        unsubscribe()
        plugin.close()
