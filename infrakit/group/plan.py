"""The group's decisions, as pure functions: data in, actions out, no actors and no I/O.

`plan()` takes what the group wants (its spec), what exists (one DescribeInstances) and what
each instance actor last reported, and says which actors to start or retire, what each actor
should own, and which instances to replace now for a rolling update or for ill health.
`describe_commit()` says, in InfraKit's words, what a commit would do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import replace as dataclass_replace
from enum import StrEnum
from types import MappingProxyType

from infrakit.rollout import Rollout
from infrakit.spec import GroupSpec
from infrakit.spi.instance import TAG_CONFIG_HASH, TAG_CONFIG_SHA_OLD, TAG_LOGICAL_ID, Description

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
    RETIRING = "retiring"  # leaving the group: drain, destroy, stop
    RETIRED = "retired"  # nothing left; the actor may be stopped


IN_SERVICE = frozenset({Phase.RUNNING})


@dataclass(frozen=True)
class SlotStatus:
    """An instance actor's last report about its logical instance."""

    phase: Phase
    instance_id: str | None = None
    config_hash: str | None = None
    since: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class Observation:
    """What one actor is told exists: the instance it owns (if any) and duplicates to remove."""

    owned: Description | None
    extras: tuple[Description, ...] = ()


@dataclass(frozen=True)
class Plan:
    """What the group should do now, and the rolling update's next state."""

    observations: Mapping[LogicalID, Observation]
    start: tuple[LogicalID, ...] = ()
    retire: tuple[LogicalID, ...] = ()
    replace: tuple[tuple[LogicalID, str], ...] = ()
    unhealthy_held: tuple[LogicalID, ...] = ()
    rollout: Rollout | None = None
    failed: tuple[LogicalID, str] | None = None  # a replacement that never turned healthy
    converged: bool = False


REASON_UPDATE = "rolling update"
REASON_UNHEALTHY = "unhealthy"


def logical_id_of(member: Description) -> LogicalID | None:
    """The logical ID an instance carries: its tag, else its description's LogicalID."""
    return member.tags.get(TAG_LOGICAL_ID) or member.logical_id or None


def hash_of(member: Description) -> str | None:
    """The config hash an instance was made with (InfraKit's older tag name accepted)."""
    return member.tags.get(TAG_CONFIG_HASH) or member.tags.get(TAG_CONFIG_SHA_OLD)


def is_current(member: Description, spec: GroupSpec) -> bool:
    """True when the instance carries the spec's configuration (in any encoding InfraKit used)."""
    found = hash_of(member)
    return found == spec.config_hash or (found is not None and found in spec.legacy_hashes)


def assign(
    spec: GroupSpec,
    members: Sequence[Description],
    status: Mapping[LogicalID, SlotStatus],
) -> tuple[dict[LogicalID, list[Description]], dict[LogicalID, list[Description]]]:
    """Share the members out among logical IDs: (wanted lid -> members, surplus lid -> members).

    Members without a logical ID (made by Go InfraKit, which tagged only named instances) fill
    empty slots of a sized group; what is left over, or carries an ID the spec no longer has, is
    surplus, keyed by its logical ID or, lacking one, by its instance ID.
    """
    wanted = spec.logical_ids()
    wanted_set = set(wanted)
    by_lid: dict[LogicalID, list[Description]] = {lid: [] for lid in wanted}
    surplus: dict[LogicalID, list[Description]] = {}
    untagged: list[Description] = []
    owner_of = {s.instance_id: lid for lid, s in status.items() if s.instance_id}
    for member in sorted(members, key=lambda m: m.id):
        lid = logical_id_of(member) or owner_of.get(member.id)
        if lid is None:
            untagged.append(member)
        elif lid in wanted_set:
            by_lid[lid].append(member)
        else:
            surplus.setdefault(lid, []).append(member)
    if spec.is_sized:
        empty = [lid for lid in wanted if not by_lid[lid]]
        for lid, member in zip(empty, untagged, strict=False):
            by_lid[lid].append(member)
        untagged = untagged[len(empty) :]
    for member in untagged:
        surplus.setdefault(member.id, []).append(member)
    return by_lid, surplus


_NOTHING = Observation(owned=None)


