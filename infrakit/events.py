"""Lifecycle events: one readable log line each, and a bus that other parts can listen to."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger("infrakit.events")

# Kinds of event (stable strings: clients filter on them).
PROVISIONED = "provisioned"
ADOPTED = "adopted"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
GONE = "gone"
REPLACING = "replacing"
DESTROYED = "destroyed"
DUPLICATE = "duplicate"
PROVISION_FAILED = "provision-failed"
DESTROY_FAILED = "destroy-failed"
DRAIN_ABANDONED = "drain-abandoned"
PROTECTED_HELD = "protected-held"
CIRCUIT = "circuit"
UPDATE_STARTED = "update-started"
ROLLING = "rolling"
UPDATE_DONE = "update-done"
UPDATE_PAUSED = "update-paused"
UNHEALTHY_HELD = "unhealthy-held"
CONVERGED = "converged"
COMMITTED = "committed"
FREED = "freed"
GROUP_DESTROYED = "group-destroyed"
DESCRIBE_FAILED = "describe-failed"
FOREIGN = "foreign"
LEADERSHIP = "leadership"
OWNERSHIP = "ownership"  # shared mode: this manager took a group over, or handed it on
PLUGIN = "plugin"
CANARY = "canary"  # a rollout's canaries are healthy: it waits for a promotion
HOLDS = "holds"  # an operator suspended or resumed processes, or (un)stood an instance by
SCALE_IN = "scale-in"  # a smaller size removes this instance (and why)
MOVED = "moved"  # scale-in relabelled a survivor into the slot its victim freed
MOVE_REFUSED = "move-refused"  # the instance plugin cannot relabel: the highest slots go

_WARNINGS = {
    GONE,
    UNHEALTHY,
    PROVISION_FAILED,
    DESTROY_FAILED,
    DRAIN_ABANDONED,
    PROTECTED_HELD,
    UPDATE_PAUSED,
    UNHEALTHY_HELD,
    DESCRIBE_FAILED,
    DUPLICATE,
    FOREIGN,
    MOVE_REFUSED,
}


@dataclass(frozen=True)
class Event:
    """Something that happened to a group or one of its instances."""

    group: str
    kind: str
    message: str
    logical_id: str | None = None
    instance: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def to_json(self, seq: int | None = None) -> dict[str, Any]:
        """The event as a dict, with its sequence number `seq` if given (infrakit/eventlog.py);
        data that cannot be copied is given as its repr."""
        if self.data:
            try:
                data: Any = deepcopy(self.data)
            except Exception:
                data = repr(self.data)
        else:
            data = {}  # most events carry none: no copy (a converge makes 100,000s of them)
        result = {
            "group": self.group,
            "kind": self.kind,
            "message": self.message,
            "logical_id": self.logical_id,
            "instance": self.instance,
            "data": data,
            "time": self.time,
        }
        if seq is not None:
            result["seq"] = seq
        return result

    def line(self) -> str:
        """The log line: `group: [logical id] message`."""
        who = f" {self.logical_id}" if self.logical_id else ""
        return f"{self.group}:{who} {self.message}"


Listener = Callable[[Event], None]
L = TypeVar("L", bound=Callable[..., None])


class Subscribers(Generic[L]):
    """A thread-safe list of listeners: `add` returns the function that removes one again, and
    `notify` calls each, logging (with its traceback) one that raises, so that the others are
    called all the same and the caller's thread (an actor's) goes on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[L] = []

    def add(self, listener: L) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def notify(self, event: Event, *args: Any) -> None:
        """Call every listener with `args` (about `event`, which a failure's log line names)."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(*args)
            except BaseException:  # SystemExit on an actor's thread would stop every actor
                log.exception("event listener %r failed on %r", listener, event.line())


class EventBus:
    """Publishes events to the log and to listeners. Thread-safe; listeners must not block.

    Listeners run on the publisher's thread (an actor's): one that raises anything is logged
    with its traceback and the others are called all the same.
    """

    def __init__(self) -> None:
        self._listeners: Subscribers[Listener] = Subscribers()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every event from now on; returns a function that unsubscribes."""
        return self._listeners.add(listener)

    def publish(self, event: Event) -> None:
        level = logging.WARNING if event.kind in _WARNINGS else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, event.line(), extra={"event": event.to_json()})
        self._listeners.notify(event, event)
