"""Timers for actors: one thread and one heap serve any number of pending timers."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import pykka

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Handle", "Scheduler", "default_scheduler", "tell_later"]

logger = logging.getLogger("actors.scheduler")


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


class Scheduler:
    """Runs callbacks after a delay, all on one daemon thread.

    A heap holds the timers, so thousands of actors can each have a timer pending
    without a thread apiece. Callbacks must be quick (for example, tell an actor a
    message); an exception in one is logged and does not stop the scheduler.
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

        Callbacks due at the same time run in the order they were scheduled.
        """
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
                    self._condition.wait(remaining)
                    continue
                heapq.heappop(self._heap)
                handle._queued = False
                return handle
            return None

    def _run(self) -> None:
        while (handle := self._next_due()) is not None:
            try:
                handle._run()
            except Exception:
                logger.exception("scheduled callback %r failed", handle._callback)


_default: Scheduler | None = None
_default_lock = threading.Lock()


def default_scheduler() -> Scheduler:
    """Return the process-wide scheduler, creating it on first use."""
    global _default
    with _default_lock:
        if _default is None:
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

    def deliver() -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            ref.tell(message)

    return (scheduler or default_scheduler()).call_later(delay, deliver)
