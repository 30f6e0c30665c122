"""What the manager and its groups last published: the state operators' questions are answered
from, without asking (and so without waiting on) any actor.

The manager publishes its records (which groups, which spec, being destroyed, why one cannot
run) whenever they change; each group publishes a `GroupView` after every look. Readers get
immutable values, so any thread may read them at any time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from actors import CircuitBreaker
from infrakit.group.plan import NO_HOLDS, Holds, SlotStatus
from infrakit.rollout import Rollout
from infrakit.spec import GroupSpec
from infrakit.spi import Description

LookListener = Callable[[str, float | None], None]
"""Called with a group's ID and how long its look took in seconds, or None if it failed."""


@dataclass(frozen=True)
class GroupRecord:
    """The manager's word on one group: its committed spec, the rolling update under way (as
    stored with the spec), whether it is being destroyed, and why it cannot run, if it cannot
    (say its plugin is unknown), and what an operator holds it back from (suspended processes,
    standby)."""

    spec: GroupSpec
    destroying: bool = False
    problem: str | None = None
    rollout: Rollout | None = None
    revision: int | None = None  # the latest of its revisions (None before they exist)
    holds: Holds = NO_HOLDS


@dataclass(frozen=True)
class GroupView:
    """One group as its last look saw it."""

    spec: GroupSpec
    members: tuple[Description, ...] = ()
    phases: Mapping[str, int] = field(default_factory=dict)
    converged: bool = False
    destroying: bool = False
    update_total: int = 0
    update_done: int = 0
    paused: str | None = None
    breaker: CircuitBreaker | None = None  # live: thread-safe, read at each question
    failing: int = 0  # instances whose provisioning keeps failing
    conditions: tuple[str, ...] = ()
    looked_at: float | None = None  # monotonic: when the last complete look began
    looked_at_wall: float | None = None  # the same, as a time of day, for people
    rollout: Rollout | None = None  # the rolling update under way, as the last look left it
    slots: Mapping[str, SlotStatus] = field(default_factory=dict)  # each actor's last report
    canary: str | None = None  # where the rollout's canaries are, in words
    holds: Holds = NO_HOLDS

    def summary(self) -> dict[str, Any]:
        """The operator's summary (`manager status`, `Runtime.info`), less the conditions,
        which the runtime gathers with its own (`all_conditions` and its plugins')."""
        return {
            "ID": self.spec.id,
            "Size": len(self.spec.logical_ids()),
            "Members": len(self.members),
            "Phases": dict(self.phases),
            "Converged": self.converged,
            "Update": {
                "Total": self.update_total,
                "Done": self.update_done,
                "Paused": self.paused,
                "Canary": self.canary,
                **self.rollout_detail(time.time()),
            },
            **self.holds.to_json(),
            "Circuit": self.breaker.state if self.breaker is not None else "closed",
            "Destroying": self.destroying,
            "LookedAt": self.looked_at_wall,
        }

    def rollout_detail(self, now: float) -> dict[str, Any]:
        """What a rolling update under way waits for, to follow it (`group commit --wait`):
        since when it runs, each replacement in flight (its slot's phase and instance, how
        long it has been at it) and the limits it is held to (Properties.Update)."""
        rollout = self.rollout
        if rollout is None:
            return {}
        update = self.spec.properties.update
        in_flight = []
        for lid, began in sorted(rollout.in_flight.items()):
            slot = self.slots.get(lid)
            in_flight.append(
                {
                    "LogicalID": lid,
                    "Phase": slot.phase.value if slot is not None else None,
                    "Instance": slot.instance_id if slot is not None else None,
                    "Outgoing": slot.outgoing if slot is not None else None,
                    "Elapsed": max(0.0, now - began),
                    "ReadyFor": (
                        max(0.0, now - slot.ready_at)
                        if slot is not None and slot.ready_at is not None
                        else None
                    ),
                }
            )
        return {
            "Elapsed": max(0.0, now - rollout.since) if rollout.since else None,
            "InFlight": in_flight,
            "Held": rollout.held,
            "HealthyTimeout": update.healthy_timeout,
            "MinReadyTime": update.min_ready_time,
            "ProgressDeadline": update.progress_deadline,
        }

    def all_conditions(self) -> list[str]:
        """What keeps the group from acting: the last look's findings and the breaker's state
        now."""
        found = list(self.conditions)
        breaker = self.breaker
        if breaker is not None:
            state = breaker.state
            if state != "closed":
                found.append(f"provisioning circuit {state}: {breaker.last_error}")
            elif self.failing:
                found.append(
                    f"{self.failing} instances cannot be provisioned: {breaker.last_error}"
                )
        return found


@dataclass(frozen=True)
class PluginState:
    """Whether a plugin in another process answers, as its connection last said."""

    up: bool
    reason: str
    since: float = field(default_factory=time.time)


class Views:
    """The board the manager and groups publish to. Thread-safe; values are immutable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leading = False
        self._leading_since: float | None = None
        self._records: Mapping[str, GroupRecord] = MappingProxyType({})
        self._groups: dict[str, GroupView] = {}
        self._plugins: dict[str, PluginState] = {}
        self.on_look: LookListener | None = None
        """Told of every look a group finishes (its seconds) or fails (None): the metrics'."""

    # -- the manager's side ---------------------------------------------------------------

    def set_leading(self, leading: bool) -> None:
        with self._lock:
            if leading != self._leading:
                self._leading = leading
                self._leading_since = time.time() if leading else None

    def set_records(self, records: Mapping[str, GroupRecord]) -> None:
        """Replace the manager's records (a copy is kept); views of dropped groups go too."""
        frozen = MappingProxyType(dict(records))
        with self._lock:
            self._records = frozen
            for group_id in list(self._groups):
                if group_id not in frozen:
                    del self._groups[group_id]

    def publish(self, view: GroupView) -> None:
        """A group's latest view; ignored for a group the manager no longer has."""
        with self._lock:
            if view.spec.id not in self._records:
                return
            old = self._groups.get(view.spec.id)
            self._groups[view.spec.id] = view
        if view.looked_at is not None and (old is None or old.looked_at != view.looked_at):
            self._tell_look(view.spec.id, view.looked_at)

    def looked(self, group_id: str, at: float, wall: float) -> None:
        """A group looked and found nothing new: only when it looked changes."""
        with self._lock:
            view = self._groups.get(group_id)
            if view is not None:
                self._groups[group_id] = replace(view, looked_at=at, looked_at_wall=wall)
        self._tell_look(group_id, at)

    def look_failed(self, group_id: str) -> None:
        """A group's look failed (its instances could not be listed)."""
        on_look = self.on_look
        if on_look is not None:
            on_look(group_id, None)

    def _tell_look(self, group_id: str, began: float) -> None:
        on_look = self.on_look
        if on_look is not None:
            on_look(group_id, time.monotonic() - began)

    def set_plugin(self, name: str, up: bool, reason: str) -> None:
        with self._lock:
            self._plugins[name] = PluginState(up, reason)

    # -- the readers' side ----------------------------------------------------------------

    @property
    def leading(self) -> bool:
        return self._leading

    @property
    def leading_since(self) -> float | None:
        return self._leading_since

    def records(self) -> Mapping[str, GroupRecord]:
        return self._records

    def group(self, group_id: str) -> GroupView | None:
        with self._lock:
            return self._groups.get(group_id)

    def plugins(self) -> dict[str, PluginState]:
        with self._lock:
            return dict(self._plugins)
