"""One `terraform apply` at a time per directory, batching: every change that arrives while an
apply runs is served by the next one, together, so ten provisions make two applies, not ten.

A caller makes its change (writes or removes its file), then `request`s an apply and waits on
the batch it got: that batch's apply starts after the change, so it includes it. When nothing
has been applied for a while, the same thread runs an idle task (`terraform refresh`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from infrakit.spi.errors import PluginError

log = logging.getLogger(__name__)

T = TypeVar("T")

_JOIN_TIMEOUT = 5.0


class Batch(Generic[T]):
    """The changes one apply serves; `wait` for its result."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._result: T | None = None
        self._error: BaseException | None = None

    def finish(self, result: T | None, error: BaseException | None) -> None:
        self._result, self._error = result, error
        self._done.set()

    def wait(self, timeout: float) -> T:
        """The apply's result once it has run; PluginError if it has not in `timeout` seconds,
        if it raised, or if the applier closed first."""
        if not self._done.wait(timeout):
            raise PluginError(f"terraform apply did not finish within {timeout:.0f}s")
        if self._error is not None:
            raise PluginError(f"terraform apply failed: {self._error}") from self._error
        assert self._result is not None
        return self._result


class Applier(Generic[T]):
    """Runs `apply` on a daemon thread of its own, one call at a time, never with a lock held:
    each call serves every `request` made before it started and after the previous one did.
    `idle` runs on the same thread when neither has run for `idle_every` seconds (0: never).
    The thread starts with the first request, or `start`."""

    def __init__(
        self,
        apply: Callable[[], T],
        name: str,
        idle: Callable[[], object] | None = None,
        idle_every: float = 0.0,
    ) -> None:
        self._apply = apply
        self._idle = idle
        self._idle_every = idle_every if idle is not None else 0.0
        self._name = name
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: Batch[T] | None = None
        self._running = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self.applies = 0  # how many applies ran (for logs and tests)

    def request(self) -> Batch[T]:
        """The batch the next apply will serve (started now if none runs); PluginError once
        closed."""
        with self._lock:
            if self._closed:
                raise PluginError(f"{self._name} is closed")
            if self._pending is None:
                self._pending = Batch()
                self._wake.notify()
            self._start()
            return self._pending

    def start(self) -> None:
        """Start the thread now (for the idle task) if it has not started; nothing once closed."""
        with self._lock:
            if not self._closed:
                self._start()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()

    @property
    def busy(self) -> bool:
        """Whether an apply runs or waits to run."""
        with self._lock:
            return self._running or self._pending is not None

    def close(self) -> None:
        """Stop after the apply that runs, if any (it is not interrupted: it may be changing
        real resources); batches still waiting fail with PluginError."""
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, None
            thread = self._thread
            self._wake.notify()
        if pending is not None:
            pending.finish(None, RuntimeError(f"{self._name} closed before it ran"))
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN_TIMEOUT)

    def _loop(self) -> None:
        last = time.monotonic()
        while True:
            with self._lock:
                while self._pending is None and not self._closed:
                    if not self._idle_every:
                        self._wake.wait()
                        continue
                    left = last + self._idle_every - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(left)
                if self._closed:
                    return
                batch, self._pending = self._pending, None
                self._running = True
            last = self._run(batch)

    def _run(self, batch: Batch[T] | None) -> float:
        """Apply for `batch`, or run the idle task if there is none, with no lock held; return
        the time it ended."""
        try:
            if batch is not None:
                self._serve(batch)
            elif self._idle is not None:
                self._run_idle(self._idle)
        finally:
            with self._lock:
                self._running = False
                if batch is not None:
                    self.applies += 1
        return time.monotonic()

    def _serve(self, batch: Batch[T]) -> None:
        try:
            result = self._apply()
        except Exception as error:  # reported to every waiter; the thread carries on
            log.warning("%s: apply raised %s", self._name, error, exc_info=True)
            batch.finish(None, error)
        else:
            batch.finish(result, None)

    def _run_idle(self, idle: Callable[[], object]) -> None:
        try:
            idle()
        except Exception as error:  # logged; the thread carries on
            log.warning("%s: idle task raised %s", self._name, error, exc_info=True)
