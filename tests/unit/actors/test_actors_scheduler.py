"""Tests for actors.scheduler."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from support import wait_for

from actors import Scheduler, default_scheduler, tell_later


@pytest.fixture
def scheduler() -> Iterator[Scheduler]:
    scheduler = Scheduler(name="test-scheduler")
    yield scheduler
    scheduler.shutdown()


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


class Collector(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        self.received.append(message)

    def messages(self) -> list[Any]:
        return list(self.received)


def test_callbacks_run_in_order_of_due_time(scheduler: Scheduler) -> None:
    ran: list[str] = []
    done = threading.Event()

    scheduler.call_later(0.06, lambda: ran.append("third"))
    scheduler.call_later(0.02, lambda: ran.append("first"))
    scheduler.call_later(0.04, lambda: ran.append("second"))
    scheduler.call_later(0.08, done.set)

    assert done.wait(5)
    assert ran == ["first", "second", "third"]


def test_callbacks_due_at_once_run_in_scheduling_order(scheduler: Scheduler) -> None:
    ran: list[int] = []
    for n in range(50):
        scheduler.call_later(0.0, functools.partial(ran.append, n))

    wait_for(lambda: len(ran) == 50)
    assert ran == list(range(50))


def test_cancelled_callback_does_not_run(scheduler: Scheduler) -> None:
    ran: list[str] = []
    done = threading.Event()

    handle = scheduler.call_later(0.01, lambda: ran.append("cancelled"))
    scheduler.call_later(0.02, lambda: ran.append("kept"))
    scheduler.call_later(0.03, done.set)
    handle.cancel()
    handle.cancel()

    assert done.wait(5)
    assert ran == ["kept"]
    assert handle.cancelled


def test_many_cancelled_timers_are_compacted(scheduler: Scheduler) -> None:
    handles = [scheduler.call_later(3600, lambda: None) for _ in range(5000)]
    kept = scheduler.call_later(3600, lambda: None)

    for handle in handles:
        handle.cancel()

    assert scheduler.pending() == 1
    assert len(scheduler._heap) < 5000
    kept.cancel()


def test_failing_callback_does_not_kill_the_thread(scheduler: Scheduler) -> None:
    done = threading.Event()

    def boom() -> None:
        raise RuntimeError("boom")

    scheduler.call_later(0.0, boom)
    scheduler.call_later(0.01, done.set)

    assert done.wait(5)


def test_shutdown_refuses_new_timers(scheduler: Scheduler) -> None:
    scheduler.shutdown()

    with pytest.raises(RuntimeError):
        scheduler.call_later(0.0, lambda: None)


def test_default_scheduler_is_shared() -> None:
    assert default_scheduler() is default_scheduler()


def test_tell_later_delivers_message(scheduler: Scheduler) -> None:
    ref = Collector.start()

    tell_later(ref, 0.01, "hello", scheduler)

    wait_for(lambda: ref.proxy().messages().get() == ["hello"])


def test_tell_later_to_a_dead_actor_is_ignored(scheduler: Scheduler) -> None:
    ref = Collector.start()
    ref.stop()
    done = threading.Event()

    tell_later(ref, 0.0, "too late", scheduler)
    scheduler.call_later(0.01, done.set)

    assert done.wait(5)
