"""PURE: an operator's hand on a group, checked and put in words: promoting a rollout's
canaries, suspending processes, standby. The manager stores and applies what these return."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from infrakit.group.plan import NO_HOLDS, PROCESSES, Holds
from infrakit.rollout import Rollout
from infrakit.spec import GroupSpec
from infrakit.spi.group import GroupStateError


def promotable(spec: GroupSpec, rollout: Rollout | None) -> Rollout:
    """The rollout of `spec`, if its canaries wait for a promotion; else GroupStateError
    saying why not."""
    why = None
    if rollout is None:
        why = "no rolling update is under way"
    elif not spec.properties.update.canary:
        why = "its Update.Canary is 0"
    elif rollout.rolling_back:
        why = "the rolling update under way is a rollback, which has no canaries"
    elif rollout.promoted:
        why = "its canaries are promoted already"
    elif not rollout.waiting_for_promotion:
        why = f"its canaries are not all healthy yet ({len(rollout.canaries)} replaced so far)"
    if why is not None or rollout is None:
        raise GroupStateError(f"group {spec.id!r} has no canary waiting to be promoted: {why}")
    return rollout


def processes_of(names: Iterable[Any]) -> frozenset[str]:
    """The processes named, checked: ValueError naming one that is not a process."""
    found = []
    for name in names:
        if name not in PROCESSES:
            raise ValueError(f"{name!r} is not a process: give {', '.join(PROCESSES)}")
        found.append(name)
    if not found:
        raise ValueError(f"name a process to suspend: {', '.join(PROCESSES)}")
    return frozenset(found)


def suspended(holds: Holds, processes: frozenset[str], suspend: bool) -> Holds:
    """`holds` with `processes` suspended, or resumed."""
    now = holds.suspended | processes if suspend else holds.suspended - processes
    return replace(holds, suspended=now)


def stood_by(spec: GroupSpec, holds: Holds, logical_id: str, standby: bool) -> Holds:
    """`holds` with `logical_id` in standby or out of it; GroupStateError for a logical ID the
    group does not have."""
    if standby and logical_id not in spec.logical_ids():
        ids = spec.logical_ids()
        shown = ", ".join(ids[:3]) + (f" ... {ids[-1]}" if len(ids) > 3 else "")
        raise GroupStateError(
            f"LogicalID: group {spec.id!r} has no instance {logical_id!r} (its logical IDs:"
            f" {shown or 'none'})"
        )
    now = holds.standby | {logical_id} if standby else holds.standby - {logical_id}
    return replace(holds, standby=now)


def holds_from_json(data: Any) -> Holds:
    """The stored form back (`Holds.to_json`); what is not a process or a string is dropped."""
    if not isinstance(data, dict):
        return NO_HOLDS
    found = data.get("Suspended")
    standby = data.get("Standby")
    return Holds(
        suspended=frozenset(p for p in found if p in PROCESSES)
        if isinstance(found, list)
        else frozenset(),
        standby=frozenset(s for s in standby if isinstance(s, str))
        if isinstance(standby, list)
        else frozenset(),
    )
