"""Watchers: a polling one (one daemon thread that tells subscribers when a snapshot changes,
and, to those who want it, the snapshot before and after), a directory one on the kernel's
notices (inotify), and `call_each`, which every watcher uses to tell its subscribers."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from infrakit.spi.instance import Changes, Unsubscribe

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
    after its unsubscribe returns (it only ever means "look again"). A snapshot that takes
    long is taken less often: never more than a fifth of the thread's time goes to it.
    """

    def __init__(self, snapshot: Callable[[], object], interval: float, name: str) -> None:
        if interval <= 0:
            raise ValueError(f"watch interval must be positive, not {interval}")
        self._snapshot = snapshot
        self._interval = interval
        self._name = name
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._diff_callbacks: dict[int, Callable[[Any, Any], None]] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None

    def subscribe(self, callback: Callable[[], None]) -> Unsubscribe:
        """Register `callback`; start the thread if it is the first. Returns an unsubscribe."""
        return self._subscribe(self._callbacks, callback)

    def subscribe_diff(self, callback: Callable[[Any, Any], None]) -> Unsubscribe:
        """Register `callback(before, after)`, called with both snapshots on each change."""
        return self._subscribe(self._diff_callbacks, callback)

    def _subscribe(self, table: dict[int, Any], callback: Any) -> Unsubscribe:
        with self._lock:
            token = next(self._ids)
            table[token] = callback
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
                table.pop(token, None)
                if not self._callbacks and not self._diff_callbacks:
                    self._stop_locked()

        return unsubscribe

    def close(self) -> None:
        """Drop every subscriber and stop the thread (waiting a little for it to end)."""
        with self._lock:
            self._callbacks.clear()
            self._diff_callbacks.clear()
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
        cost = 0.0
        while not stop.wait(max(self._interval, 4 * cost)):
            began = time.thread_time()  # the snapshot's own cost, not its wait for the GIL
            try:
                current = self._snapshot()
            except BaseException:
                log.exception("%s: polling failed", self._name)
                continue
            finally:
                cost = time.thread_time() - began
            if current is previous or current == previous:  # the same object: unchanged
                continue
            before, previous = previous, current
            with self._lock:
                if stop.is_set():
                    return
                callbacks = list(self._callbacks.values())
                diffs = list(self._diff_callbacks.values())
            call_each(callbacks, self._name)
            call_each([partial(diff, before, current) for diff in diffs], self._name)


class DirectoryWatcher:
    """Tells subscribers which entries of a directory appeared or vanished, from the kernel's
    own notices (inotify): a change costs what changed, whatever the directory's size.

    `create()` returns None where inotify is not available (not Linux, or no watches left),
    and the caller polls instead. Names for which `ignore(name)` is true (temp files) are
    left out. If the kernel's queue overflows, subscribers hear `Changes(whole=True)`: look
    at everything. Like `PollingWatcher`, the thread runs only while someone listens.
    """

    def __init__(self, directory: str, ignore: Callable[[str], bool], name: str) -> None:
        self._directory = directory
        self._ignore = ignore
        self._name = name
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callable[[Changes], None]] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None

    @classmethod
    def create(
        cls, directory: str, ignore: Callable[[str], bool], name: str
    ) -> DirectoryWatcher | None:
        """A watcher of `directory`, or None if the kernel cannot watch it for us."""
        try:
            inotify = _open_inotify(directory)
        except (ImportError, OSError) as error:
            log.info("%s: no inotify (%s); polling the directory instead", name, error)
            return None
        inotify.close()
        return cls(directory, ignore, name)

    def subscribe(self, callback: Callable[[Changes], None]) -> Unsubscribe:
        """Register `callback(changes)`; start the thread if it is the first."""
        with self._lock:
            token = next(self._ids)
            self._callbacks[token] = callback
            if self._thread is None:
                stop = threading.Event()
                inotify = _open_inotify(self._directory)  # before returning: nothing missed
                thread = threading.Thread(
                    target=self._run, args=(stop, inotify), name=self._name, daemon=True
                )
                self._thread, self._stop = thread, stop
                thread.start()

        def unsubscribe() -> None:
            with self._lock:
                self._callbacks.pop(token, None)
                if not self._callbacks and self._stop is not None:
                    self._stop.set()
                    self._thread = self._stop = None

        return unsubscribe

    def close(self) -> None:
        """Drop every subscriber and stop the thread (waiting a little for it to end)."""
        with self._lock:
            self._callbacks.clear()
            thread, stop = self._thread, self._stop
            self._thread = self._stop = None
        if stop is not None:
            stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN_TIMEOUT)

    def _run(self, stop: threading.Event, inotify: Any) -> None:
        from inotify_simple import flags

        appearing = flags.CREATE | flags.MOVED_TO
        leaving = flags.DELETE | flags.MOVED_FROM
        try:
            while not stop.is_set():
                try:
                    notices = inotify.read(timeout=200)
                except OSError:
                    log.exception("%s: reading the directory's notices failed", self._name)
                    stop.wait(1.0)
                    continue
                appeared: set[str] = set()
                gone: set[str] = set()
                whole = False
                for notice in notices:
                    if notice.mask & (flags.Q_OVERFLOW | flags.IGNORED | flags.DELETE_SELF):
                        whole = True
                    elif not notice.name or self._ignore(notice.name):
                        continue
                    elif notice.mask & appearing:
                        appeared.add(notice.name)
                        gone.discard(notice.name)
                    elif notice.mask & leaving:
                        gone.add(notice.name)
                        appeared.discard(notice.name)
                if not (appeared or gone or whole):
                    continue
                changes = Changes(frozenset(appeared), frozenset(gone), whole)
                with self._lock:
                    callbacks = list(self._callbacks.values()) if not stop.is_set() else []
                call_each([partial(cb, changes) for cb in callbacks], self._name)
        finally:
            inotify.close()


def _open_inotify(directory: str) -> Any:
    from inotify_simple import INotify, flags

    inotify = INotify()
    try:
        mask = flags.CREATE | flags.DELETE | flags.MOVED_TO | flags.MOVED_FROM | flags.DELETE_SELF
        inotify.add_watch(directory, mask)
    except BaseException:
        inotify.close()
        raise
    return inotify
