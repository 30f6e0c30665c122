"""Exponential backoff with jitter, used for restarts and circuit breaker cool-downs."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """An exponential backoff policy: how long to wait before attempt number `attempt`.

    Jitter spreads out retries of many actors that failed at the same moment, so that they
    do not all hammer the same resource again in lockstep.
    """

    initial: float = 0.1
    """Delay in seconds before the first retry (attempt 0)."""

    maximum: float = 30.0
    """Upper bound in seconds for any delay, jitter included."""

    multiplier: float = 2.0
    """Factor by which the delay grows with each attempt."""

    jitter: float = 0.2
    """Random spread as a fraction of the delay: 0.2 means +/- 20%."""

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < 0:
            msg = f"initial and maximum must not be negative: {self!r}"
            raise ValueError(msg)
        if self.multiplier < 1:
            msg = f"multiplier must be at least 1: {self!r}"
            raise ValueError(msg)
        if not 0 <= self.jitter <= 1:
            msg = f"jitter must be between 0 and 1: {self!r}"
            raise ValueError(msg)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Return the delay in seconds before retry number `attempt` (counting from 0).

        Attempt 0 waits about `initial`; each further attempt multiplies the delay by
        `multiplier` until it reaches `maximum`. The result is never negative and never
        exceeds `maximum`.
        """
        attempt = max(attempt, 0)
        try:
            base = self.initial * self.multiplier**attempt
        except OverflowError:
            base = self.maximum
        base = min(base, self.maximum)
        if self.jitter:
            spread = (rng or random).uniform(-self.jitter, self.jitter)
            base *= 1.0 + spread
        return max(0.0, min(base, self.maximum))
