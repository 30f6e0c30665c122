"""Timers for actors: one thread and one heap serve any number of pending timers."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any

import pykka

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Handle", "Scheduler", "default_scheduler", "tell_later"]

logger = logging.getLogger("actors.scheduler")

# The longest the thread waits in one go: Condition.wait raises OverflowError past what the
# platform's clock can hold, and a timer due in centuries is as good as one never due.
_LONGEST_WAIT = 3600.0


class Handle:
    """A pending timer; cancel it to keep its callback from running."""

    __slots__ = ("_callback", "_cancelled", "_queued", "_scheduler", "when")

    def __init__(self, when: float, callback: Callable[[], None], scheduler: Scheduler) -> None:
        self.when = when
        self._callback = callback
        self._cancelled = False
        self._queued = True
        self._scheduler = scheduler

    @property
    def cancelled(self) -> bool:
        """Whether `cancel()` has been called."""
        return self._cancelled

    def cancel(self) -> None:
        """Keep the callback from running, if it has not run yet. Idempotent."""
        self._scheduler._cancel(self)

    def _run(self) -> None:
        if not self._cancelled:
            self._callback()

    def __repr__(self) -> str:
        return f"<Handle due in {self.when - time.monotonic():.3g}s: {self._callback!r}>"


class Scheduler:
    """Runs callbacks after a delay, all on one daemon thread.

    A heap holds the timers, so thousands of actors can each have a timer pending
    without a thread apiece. Callbacks must be quick (for example, tell an actor a
    message). Nothing a callback does or a delay says stops the thread: a failure is
    logged with its traceback and the next timer runs.
    """

    def __init__(self, name: str = "actors-scheduler") -> None:
        self._heap: list[tuple[float, int, Handle]] = []
        self._sequence = itertools.count()
        self._cancelled = 0
        self._condition = threading.Condition()
        self._shut_down = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Handle:
        """Run `callback` on the scheduler thread after `delay` seconds.

        Callbacks due at the same time run in the order they were scheduled. A negative
        delay means now; an infinite one never (the timer stays pending); NaN is refused.
        """
        if math.isnan(delay):
            raise ValueError(f"a timer's delay must be a number of seconds, not {delay}")
        when = time.monotonic() + max(delay, 0.0)
        handle = Handle(when, callback, self)
        with self._condition:
            if self._shut_down:
                msg = "scheduler has been shut down"
                raise RuntimeError(msg)
            heapq.heappush(self._heap, (when, next(self._sequence), handle))
            if self._heap[0][2] is handle:
                self._condition.notify()
        return handle

    def shutdown(self) -> None:
        """Stop the scheduler thread; pending callbacks never run. Idempotent."""
        with self._condition:
            self._shut_down = True
            self._heap.clear()
            self._cancelled = 0
            self._condition.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    @property
    def name(self) -> str:
        """The name of its thread."""
        return self._thread.name

    @property
    def alive(self) -> bool:
        """Whether timers still run: not shut down, and the thread lives."""
        return not self._shut_down and self._thread.is_alive()

    def pending(self) -> int:
        """Number of timers not yet run nor cancelled (for tests and metrics)."""
        with self._condition:
            return len(self._heap) - self._cancelled

    def _cancel(self, handle: Handle) -> None:
        # Cancelled timers stay in the heap until due; compact it when they dominate,
        # so that cancelling many long timers does not leak memory.
        with self._condition:
            if handle._cancelled:
                return
            handle._cancelled = True
            if not handle._queued:
                return
            self._cancelled += 1
            if self._cancelled > 1024 and self._cancelled > len(self._heap) // 2:
                kept = []
                for entry in self._heap:
                    if entry[2].cancelled:
                        entry[2]._queued = False
                    else:
                        kept.append(entry)
                self._heap = kept
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _next_due(self) -> Handle | None:
        with self._condition:
            while not self._shut_down:
                if not self._heap:
                    self._condition.wait()
                    continue
                when, _, handle = self._heap[0]
                if handle.cancelled:
                    heapq.heappop(self._heap)
                    handle._queued = False
                    self._cancelled -= 1
                    continue
                remaining = when - time.monotonic()
                if remaining > 0:
                    self._condition.wait(min(remaining, _LONGEST_WAIT))
                    continue
                heapq.heappop(self._heap)
                handle._queued = False
                return handle
            return None

    def _run(self) -> None:
        # BaseException too: SystemExit raised in a thread ends it without a word.
        while True:
            try:
                handle = self._next_due()
            except BaseException:
                logger.exception("%s: the timer loop failed; it goes on", self._thread.name)
                time.sleep(0.1)  # a fault that repeats must not spin
                continue
            if handle is None:
                return
            try:
                handle._run()
            except BaseException:
                logger.exception("scheduled callback %r failed", handle._callback)


_default: Scheduler | None = None
_default_lock = threading.Lock()


def default_scheduler() -> Scheduler:
    """Return the process-wide scheduler, creating it on first use, and anew once the last
    one is shut down (whoever held the old one lost its timers and can tell by `alive`)."""
    global _default
    with _default_lock:
        if _default is None or not _default.alive:
            _default = Scheduler()
        return _default


def tell_later(
    ref: pykka.ActorRef[Any],
    delay: float,
    message: Any,
    scheduler: Scheduler | None = None,
) -> Handle:
    """Tell `message` to the actor behind `ref` after `delay` seconds.

    If the actor has stopped by then, the message is dropped silently: an actor that
    is gone has no use for its timers.
    """

    return (scheduler or default_scheduler()).call_later(delay, _Tell(ref, message))


class _Tell:
    """A timer's callback that tells an actor a message; its repr says which, for the logs."""

    __slots__ = ("message", "ref")

    def __init__(self, ref: pykka.ActorRef[Any], message: Any) -> None:
        self.ref = ref
        self.message = message

    def __call__(self) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            self.ref.tell(self.message)

    def __repr__(self) -> str:
        return f"tell {self.message!r} to {self.ref}"
