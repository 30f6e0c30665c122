"""Tests for actors.circuit, driven by a fake clock."""

from __future__ import annotations

import threading

import pytest

from actors import Backoff, CircuitBreaker


class FakeClock:
    """A clock that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def changes() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def breaker(clock: FakeClock, changes: list[tuple[str, str]]) -> CircuitBreaker:
    return CircuitBreaker(
        threshold=3,
        backoff=Backoff(initial=2.0, maximum=5.0, jitter=0.0),
        clock=clock,
        on_change=lambda state, message: changes.append((state, message)),
    )


def test_closed_breaker_allows_and_opens_after_threshold(
    breaker: CircuitBreaker, changes: list[tuple[str, str]]
) -> None:
    assert breaker.state == "closed"
    assert breaker.allow()

    breaker.record_failure("disk full")
    breaker.record_failure("disk full")
    assert breaker.state == "closed"
    assert breaker.allow()

    breaker.record_failure("disk full")

    assert breaker.state == "open"
    assert not breaker.allow()
    assert breaker.last_error == "disk full"
    assert breaker.retry_in() == pytest.approx(2.0)
    assert changes == [
        ("open", "open after 3 consecutive failures (last: disk full); next try in 2.0s")
    ]


def test_success_resets_the_consecutive_count(breaker: CircuitBreaker) -> None:
    breaker.record_failure("a")
    breaker.record_failure("b")
    breaker.record_success()
    breaker.record_failure("c")
    breaker.record_failure("d")

    assert breaker.state == "closed"


def test_half_open_lets_exactly_one_caller_through(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    for _ in range(3):
        breaker.record_failure("x")

    clock.now += 1.9
    assert not breaker.allow()
    assert breaker.retry_in() == pytest.approx(0.1)
    clock.now += 0.1

    assert breaker.allow()
    assert breaker.state == "half-open"
    assert not breaker.allow()
    assert not breaker.allow()


def test_half_open_allows_one_caller_across_threads(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    for _ in range(3):
        breaker.record_failure("x")
    clock.now += 2.0
    results: list[bool] = []
    lock = threading.Lock()

    def caller() -> None:
        allowed = breaker.allow()
        with lock:
            results.append(allowed)

    threads = [threading.Thread(target=caller) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results.count(True) == 1


def test_success_while_half_open_closes(
    breaker: CircuitBreaker, clock: FakeClock, changes: list[tuple[str, str]]
) -> None:
    for _ in range(3):
        breaker.record_failure("x")
    clock.now += 2.0
    assert breaker.allow()

    breaker.record_success()

    assert breaker.state == "closed"
    assert breaker.allow()
    assert [state for state, _ in changes] == ["open", "half-open", "closed"]


def test_failure_while_half_open_reopens_with_longer_cool_down(
    breaker: CircuitBreaker, clock: FakeClock, changes: list[tuple[str, str]]
) -> None:
    for _ in range(3):
        breaker.record_failure("x")
    clock.now += 2.0
    assert breaker.allow()

    breaker.record_failure("still down")

    assert breaker.state == "open"
    assert breaker.retry_in() == pytest.approx(4.0)
    assert changes[-1] == (
        "open",
        "open again after a failed try (last: still down); next try in 4.0s",
    )

    clock.now += 4.0
    assert breaker.allow()
    breaker.record_failure("still down")
    assert breaker.retry_in() == pytest.approx(5.0)  # capped by the backoff's maximum


def test_cool_down_restarts_from_initial_after_closing(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    for _ in range(3):
        breaker.record_failure("x")
    clock.now += 2.0
    breaker.allow()
    breaker.record_failure("x")
    clock.now += 4.0
    breaker.allow()
    breaker.record_success()

    for _ in range(3):
        breaker.record_failure("x")

    assert breaker.retry_in() == pytest.approx(2.0)


def test_lost_trial_is_retried_after_another_cool_down(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    for _ in range(3):
        breaker.record_failure("x")
    clock.now += 2.0
    assert breaker.allow()  # this caller never reports back

    clock.now += 2.0

    assert breaker.allow()
    assert not breaker.allow()


def test_failures_reported_while_open_only_update_last_error(
    breaker: CircuitBreaker, changes: list[tuple[str, str]]
) -> None:
    for _ in range(3):
        breaker.record_failure("x")

    breaker.record_failure("late")

    assert breaker.last_error == "late"
    assert len(changes) == 1
    assert breaker.retry_in() == pytest.approx(2.0)


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(threshold=0)
