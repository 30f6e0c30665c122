"""A polling watcher: one daemon thread that tells subscribers when a snapshot changes; and
`call_each`, which every watcher uses to tell its subscribers."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable

from infrakit.spi.instance import Unsubscribe

log = logging.getLogger(__name__)

_JOIN_TIMEOUT = 5.0


def call_each(callbacks: list[Callable[[], None]], name: str) -> None:
    """Call every subscriber's callback, with no lock held; one that raises anything is logged
    (SystemExit too: on the watcher's thread it would end the watch without a word)."""
    for callback in callbacks:
        try:
            callback()
        except BaseException:
            log.exception("%s: watch callback %r failed", name, callback)


class PollingWatcher:
    """Calls every subscriber when `snapshot()` returns something different from last time.

    The thread starts with the first subscriber and stops when the last one leaves (or on
    `close()`), so an idle plugin costs nothing. Callbacks run on the watcher thread with no
    lock held; one that raises is logged and ignored. A callback may run once more right
    after its unsubscribe returns (it only ever means "look again").
    """

    def __init__(self, snapshot: Callable[[], object], interval: float, name: str) -> None:
        if interval <= 0:
            raise ValueError(f"watch interval must be positive, not {interval}")
        self._snapshot = snapshot
        self._interval = interval
        self._name = name
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None

    def subscribe(self, callback: Callable[[], None]) -> Unsubscribe:
        """Register `callback`; start the thread if it is the first. Returns an unsubscribe."""
        with self._lock:
            token = next(self._ids)
            self._callbacks[token] = callback
            if self._thread is None:
                stop = threading.Event()
                baseline = self._snapshot()
                thread = threading.Thread(
                    target=self._run, args=(stop, baseline), name=self._name, daemon=True
                )
                self._thread, self._stop = thread, stop
                thread.start()

        def unsubscribe() -> None:
            with self._lock:
                self._callbacks.pop(token, None)
                if not self._callbacks:
                    self._stop_locked()

        return unsubscribe

    def close(self) -> None:
        """Drop every subscriber and stop the thread (waiting a little for it to end)."""
        with self._lock:
            self._callbacks.clear()
            thread = self._stop_locked()
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN_TIMEOUT)

    @property
    def running(self) -> bool:
        """Whether the watcher thread is currently running."""
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def _stop_locked(self) -> threading.Thread | None:
        thread, stop = self._thread, self._stop
        if stop is not None:
            stop.set()
        self._thread = self._stop = None
        return thread

    def _run(self, stop: threading.Event, previous: object) -> None:
        while not stop.wait(self._interval):
            try:
                current = self._snapshot()
            except BaseException:
                log.exception("%s: polling failed", self._name)
                continue
            if current == previous:
                continue
            previous = current
            with self._lock:
                if stop.is_set():
                    return
                callbacks = list(self._callbacks.values())
            call_each(callbacks, self._name)