def _pick_owned(
    candidates: list[Description],
    current: SlotStatus | None,
    spec: GroupSpec,
) -> Observation:
    if not candidates:
        return _NOTHING
    if len(candidates) == 1:  # the common case, by far
        return Observation(owned=candidates[0])
    if current is not None and current.instance_id:
        for member in candidates:
            if member.id == current.instance_id:
                rest = tuple(m for m in candidates if m is not member)
                return Observation(owned=member, extras=rest)
    ranked = sorted(candidates, key=lambda m: (not is_current(m, spec), m.id))
    return Observation(owned=ranked[0], extras=tuple(ranked[1:]))


def plan(
    spec: GroupSpec,
    members: Sequence[Description],
    status: Mapping[LogicalID, SlotStatus],
    *,
    now: float,
    rollout: Rollout | None = None,
) -> Plan:
    """Decide the group's next actions, and the rolling update's next state.

    `status` holds every live actor's last report, `rollout` the rolling update under way (if
    any) and `now` the wall-clock time. Replacements share one budget: a rolling update
    replaces an instance only while fewer than Update.MaxParallel wanted instances are out of
    service, and at most Health.MaxInFlight unhealthy ones are replaced at once, unless more
    than Health.MaxUnhealthy are ill, which looks like a wider problem that replacing would not
    cure. A paused update replaces nothing, for any reason, until it is resumed.
    """
    by_lid, surplus = assign(spec, members, status)
    observations: dict[LogicalID, Observation] = {}
    for lid, candidates in by_lid.items():
        observations[lid] = _pick_owned(candidates, status.get(lid), spec)
    for lid, candidates in surplus.items():
        observations[lid] = _pick_owned(candidates, status.get(lid), spec)

    wanted = spec.logical_ids()
    start = tuple(lid for lid in (*wanted, *sorted(surplus)) if lid not in status)
    leaving = (Phase.RETIRING, Phase.RETIRED)
    retire = tuple(
        lid
        for lid in sorted(set(status) | set(surplus))
        if lid not in by_lid and (lid not in status or status[lid].phase not in leaving)
    )

    available = {
        lid
        for lid in wanted
        if (report := status.get(lid)) is not None
        and report.phase in IN_SERVICE
        and observations[lid].owned is not None
    }

    # Rolling update.
    def stale(lid: LogicalID) -> bool:
        owned = observations[lid].owned
        return owned is not None and not is_current(owned, spec)

    if rollout is not None and rollout.target != spec.config_hash:
        rollout = None  # made for another configuration: start over
    started = dict(rollout.in_flight) if rollout is not None else {}
    in_flight = {
        lid: at
        for lid, at in started.items()
        if lid in by_lid and not _settled(lid, status, spec) and not _lost(lid, status, stale)
    }
    stale_lids = [lid for lid in wanted if stale(lid) and lid not in in_flight]
    if rollout is None and (stale_lids or in_flight):
        rollout = Rollout(target=spec.config_hash, since=now)
    paused = rollout.paused if rollout is not None else None
    operator_paused = rollout is not None and rollout.held  # healing goes on
    failed: tuple[LogicalID, str] | None = None
    if rollout is not None and paused is None:
        timeout = spec.properties.update.healthy_timeout
        for lid, at in sorted(in_flight.items()):
            if now - at > timeout:
                failed = (lid, f"not healthy within {timeout:g}s")
                break
        back = rollout.revert or rollout.previous
        can_roll_back = back is not None and not rollout.rolling_back
        if failed is not None and not (
            spec.properties.update.on_failure == "rollback" and can_roll_back
        ):
            paused = f"{failed[0]} {failed[1]}"
            rollout = dataclass_replace(rollout, paused=paused)
    replace: list[tuple[LogicalID, str]] = []
    if stale_lids and paused is None and failed is None:
        busy = {lid for lid in wanted if lid in status and status[lid].phase is Phase.REPLACING}
        unavailable = len(wanted) - len(available)
        room = spec.properties.update.max_parallel - len(in_flight)
        # Stale instances already out of service cost nothing to replace: take them first.
        for lid in sorted(stale_lids, key=lambda lid: lid in available):
            if room <= 0 or lid in busy:
                continue
            if lid in available:
                if unavailable >= spec.properties.update.max_parallel:
                    continue
                unavailable += 1
            replace.append((lid, REASON_UPDATE))
            in_flight[lid] = now
            room -= 1
    if rollout is not None:
        left = len(stale_lids) + len(in_flight) - len(replace)
        total = max(rollout.total, rollout.done + left)
        if not left:
            rollout = None  # done
        else:
            rollout = dataclass_replace(
                rollout,
                total=total,
                done=total - left,
                in_flight=MappingProxyType(in_flight),
            )

    # Self-healing of instances unhealthy past the threshold; a replacement of the rolling
    # update is the update's to judge (Update.HealthyTimeout), not ill health's.
    chosen = {lid for lid, _ in replace}
    sick: list[LogicalID] = []
    healing = 0
    for lid in wanted:
        report = status.get(lid)
        if report is None:
            continue
        if report.phase is Phase.UNHEALTHY and lid not in chosen and lid not in in_flight:
            sick.append(lid)
        elif report.phase is Phase.REPLACING and report.reason == REASON_UNHEALTHY:
            healing += 1
    held: tuple[LogicalID, ...] = ()
    health = spec.properties.health
    # An update paused by its failure holds the sick back; one an operator paused does not.
    failing = paused is not None and not operator_paused
    if sick and (failing or len(sick) + healing > health.max_unhealthy_of(len(wanted))):
        held = tuple(sick)
    else:
        room = health.max_in_flight_of(len(wanted)) - healing
        replace.extend((lid, REASON_UNHEALTHY) for lid in sick[: max(0, room)])

    converged = (
        not start
        and not retire
        and not surplus
        and not replace
        and rollout is None
        and len(available) == len(wanted)
        and all(not observations[lid].extras for lid in wanted)
    )
    return Plan(
        observations=observations,
        start=start,
        retire=retire,
        replace=tuple(replace),
        unhealthy_held=held,
        rollout=rollout,
        failed=failed,
        converged=converged,
    )


