"""A circuit breaker that stops many actors from retrying a failing dependency at once."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Literal

from actors.backoff import Backoff

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["CircuitBreaker", "State"]

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """A thread-safe circuit breaker, shared by the actors that use one dependency.

    Closed, it lets every call through. After `threshold` consecutive failures it opens
    and refuses calls for a cool-down taken from `backoff`. When the cool-down has passed
    it is half-open and lets exactly one caller try: a success closes it, a failure opens
    it again with the next, longer cool-down. If that one caller never reports back, another
    caller may try once the same cool-down has passed again.

    `on_change(state, message)` is called on every transition, outside the breaker's lock.
    """

    def __init__(
        self,
        threshold: int = 5,
        backoff: Backoff = Backoff(initial=2.0, maximum=60.0),  # noqa: B008 (frozen)
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, str], None] | None = None,
    ) -> None:
        if threshold < 1:
            msg = f"threshold must be at least 1, not {threshold}"
            raise ValueError(msg)
        self.threshold = threshold
        self.backoff = backoff
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state: State = "closed"
        self._failures = 0
        self._openings = 0
        self._cool_down = 0.0
        self._retry_at = 0.0
        self._last_error: str | None = None

    @property
    def state(self) -> State:
        """The current state. An open breaker turns half-open on the next `allow()`."""
        with self._lock:
            return self._state

    @property
    def last_error(self) -> str | None:
        """The error of the most recent failure, or None if none has been recorded."""
        with self._lock:
            return self._last_error

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a caller try again; 0.0 if it would now."""
        with self._lock:
            if self._state == "closed":
                return 0.0
            return max(0.0, self._retry_at - self._clock())

    def allow(self) -> bool:
        """Whether the caller may try the dependency now.

        A caller that gets True must report the outcome with `record_success()` or
        `record_failure()`.
        """
        with self._lock:
            if self._state == "closed":
                return True
            now = self._clock()
            if now < self._retry_at:
                return False
            # One trial at a time: the next is allowed only after another cool-down.
            self._retry_at = now + self._cool_down
            if self._state == "half-open":
                return True
            self._state = "half-open"
            message = "half-open; letting one try through"
        self._notify("half-open", message)
        return True

    def record_success(self) -> None:
        """Report a successful call: the breaker closes and forgets past failures."""
        with self._lock:
            self._failures = 0
            if self._state == "closed":
                return
            self._state = "closed"
            self._openings = 0
            message = "closed after a successful try"
        self._notify("closed", message)

    def record_failure(self, error: str) -> None:
        """Report a failed call with a short description of the error."""
        with self._lock:
            self._last_error = error
            self._failures += 1
            if self._state == "open":
                return
            if self._state == "closed":
                if self._failures < self.threshold:
                    return
                reason = f"open after {self._failures} consecutive failures"
            else:
                reason = "open again after a failed try"
            self._cool_down = self.backoff.delay(self._openings)
            self._openings += 1
            self._retry_at = self._clock() + self._cool_down
            self._state = "open"
            message = f"{reason} (last: {error}); next try in {self._cool_down:.1f}s"
        self._notify("open", message)

    def _notify(self, state: State, message: str) -> None:
        if self._on_change is not None:
            self._on_change(state, message)
