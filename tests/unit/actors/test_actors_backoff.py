"""Tests for actors.backoff."""

from __future__ import annotations

import random

import pytest

from actors import Backoff


def test_delay_grows_by_multiplier_and_is_capped() -> None:
    backoff = Backoff(initial=0.1, maximum=1.0, multiplier=2.0, jitter=0.0)

    delays = [backoff.delay(attempt) for attempt in range(6)]

    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_jitter_stays_within_bounds_and_below_maximum() -> None:
    backoff = Backoff(initial=1.0, maximum=3.0, multiplier=2.0, jitter=0.2)
    rng = random.Random(42)

    first = [backoff.delay(0, rng) for _ in range(200)]
    capped = [backoff.delay(5, rng) for _ in range(200)]

    assert all(0.8 <= d <= 1.2 for d in first)
    assert len(set(first)) > 1
    assert all(3.0 * 0.8 <= d <= 3.0 for d in capped)


def test_huge_and_negative_attempts_are_safe() -> None:
    backoff = Backoff(initial=0.5, maximum=10.0, jitter=0.0)

    assert backoff.delay(100_000) == 10.0
    assert backoff.delay(-3) == 0.5


def test_zero_initial_never_negative() -> None:
    backoff = Backoff(initial=0.0, maximum=1.0, jitter=1.0)

    assert all(backoff.delay(n) >= 0.0 for n in range(20))


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": -1.0}, {"maximum": -1.0}, {"multiplier": 0.5}, {"jitter": 1.5}],
)
def test_invalid_settings_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)