def _lost(
    lid: LogicalID, status: Mapping[LogicalID, SlotStatus], stale: Callable[[LogicalID], bool]
) -> bool:
    """A replacement the rollout says began, but that its actor is not making: the slot still
    holds a stale instance and is not replacing it (a crash came between the rollout being
    stored and the actor being told). It is chosen again, not waited on until it times out."""
    report = status.get(lid)
    return stale(lid) and (report is None or report.phase in _NOT_REPLACING)


_NOT_REPLACING = frozenset({Phase.PENDING, Phase.STARTING, Phase.RUNNING, Phase.UNHEALTHY})


def _settled(lid: LogicalID, status: Mapping[LogicalID, SlotStatus], spec: GroupSpec) -> bool:
    report = status.get(lid)
    return (
        report is not None
        and report.phase is Phase.RUNNING
        and report.config_hash == spec.config_hash
    )


def describe_commit(
    current: GroupSpec | None, new: GroupSpec, members: Sequence[Description] = ()
) -> str:
    """InfraKit's sentence for what committing `new` over `current` involves.

    `Managing N instances` for a new group; else `Noop`, or which instances are added,
    terminated and rolled, word for word as Go InfraKit printed them.
    """
    new_ids = new.logical_ids()
    if current is None:
        return f"Managing {len(new_ids)} instances"
    old_ids = current.logical_ids()
    old_set, new_set = set(old_ids), set(new_ids)
    added = [lid for lid in new_ids if lid not in old_set]
    removed = [lid for lid in old_ids if lid not in new_set]
    kept = [lid for lid in new_ids if lid in old_set]
    if current.config_hash != new.config_hash:
        rolling = len(kept)
    else:
        by_lid, _ = assign(new, members, {})
        rolling = sum(1 for lid in kept if any(not is_current(m, new) for m in by_lid.get(lid, [])))
    size = len(new_ids)
    roll = f"rolling update on {rolling} instances"
    if added and removed:
        change = (
            f"Terminating {len(removed)} instances and adding {len(added)} instances"
            f" to change the logical IDs of the group of {size}"
        )
        return f"{change}, then performing a {roll}" if rolling else change
    if added:
        grow = f"adding {len(added)} instances to increase the group size to {size}"
        return f"Performing a {roll}, then {grow}" if rolling else grow[0].upper() + grow[1:]
    if removed:
        shrink = f"Terminating {len(removed)} instances to reduce the group size to {size}"
        return f"{shrink}, then performing a {roll}" if rolling else shrink
    if rolling:
        return f"Performing a {roll}"
    return "Noop"
