"""Each group's activity history: every action the runtime took on it (provisioned, replaced,
destroyed, adopted, an update begun...) with its cause, the last `PER_GROUP` kept in the store so
that it survives restarts and leader changes (`infrakit group activity ID`).

Entries are made from the lifecycle events as they happen; the store is written by a thread of
its own, in batches, so an actor that publishes an event never waits on a disk or on etcd. Only
the leader records and writes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infrakit import events
from infrakit.events import Event
from infrakit.manager.store import Store

log = logging.getLogger(__name__)

PER_GROUP = 100
"""Entries kept per group: the newest."""
FLUSH_EVERY = 0.5
"""Seconds between two writes of the store, at most one write per interval."""

# Findings that are the cause of the action that follows on the same logical instance.
_FINDINGS = {events.UNHEALTHY, events.GONE}
# Group-wide actions: what the event says is what was done; the cause is the kind's.
_GROUP_ACTIONS = {
    events.COMMITTED: "a commit",
    events.UPDATE_STARTED: "a commit changed the instances' configuration",
    events.UPDATE_PAUSED: "the rolling update could not go on",
    events.UPDATE_DONE: "every instance has the new configuration",
    events.CIRCUIT: "provisioning failures",
    events.FREED: "a free",
    events.PROTECTED_HELD: "a smaller size, met only by protected instances",
    events.CANARY: "Update.Canary",
    events.HOLDS: "an operator",
    events.MOVE_REFUSED: "an instance plugin that cannot relabel",
}


@dataclass(frozen=True)
class Entry:
    """One action: when, what was done, and why."""

    time: float
    what: str
    cause: str
    kind: str
    logical_id: str | None = None
    instance: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "Time": self.time,
            "What": self.what,
            "Cause": self.cause,
            "Kind": self.kind,
            "LogicalID": self.logical_id,
            "Instance": self.instance,
        }


class ActivityLog:
    """Turns events into activity entries and keeps the last `per_group` of each group in
    `store`. `record` is an event listener (cheap: it only queues); `history` answers from
    the store and what is not written yet."""

    def __init__(
        self,
        store: Store,
        leading: Callable[[], bool],
        per_group: int = PER_GROUP,
        flush_every: float = FLUSH_EVERY,
    ) -> None:
        self._store, self._leading = store, leading
        self._per_group, self._flush_every = per_group, flush_every
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: dict[str, list[Entry]] = {}
        self._loaded: dict[str, list[dict[str, Any]]] = {}  # as stored, per group read
        self._causes: dict[tuple[str, str], str] = {}  # (group, logical ID) -> why it acts
        self._destroyed: set[str] = set()  # groups whose stored history is to go
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="activity-writer", daemon=True)
        self._thread.start()

    def record(self, event: Event) -> None:
        """Note the action `event` says the runtime took, if it is one (and we lead)."""
        if not self._leading():
            return
        with self._lock:
            if event.kind == events.GROUP_DESTROYED:  # a destroy leaves no history behind
                self._destroyed.add(event.group)
                self._pending[event.group] = []
                self._loaded.pop(event.group, None)
                self._causes = {k: v for k, v in self._causes.items() if k[0] != event.group}
                self._wake.notify()
                return
            entry = self._entry(event)
            if entry is None:
                return
            self._pending.setdefault(event.group, []).append(entry)
            self._wake.notify()

    def history(self, group_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The group's entries, oldest first: the last `limit` if given."""
        with self._lock:
            stored = self._loaded.get(group_id)
        if stored is None:
            stored = self._store.load_activity(group_id)
        with self._lock:
            self._loaded.setdefault(group_id, stored)
            entries = [*stored, *(e.to_json() for e in self._pending.get(group_id, ()))]
        entries = entries[-self._per_group :]
        return entries[-limit:] if limit else entries

    def forget_cache(self) -> None:
        """Read the store again at the next question (another leader may have written it)."""
        with self._lock:
            self._loaded.clear()
            self._causes.clear()

    def stop(self) -> None:
        """Write what is pending, then stop the writer."""
        with self._lock:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=30)

    # -- events to entries -----------------------------------------------------------------

    def _entry(self, event: Event) -> Entry | None:
        kind, lid = event.kind, event.logical_id
        if kind in _GROUP_ACTIONS:
            return Entry(event.time, event.message, _GROUP_ACTIONS[kind], kind)
        if lid is None:
            if kind == events.PROVISION_FAILED:  # the instance actor's, without its lid
                return Entry(event.time, "provisioning failed", event.message, kind)
            return None
        key = (event.group, lid)
        if kind in _FINDINGS:
            self._causes[key] = event.message
            if kind == events.GONE:
                what = f"replacing {lid}"
                return Entry(event.time, what, event.message, kind, lid, event.instance)
            return None
        if kind == events.REPLACING:
            reason = str(event.data.get("Reason", "")) or "replaced"
            found = self._causes.get(key)
            cause = found if found is not None and reason == "unhealthy" else reason
            self._causes[key] = cause
            return Entry(event.time, f"replacing {lid}", cause, kind, lid, event.instance)
        if kind == events.PROVISIONED:
            cause = self._causes.pop(key, "the group wants it")
            what = f"provisioned {event.instance} as {lid}"
            return Entry(event.time, what, cause, kind, lid, event.instance)
        if kind == events.DESTROYED:
            cause = self._causes.get(key, "not wanted any more")
            what = f"destroyed {event.instance}" if event.instance else event.message
            return Entry(event.time, what, cause, kind, lid, event.instance)
        if kind == events.ADOPTED:
            what = f"adopted {event.instance} as {lid}"
            cause = "found running with the group's tags"
            return Entry(event.time, what, cause, kind, lid, event.instance)
        if kind == events.SCALE_IN:  # the cause of the destroy that follows
            cause = event.message.partition(": ")[2] or "a smaller size"
            self._causes[key] = f"scale-in: {cause}"
            return Entry(event.time, event.message, "a smaller size", kind, lid, event.instance)
        if kind == events.MOVED:
            return Entry(event.time, event.message, "a smaller size", kind, lid, event.instance)
        if kind == events.DUPLICATE:
            cause = f"a second instance for {lid}"
            return Entry(event.time, event.message, cause, kind, lid, event.instance)
        if kind == events.DRAIN_ABANDONED:
            what = f"destroyed {event.instance} undrained"
            return Entry(event.time, what, event.message, kind, lid, event.instance)
        if kind in (events.PROVISION_FAILED, events.DESTROY_FAILED):
            what = "provisioning failed" if kind == events.PROVISION_FAILED else "destroy failed"
            return Entry(event.time, f"{what} for {lid}", event.message, kind, lid)
        return None

    # -- the writer ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._pending and not self._stopping:
                    self._wake.wait()
                stopping = self._stopping
            if not stopping:
                self._sleep(self._flush_every)  # gather a batch
            self._flush()
            if stopping:
                return

    def _sleep(self, seconds: float) -> None:
        with self._lock:
            if not self._stopping:
                self._wake.wait(seconds)

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            destroyed, self._destroyed = self._destroyed, set()
        if not pending or not self._leading():
            return  # only the leader writes: a follower's entries are its predecessor's
        written: dict[str, list[dict[str, Any]]] = {}
        try:
            for group_id, entries in pending.items():
                with self._lock:
                    stored = self._loaded.get(group_id)
                if group_id in destroyed:
                    stored = []  # what came after the destroy (a new commit) starts afresh
                elif stored is None:
                    stored = self._store.load_activity(group_id)
                kept = [*stored, *(e.to_json() for e in entries)][-self._per_group :]
                written[group_id] = kept
            self._store.put_activity(written)
        except Exception as error:  # the store is down, or we no longer lead: try again
            log.warning("cannot store the activity history: %s", error)
            with self._lock:
                self._destroyed |= destroyed
                for group_id, entries in pending.items():
                    self._pending[group_id] = [*entries, *self._pending.get(group_id, ())]
            return
        with self._lock:
            self._loaded.update(written)
