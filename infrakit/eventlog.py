"""The runtime's recent events, numbered: a bounded buffer that `infrakit events --since` replays
(the adoptions a restart just made, say), and the order the live stream goes out in.

Each event gets a sequence number, one more than the last; the first is the microsecond the log
was made, so a restarted runtime's numbers follow its predecessor's (while the clock does not go
back). A client that subscribes, then asks for the replay, prints each number once: no
duplicate, and no gap the buffer still covers.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infrakit.events import Event, Subscribers

CAPACITY = 1000
"""Events kept at most: the newest ones."""
MAX_AGE = 3600.0
"""Seconds an event is kept at most."""

NumberedListener = Callable[[int, Event], None]


@dataclass(frozen=True)
class Replay:
    """The events asked for (oldest first, as JSON with their `seq`), and what the buffer keeps:
    `truncated` says that events the question wanted were dropped (too many, or too old)."""

    events: list[dict[str, Any]]
    capacity: int
    max_age: float
    oldest: float | None
    truncated: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "Events": self.events,
            "Capacity": self.capacity,
            "MaxAge": self.max_age,
            "Oldest": self.oldest,
            "Truncated": self.truncated,
        }


class EventLog:
    """Numbers every event it records, keeps the last `capacity` of at most `max_age` seconds,
    and hands each numbered event to its listeners in number order. Thread-safe; listeners run
    under its lock, so they must only queue (as `EventPublisher.publish` does)."""

    def __init__(self, capacity: int = CAPACITY, max_age: float = MAX_AGE) -> None:
        self.capacity, self.max_age = capacity, max_age
        self._lock = threading.Lock()
        self._events: deque[tuple[int, Event]] = deque()
        self._next = time.time_ns() // 1000
        self._dropped_at: float | None = None  # the time of the newest event dropped
        self._listeners: Subscribers[NumberedListener] = Subscribers()

    def subscribe(self, listener: NumberedListener) -> Callable[[], None]:
        """Call `listener(seq, event)` for every event from now on; returns the unsubscribe."""
        return self._listeners.add(listener)

    def record(self, event: Event) -> None:
        """Number `event`, keep it, and hand it on."""
        with self._lock:
            seq, self._next = self._next, self._next + 1
            self._events.append((seq, event))
            self._trim(time.time())
            self._listeners.notify(event, seq, event)  # under the lock: in number order

    def recent(self, since: float, group: str | None = None, after: int = 0) -> Replay:
        """The events of the last `since` seconds (of `group` only, if given) numbered above
        `after`, oldest first."""
        now = time.time()
        cutoff = now - since
        with self._lock:
            self._trim(now)
            kept = [
                (seq, event)
                for seq, event in self._events
                if event.time >= cutoff and seq > after and (group is None or event.group == group)
            ]
            oldest = self._events[0][1].time if self._events else None
            truncated = self._dropped_at is not None and self._dropped_at >= cutoff
        return Replay(
            [event.to_json(seq) for seq, event in kept],
            self.capacity,
            self.max_age,
            oldest,
            truncated,
        )

    def _trim(self, now: float) -> None:
        events = self._events
        while events and (len(events) > self.capacity or events[0][1].time < now - self.max_age):
            _, dropped = events.popleft()
            self._dropped_at = max(self._dropped_at or dropped.time, dropped.time)
