"""Tests for actors.scheduler."""

from __future__ import annotations

import functools
import math
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


# A huge duration in a spec (999999999999h, 2^63 ns, 1e308 s) reached Condition.wait as it
# was and killed the shared thread with OverflowError; every timer of the runtime stopped.
@pytest.mark.parametrize("delay", [999999999999 * 3600.0, 9223372036.854775807, 1e308, math.inf])
def test_a_huge_delay_does_not_kill_the_thread(scheduler: Scheduler, delay: float) -> None:
    done = threading.Event()

    scheduler.call_later(delay, lambda: None)
    scheduler.call_later(0.01, done.set)

    assert done.wait(10)
    assert scheduler.alive


def test_a_huge_delay_that_comes_first_still_lets_later_timers_run(scheduler: Scheduler) -> None:
    """The thread waits on the huge timer first; a sooner one scheduled after must wake it."""
    done = threading.Event()
    scheduler.call_later(1e308, lambda: None)
    wait_for(lambda: scheduler.pending() == 1)

    scheduler.call_later(0.0, done.set)

    assert done.wait(10)


def test_a_nan_delay_is_refused(scheduler: Scheduler) -> None:
    with pytest.raises(ValueError, match="nan"):
        scheduler.call_later(math.nan, lambda: None)
    assert scheduler.pending() == 0


def test_a_callback_that_raises_anything_is_logged_with_its_name_and_the_next_runs(
    scheduler: Scheduler, caplog: pytest.LogCaptureFixture
) -> None:
    """Not only Exception: SystemExit in a thread ends that thread without a word."""
    done = threading.Event()

    def exits() -> None:
        raise SystemExit(3)

    def fails() -> None:
        raise RuntimeError("boom")

    with caplog.at_level("ERROR", logger="actors.scheduler"):
        scheduler.call_later(0.0, exits)
        scheduler.call_later(0.0, fails)
        scheduler.call_later(0.01, done.set)
        assert done.wait(5)

    failures = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(failures) == 2
    assert "exits" in failures[0].getMessage() and failures[0].exc_info is not None
    assert "fails" in failures[1].getMessage() and failures[1].exc_info is not None
    assert scheduler.alive


def test_a_tell_later_timer_says_what_it_tells_to_whom(scheduler: Scheduler) -> None:
    """So that a failed timer's log line names the message and the actor, not `deliver`."""
    ref = Collector.start()

    handle = tell_later(ref, 60.0, ("tick", 7), scheduler)

    assert "('tick', 7)" in repr(handle)
    assert "Collector" in repr(handle)
    handle.cancel()


def test_a_shut_down_scheduler_is_not_alive() -> None:
    scheduler = Scheduler(name="short-lived")
    assert scheduler.alive

    scheduler.shutdown()

    assert not scheduler.alive


def test_the_default_scheduler_is_replaced_once_shut_down() -> None:
    """A runtime that lost its scheduler says so (it holds the old one); new users get a new one."""
    first = default_scheduler()
    first.shutdown()

    second = default_scheduler()

    assert second is not first and second.alive
    done = threading.Event()
    second.call_later(0.0, done.set)
    assert done.wait(5)
