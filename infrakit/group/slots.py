"""What a group knows of its slots: an actor's phase and report, what it is told exists, and
the instance tags that the planner and the scale-in choice both read."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from infrakit.spec import TAG_PROTECTED, GroupSpec
from infrakit.spi.instance import TAG_CONFIG_HASH, TAG_CONFIG_SHA_OLD, TAG_CREATED, Description

LogicalID = str


class Phase(StrEnum):
    """Where an instance actor is in its lifecycle, as it last reported."""

    PENDING = "pending"  # just started, nothing done yet
    PROVISIONING = "provisioning"  # Prepare + Provision in flight
    STARTING = "starting"  # provisioned, within its grace period, not yet healthy
    RUNNING = "running"  # present and healthy
    UNHEALTHY = "unhealthy"  # unhealthy past the group's threshold; waiting to be replaced
    REPLACING = "replacing"  # draining / destroying the old instance before a new one
    FAILING = "failing"  # provisioning keeps failing; retrying with backoff
    HELD = "held"  # no instance, and an operator's hold (suspend, standby) keeps it so
    RETIRING = "retiring"  # leaving the group: drain, destroy, stop
    RETIRED = "retired"  # nothing left; the actor may be stopped


IN_SERVICE = frozenset({Phase.RUNNING})


@dataclass(frozen=True)
class SlotStatus:
    """An instance actor's last report about its logical instance.

    `outgoing` is the old instance a surged replacement keeps in service until the new one
    (`instance_id`) is ready; `ready_at` when (wall clock) the instance last became healthy;
    `note` something an operator should know (a drain abandoned); `since` when (wall clock)
    the instance was made, from its `infrakit.created` tag, else when the actor adopted it: the
    age Update.TerminationPolicy's Oldest and Newest rank by.
    """

    phase: Phase
    instance_id: str | None = None
    config_hash: str | None = None
    since: float = 0.0
    reason: str = ""
    outgoing: str | None = None
    ready_at: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Observation:
    """What one actor is told exists: the instance it owns (if any), duplicates to remove, and
    the old instance its surged replacement keeps in service (if it still exists)."""

    owned: Description | None
    extras: tuple[Description, ...] = ()
    outgoing: Description | None = None


LEAVING = frozenset({Phase.RETIRING, Phase.RETIRED})


def hash_of(member: Description) -> str | None:
    """The config hash an instance was made with (InfraKit's older tag name accepted)."""
    return member.tags.get(TAG_CONFIG_HASH) or member.tags.get(TAG_CONFIG_SHA_OLD)


def is_current(member: Description, spec: GroupSpec) -> bool:
    """True when the instance carries the spec's configuration (in any encoding InfraKit used)."""
    found = hash_of(member)
    return found == spec.config_hash or (found is not None and found in spec.legacy_hashes)


def is_protected(member: Description) -> bool:
    """True when the instance is tagged `infrakit.protected=true` (never removed to scale in)."""
    return member.tags.get(TAG_PROTECTED, "").strip().lower() == "true"


def created(member: Description) -> float | None:
    """When the instance was made (its `infrakit.created` tag, UTC epoch seconds); None for
    one made before the tag existed, or by another tool."""
    try:
        return float(member.tags[TAG_CREATED])
    except (KeyError, ValueError):
        return None


def policy_rank(policy: str, since: float, position: float) -> float:
    """Where Update.TerminationPolicy puts an instance among those otherwise alike, lowest
    first: `Oldest` by when it was made (`since`), `Newest` the reverse, `HighestSlot` the
    highest `position` first. One reading for rolling updates and scale-in alike."""
    if policy == "Oldest":
        return since
    if policy == "Newest":
        return -since
    return -position
