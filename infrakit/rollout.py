"""A rolling update's state, as a value: the planner takes it and returns the next one, and the
manager stores it with the group's spec, so that a restarted runtime or a new leader resumes an
update where it stopped (paused stays paused, a rollback stays possible) instead of starting
it over."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from infrakit.spec import DEFAULT_MAX_GROUP_SIZE, GroupSpec, SpecError, parse_group

LogicalID = str

_EMPTY: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True)
class Rollout:
    """One rolling update of a group to the configuration `target` (a config hash).

    `previous` is the spec it rolls from, kept to roll back to (None when unknown, or when this
    rollout is itself a rollback: a rollback that fails pauses, it never loops). `total` counts
    the instances it has to replace (0 until the first look), `done` those replaced. `in_flight`
    says when (wall-clock seconds) each replacement now under way began, for
    `Update.HealthyTimeout`; `paused` why it stopped, if it did, and `held` whether an
    operator paused it (self-healing goes on then). `revert` is the spec OnFailure "rollback"
    goes back to when it is not `previous`: the last revision that fully rolled out.
    `canaries` are the slots Update.Canary replaced first, `canary_ready` when (wall clock) they
    all were healthy, from which the rollout waits for its promotion (`promoted`).
    """

    target: str
    previous: GroupSpec | None = None
    rolling_back: bool = False
    total: int = 0
    done: int = 0
    in_flight: Mapping[LogicalID, float] = field(default_factory=lambda: _EMPTY)
    paused: str | None = None
    since: float = 0.0
    held: bool = False
    revert: GroupSpec | None = None
    canaries: tuple[LogicalID, ...] = ()
    canary_ready: float = 0.0
    promoted: bool = False

    @property
    def waiting_for_promotion(self) -> bool:
        """Its canaries are healthy and the rest waits for `promote` (or AutoPromote)."""
        return bool(self.canary_ready) and not self.promoted

    def promote(self, now: float) -> Rollout:
        """The same rollout, its canaries promoted: the rest rolls, its ProgressDeadline
        counted from now."""
        return replace(self, promoted=True, since=now)

    def to_json(self) -> dict[str, Any]:
        """The stored form (kept with the group's spec)."""
        return {
            "Target": self.target,
            "Previous": self.previous.to_json() if self.previous is not None else None,
            "RollingBack": self.rolling_back,
            "Total": self.total,
            "Done": self.done,
            "InFlight": dict(self.in_flight),
            "Paused": self.paused,
            "Since": self.since,
            "Held": self.held,
            "Revert": self.revert.to_json() if self.revert is not None else None,
            "Canaries": list(self.canaries),
            "CanaryReady": self.canary_ready,
            "Promoted": self.promoted,
        }

    @classmethod
    def from_json(cls, data: Any, max_group_size: int = DEFAULT_MAX_GROUP_SIZE) -> Rollout:
        """Read the stored form back; raises ValueError if it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("Target"), str):
            raise ValueError("not a stored rolling update")
        # One that no longer parses can no longer be rolled back to; pausing still works.
        previous = _spec(data.get("Previous"), "previous", max_group_size)
        revert = _spec(data.get("Revert"), "rollback", max_group_size)
        in_flight = data.get("InFlight") or {}
        paused = data.get("Paused")
        canaries = data.get("Canaries")
        ready = data.get("CanaryReady")
        return cls(
            target=data["Target"],
            previous=previous,
            rolling_back=bool(data.get("RollingBack")),
            total=_count(data.get("Total")),
            done=_count(data.get("Done")),
            in_flight=MappingProxyType(
                {
                    str(lid): float(at)
                    for lid, at in in_flight.items()
                    if isinstance(at, int | float) and not isinstance(at, bool)
                }
                if isinstance(in_flight, dict)
                else {}
            ),
            paused=paused if isinstance(paused, str) else None,
            since=float(data["Since"]) if isinstance(data.get("Since"), int | float) else 0.0,
            held=data.get("Held") is True,
            revert=revert,
            canaries=tuple(str(c) for c in canaries) if isinstance(canaries, list) else (),
            canary_ready=float(ready) if isinstance(ready, int | float) else 0.0,
            promoted=data.get("Promoted") is True,
        )

    def resumed(self, now: float) -> Rollout:
        """The same rollout, no longer paused; replacements under way, and its
        ProgressDeadline, are timed from now."""
        return replace(self.retimed(now), paused=None, held=False)

    def retimed(self, now: float) -> Rollout:
        """The same rollout, its replacements under way and its ProgressDeadline timed from
        now (after a wait that was not its own: a pause, a suspended process)."""
        return replace(
            self, since=now, in_flight=MappingProxyType(dict.fromkeys(self.in_flight, now))
        )


def _spec(data: Any, which: str, max_group_size: int) -> GroupSpec | None:
    if not isinstance(data, dict):
        return None
    try:
        return parse_group(
            data, source=f"the stored update's {which} spec", max_group_size=max_group_size
        )
    except SpecError:
        return None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def begin(
    current: GroupSpec | None, new: GroupSpec, rollout: Rollout | None, now: float
) -> Rollout | None:
    """The rollout after committing `new` over `current` (whose rollout is `rollout`).

    The same configuration resumes a paused rollout (InfraKit's "commit again to resume");
    a new one starts a rollout from `current`. A group new to the manager has none.
    """
    if current is None:
        return None
    if new.config_hash == current.config_hash:
        return rollout.resumed(now) if rollout is not None else None
    return Rollout(target=new.config_hash, previous=current, since=now)


def rollback(rollout: Rollout, now: float) -> tuple[GroupSpec, Rollout] | None:
    """The spec to roll back to and the rollout that does it, if `rollout` can be rolled back."""
    back = rollout.revert or rollout.previous
    if back is None or rollout.rolling_back:
        return None
    return back, Rollout(target=back.config_hash, rolling_back=True, since=now)
