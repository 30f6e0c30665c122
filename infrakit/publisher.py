"""Publish lifecycle events on a ZeroMQ PUB socket: topic = group ID, body = the event's JSON."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
from typing import Any

import zmq

from infrakit.events import Event

log = logging.getLogger(__name__)

# Events queued for a slow network are dropped beyond this many (never block an actor).
HIGH_WATER_MARK = 10_000


class EventPublisher:
    """One thread owns the PUB socket; `publish` (any thread) only queues, and never blocks.

    An event that cannot be sent (not JSON, a group ID that is not UTF-8) is logged with its
    traceback and dropped; the thread goes on with the next.
    """

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._queue: queue.SimpleQueue[tuple[Event, int | None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> EventPublisher:
        """Bind and start; raises what binding raised (e.g. zmq.ZMQError)."""
        self._thread = threading.Thread(target=self._run, name="event-publisher", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    @property
    def alive(self) -> bool:
        """Whether events still go out: started, not stopped, and the thread lives."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def publish(self, event: Event, seq: int | None = None) -> None:
        """Queue `event` (with its sequence number, if it has one) to be sent."""
        if self._thread is not None:
            self._queue.put((event, seq))

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(5)

    def _run(self) -> None:
        context: zmq.Context[Any] = zmq.Context.instance()
        sock = context.socket(zmq.PUB)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, HIGH_WATER_MARK)
            sock.bind(self.endpoint)
        except BaseException as error:
            self._error = error
            sock.close(linger=0)
            self._ready.set()
            return
        self._ready.set()
        try:
            while (item := self._queue.get()) is not None:
                try:
                    self._send(sock, *item)
                except BaseException:
                    log.exception("cannot publish event %r; dropped", item[0].line())
        finally:
            sock.close(linger=0)

    @staticmethod
    def _send(sock: zmq.Socket[bytes], event: Event, seq: int | None) -> None:
        body = json.dumps(event.to_json(seq), default=str).encode()
        with contextlib.suppress(zmq.Again):  # a subscriber lags: drop, as PUB does
            sock.send_multipart([event.group.encode(), body], flags=zmq.NOBLOCK)
