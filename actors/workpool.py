"""Blocking work run beside the actors, with bounds: at most N jobs in the whole pool, and at
most K at once per lane (one lane per group, say).

An actor must not block its thread (or a pooled worker) on slow work such as a health check
that runs a shell command: it hands the work to a `Lane` and hears the result as a message.
Jobs beyond a lane's bound wait in the lane, in order, so that one busy lane cannot fill the
pool while another waits; a job that hangs holds one place of its lane and of the pool, and
nothing else.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Lane", "Outcome", "WorkPool"]

logger = logging.getLogger("actors.workpool")

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What a job came to: its value, or the exception it raised."""

    value: T | None = None
    error: BaseException | None = None


class WorkPool:
    """At most `workers` jobs run at once, each on a thread of the pool (started on demand)."""

    def __init__(self, workers: int, name: str = "work") -> None:
        if workers < 1:
            raise ValueError(f"a work pool needs at least one worker, not {workers}")
        self.workers = workers
        self.name = name
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)

    def lane(self, limit: int) -> Lane:
        """A lane of this pool that runs at most `limit` of its jobs at once."""
        return Lane(self, limit)

    def shutdown(self) -> None:
        """Run no more jobs; those running finish on their own (nobody waits for them)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _run(self, job: Callable[[], None]) -> bool:
        try:
            self._executor.submit(job)
        except RuntimeError:  # shut down
            return False
        return True


class Lane:
    """Runs jobs on its pool, at most `limit` at once, the rest in the order submitted."""

    def __init__(self, pool: WorkPool, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a lane needs a limit of at least one, not {limit}")
        self._pool = pool
        self._limit = limit
        self._lock = threading.Lock()
        self._running = 0
        self._waiting: collections.deque[Callable[[], None]] = collections.deque()

    @property
    def running(self) -> int:
        """How many of this lane's jobs run now."""
        return self._running

    def set_limit(self, limit: int) -> None:
        """Change the bound; jobs waiting start if the new bound allows."""
        if limit < 1:
            raise ValueError(f"a lane needs a limit of at least one, not {limit}")
        with self._lock:
            self._limit = limit
        self._start_waiting()

    def submit(self, work: Callable[[], T], done: Callable[[Outcome[T]], None]) -> None:
        """Run `work()` when the lane has room, then `done(outcome)` on the same thread.

        `done` must return quickly (tell an actor); an exception from it is logged and the
        lane goes on.
        """

        def job() -> None:
            try:
                outcome: Outcome[Any] = Outcome(value=work())
            except BaseException as error:  # reported to `done`, never lost
                outcome = Outcome(error=error)
            try:
                done(outcome)
            except BaseException:
                logger.exception("%s: a job's callback failed; the lane goes on", self._pool.name)
            finally:
                with self._lock:
                    self._running -= 1
                self._start_waiting()

        with self._lock:
            self._waiting.append(job)
        self._start_waiting()

    def _start_waiting(self) -> None:
        while True:
            with self._lock:
                if not self._waiting or self._running >= self._limit:
                    return
                job = self._waiting.popleft()
                self._running += 1
            if not self._pool._run(job):
                with self._lock:
                    self._running -= 1
                    self._waiting.clear()
                return
