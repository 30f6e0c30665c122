"""Following the Docker engine's event stream: one daemon thread per watcher, which calls its
subscribers for each event that matters, and reconnects (calling them once more, as events may
have been missed) when the stream breaks."""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

from infrakit.plugins.instance._watch import call_each
from infrakit.spi.instance import Unsubscribe

log = logging.getLogger(__name__)


class EventWatcher:
    """One daemon thread that follows the engine's event stream and calls every subscriber
    for each event that `matters`.

    Started with the first subscriber and stopped with the last (closing the stream unblocks
    the thread). A broken stream is reopened with backoff, and subscribers are called once on
    reconnection, since events may have been missed. Callbacks run with no lock held; one that
    raises is logged and ignored.
    """

    _FIRST_CONNECT_WAIT = 5.0
    _JOIN_TIMEOUT = 5.0

    def __init__(
        self, open_stream: Callable[[], Any], matters: Callable[[Any], bool], name: str
    ) -> None:
        self._open = open_stream
        self._matters = matters
        self._name = name
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._ids = itertools.count()
        self._session: _Session | None = None

    def subscribe(self, callback: Callable[[], None]) -> Unsubscribe:
        """Register `callback`; if it is the first, start following events and wait (a little)
        for the stream to open, so that what happens after `subscribe` returns is seen."""
        with self._lock:
            token = next(self._ids)
            self._callbacks[token] = callback
            session = None
            if self._session is None:
                session = self._session = _Session()
                session.thread = threading.Thread(
                    target=self._run, args=(session,), name=self._name, daemon=True
                )
                session.thread.start()
        if session is not None:
            session.tried.wait(self._FIRST_CONNECT_WAIT)

        def unsubscribe() -> None:
            with self._lock:
                self._callbacks.pop(token, None)
                if self._callbacks:
                    return
                session, self._session = self._session, None
            if session is not None:
                session.stop()

        return unsubscribe

    def close(self) -> None:
        """Drop every subscriber and stop the thread (waiting a little for it to end)."""
        with self._lock:
            self._callbacks.clear()
            session, self._session = self._session, None
        if session is not None:
            session.stop()
            thread = session.thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(self._JOIN_TIMEOUT)

    @property
    def running(self) -> bool:
        with self._lock:
            session = self._session
        return session is not None and session.thread is not None and session.thread.is_alive()

    def _notify(self, session: _Session) -> None:
        with self._lock:
            if session.stopped.is_set():
                return
            callbacks = list(self._callbacks.values())
        call_each(callbacks, self._name)

    def _run(self, session: _Session) -> None:
        delay = 0.1
        connected_before = False
        while not session.stopped.is_set():
            try:
                stream = self._open()
            except Exception as exc:
                log.warning("%s: cannot follow Docker events (retrying): %s", self._name, exc)
                session.tried.set()
                session.stopped.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            if not session.attach(stream):
                return
            session.tried.set()
            if connected_before:
                self._notify(session)  # events may have been missed while disconnected
            connected_before = True
            try:
                for event in stream:
                    delay = 0.1
                    if session.stopped.is_set():
                        break
                    if self._matters(event):
                        self._notify(session)
            except Exception as exc:
                if not session.stopped.is_set():
                    log.warning("%s: Docker event stream broke: %s", self._name, exc)
            finally:
                session.detach(stream)
            if not session.stopped.is_set():
                log.info("%s: Docker event stream ended; reconnecting", self._name)
                session.stopped.wait(delay)
                delay = min(delay * 2, 5.0)


class _Session:
    """One run of the watcher thread: its stop flag and the stream it is reading."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.tried = threading.Event()  # the first attempt to open the stream is over
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stream: Any = None

    def attach(self, stream: Any) -> bool:
        """Note the open stream; False (and close it) if the session was stopped meanwhile."""
        with self._lock:
            if self.stopped.is_set():
                _close_quietly(stream)
                return False
            self._stream = stream
            return True

    def detach(self, stream: Any) -> None:
        with self._lock:
            if self._stream is stream:
                self._stream = None
        _close_quietly(stream)

    def stop(self) -> None:
        """Stop the thread: set the flag and close the stream it may be blocked on."""
        with self._lock:
            self.stopped.set()
            stream, self._stream = self._stream, None
        if stream is not None:
            _close_quietly(stream)
        self.tried.set()


def _close_quietly(stream: Any) -> None:
    with contextlib.suppress(Exception):
        stream.close()
