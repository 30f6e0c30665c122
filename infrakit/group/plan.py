"""The group's decisions, as pure functions: data in, actions out, no actors and no I/O.

`plan()` takes what the group wants (its spec), what exists (one DescribeInstances) and what
each instance actor last reported, and says which actors to start or retire, what each actor
should own, and which instances to replace now for a rolling update or for ill health.
`describe_commit()` says, in InfraKit's words, what a commit would do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from dataclasses import replace as dataclass_replace
from types import MappingProxyType

from infrakit.group.scalein import Move, ScaleIn, choose
from infrakit.group.slots import IN_SERVICE as IN_SERVICE
from infrakit.group.slots import LEAVING, created, policy_rank
from infrakit.group.slots import LogicalID as LogicalID
from infrakit.group.slots import Observation as Observation
from infrakit.group.slots import Phase as Phase
from infrakit.group.slots import SlotStatus as SlotStatus
from infrakit.group.slots import hash_of as hash_of
from infrakit.group.slots import is_current as is_current
from infrakit.group.slots import is_protected as is_protected
from infrakit.rollout import Rollout
from infrakit.spec import GroupSpec
from infrakit.spi.group import PROCESSES as _PROCESSES
from infrakit.spi.instance import TAG_LOGICAL_ID, Description


@dataclass(frozen=True)
class Plan:
    """What the group should do now, and the rolling update's next state."""

    observations: Mapping[LogicalID, Observation]
    start: tuple[LogicalID, ...] = ()
    retire: tuple[LogicalID, ...] = ()
    replace: tuple[tuple[LogicalID, str], ...] = ()
    surge: frozenset[LogicalID] = frozenset()  # of `replace`: make the new one first
    unhealthy_held: tuple[LogicalID, ...] = ()
    protected_held: tuple[LogicalID, ...] = ()  # surplus slots kept: their instance is protected
    release: tuple[LogicalID, ...] = ()  # actors to stop without destroying (protected, moved)
    victims: tuple[tuple[LogicalID, str], ...] = ()  # scale-in: whose instance goes, and why
    moves: tuple[Move, ...] = ()  # scale-in: survivors relabelled into wanted slots
    rollout: Rollout | None = None
    failed: tuple[LogicalID, str] | None = None  # a replacement that never turned healthy
    converged: bool = False


# What an operator may suspend in a group (infrakit/spi/group.py's PROCESSES): `heal` replaces
# no unhealthy or vanished instance, `launch` provisions nothing, `terminate` destroys nothing,
# `rollout` takes no rolling-update step.
PROCESSES = _PROCESSES


@dataclass(frozen=True)
class Holds:
    """What an operator holds a group back from: the suspended `PROCESSES`, and the logical IDs
    in standby (out of the group's counts, never replaced nor destroyed by it). Stored with the
    group's spec; a destroy ignores them."""

    suspended: frozenset[str] = frozenset()
    standby: frozenset[LogicalID] = frozenset()

    def blocks(self, process: str) -> bool:
        return process in self.suspended

    @property
    def stops_rollouts(self) -> bool:
        """A rolling update takes no step (and its clocks do not judge it): it needs to
        launch, or to terminate, or its own process is suspended."""
        return bool(self.suspended & {"rollout", "launch", "terminate"})

    @property
    def stops_healing(self) -> bool:
        """No unhealthy instance is replaced: that needs healing, launching and terminating."""
        return bool(self.suspended & {"heal", "launch", "terminate"})

    def to_json(self) -> dict[str, list[str]]:
        return {"Suspended": sorted(self.suspended), "Standby": sorted(self.standby)}


NO_HOLDS = Holds()

REASON_UPDATE = "rolling update"
REASON_UNHEALTHY = "unhealthy"


def logical_id_of(member: Description) -> LogicalID | None:
    """The logical ID an instance carries: its tag, else its description's LogicalID."""
    return member.tags.get(TAG_LOGICAL_ID) or member.logical_id or None


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
    """Which candidate the slot's actor owns: the one it reports, else the current-config one;
    the rest are duplicates, but for the old instance of a surged replacement under way."""
    if current is not None and current.outgoing is not None:
        outgoing = next((m for m in candidates if m.id == current.outgoing), None)
        if outgoing is not None:
            others = [m for m in candidates if m is not outgoing]
            picked = _pick_owned(others, current, spec)
            return Observation(owned=picked.owned, extras=picked.extras, outgoing=outgoing)
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
    holds: Holds = NO_HOLDS,
    can_move: bool = True,
) -> Plan:
    """Decide the group's next actions, and the rolling update's next state.

    `status` holds every live actor's last report, `rollout` the rolling update under way (if
    any) and `now` the wall-clock time. A rolling update replaces a stale instance in place
    while fewer than Update.MaxUnavailable wanted instances are out of service or, in a sized
    group, makes its replacement first (surge) while fewer than Update.MaxSurge extra instances
    exist; a replacement is done once healthy for Update.MinReadyTime. At most
    Health.MaxInFlight unhealthy instances are replaced at once, unless more than
    Health.MaxUnhealthy are ill, which looks like a wider problem that replacing would not
    cure. A paused update replaces nothing, for any reason, until it is resumed.

    With Update.Canary N, a rollout first replaces N instances (within the same budgets), then
    waits, once they are healthy, until it is promoted (`infrakit group promote`, or
    Update.AutoPromote after the canaries turned healthy); a rollback has no canaries. `holds`
    says what an operator suspended (`PROCESSES`) and which slots are in standby: those are
    left out of every count and never replaced nor removed.

    A sized group with more instances than slots removes them in scale-in's order (see
    `scalein.choose`) and moves survivors into the slots their victims free; with `can_move`
    False (the instance plugin cannot relabel) it removes the highest slots instead.
    """
    by_lid, surplus = assign(spec, members, status)
    observations: dict[LogicalID, Observation] = {}
    for lid, candidates in by_lid.items():
        observations[lid] = _pick_owned(candidates, status.get(lid), spec)
    for lid, candidates in surplus.items():
        observations[lid] = _pick_owned(candidates, status.get(lid), spec)

    # Scale-in never removes a protected instance: its slot is left alone, actor and all.
    protected = {lid for lid, found in surplus.items() if any(map(is_protected, found))}
    standby = holds.standby
    kept = protected | (standby & set(surplus))  # never removed by the group
    no_terminate = holds.blocks("terminate")
    if no_terminate:  # duplicates stay too
        observations = {
            lid: dataclass_replace(found, extras=()) for lid, found in observations.items()
        }
    leaving = LEAVING
    scale = _scale_in(spec, observations, surplus, status, kept, holds) if can_move else _NONE
    wanted = spec.logical_ids()
    start = tuple(
        lid
        for lid in (*wanted, *sorted(surplus))
        if lid not in status and lid not in kept and lid not in scale.wait
    )
    dropped = [
        lid
        for lid in sorted(set(status) | set(surplus))
        if lid not in by_lid
        and lid not in kept
        and lid not in scale.keep
        and not no_terminate
        and (lid not in status or status[lid].phase not in leaving)
    ]
    # An actor whose instance now carries another slot's tag (moved) leaves it alone.
    moved = _moved_away(dropped, status, observations)
    victims_wanted = [lid for lid, _ in scale.victims if lid in by_lid]
    retire = tuple(lid for lid in dropped if lid not in moved) + tuple(victims_wanted)
    release = tuple(
        lid for lid in sorted(protected) if lid in status and status[lid].phase not in leaving
    ) + tuple(moved)
    # Wanted slots on their way out of a scale-in are neither rolled nor healed.
    departing = set(victims_wanted) | {
        lid for lid in wanted if lid in status and status[lid].phase in leaving
    }

    counted = [lid for lid in wanted if lid not in standby]  # standby is out of the counts
    available = {lid for lid in counted if _in_service(lid, status, observations)}

    # Rolling update.
    update = spec.properties.update

    def stale(lid: LogicalID) -> bool:
        owned = observations[lid].owned
        return owned is not None and not is_current(owned, spec)

    if rollout is not None and rollout.target != spec.config_hash:
        rollout = None  # made for another configuration: start over
    started = dict(rollout.in_flight) if rollout is not None else {}
    in_flight = {
        lid: at
        for lid, at in started.items()
        if lid in by_lid
        and lid not in departing
        and not _settled(lid, status, spec, now)
        and not _lost(lid, status, stale)
    }
    stale_lids = [
        lid for lid in counted if stale(lid) and lid not in in_flight and lid not in departing
    ]
    if rollout is None and (stale_lids or in_flight):
        rollout = Rollout(target=spec.config_hash, since=now)
    paused = rollout.paused if rollout is not None else None
    operator_paused = rollout is not None and rollout.held  # healing goes on
    held_steps = holds.stops_rollouts or scale.deciding
    # AutoPromote waits while the rollout is paused or held, as everything else does.
    auto = update.auto_promote if paused is None and not held_steps else None
    canary = _canary_phase(rollout, (update.canary, auto), stale_lids, in_flight, set(wanted), now)
    if rollout is not None and canary.rollout is not None:
        rollout = canary.rollout
    failed: tuple[LogicalID, str] | None = None
    # An operator's hold (a suspended process) stops the rollout's clocks as well as its steps.
    if rollout is not None and paused is None and not held_steps:
        timeout = update.healthy_timeout
        for lid, at in sorted(in_flight.items()):
            if now - at > timeout:
                failed = (lid, f"not healthy within {timeout:g}s")
                break
        deadline = update.progress_deadline
        if (
            failed is None
            and not canary.waiting
            and rollout.since
            and now - rollout.since > deadline
        ):
            late = min(in_flight, default=None) or (stale_lids[0] if stale_lids else "")
            failed = (late, f"rolling update not done within its ProgressDeadline {deadline:g}s")
        back = rollout.revert or rollout.previous
        can_roll_back = back is not None and not rollout.rolling_back
        if failed is not None and not (update.on_failure == "rollback" and can_roll_back):
            paused = f"{failed[0]} {failed[1]}".strip()
            rollout = dataclass_replace(rollout, paused=paused)
    replace: list[tuple[LogicalID, str]] = []
    surge: set[LogicalID] = set()
    canaries = set(canary.chosen)
    if stale_lids and paused is None and failed is None and not held_steps and not canary.waiting:
        size = len(counted)
        max_surge = update.max_surge_of(size) if spec.is_sized else 0
        max_unavailable = update.max_unavailable_of(size)
        busy = {lid for lid in counted if lid in status and status[lid].phase is Phase.REPLACING}
        surging = {lid for lid in counted if _surging(lid, status)}
        in_place = {lid for lid in in_flight if lid not in surging}
        unavailable = size - len(available)
        order = termination_order(spec, stale_lids, status, available, begun=set(started))
        for lid in order:
            if lid in busy:
                continue
            if canary.gated and lid not in canaries and len(canaries) >= update.canary:
                continue  # the canaries first: the rest waits for the promotion
            if lid in available and len(surging) < max_surge:
                surging.add(lid)  # make-before-break: nothing goes out of service
                surge.add(lid)
            elif len(in_place) < max(max_unavailable, 1) and (
                lid not in available or unavailable < max_unavailable
            ):
                if lid in available:
                    unavailable += 1
                in_place.add(lid)
            else:
                continue
            replace.append((lid, REASON_UPDATE))
            in_flight[lid] = now
            if canary.gated:
                canaries.add(lid)
    if rollout is not None and canary.gated:
        rollout = dataclass_replace(rollout, canaries=tuple(sorted(canaries)))
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
    for lid in counted:
        report = status.get(lid)
        if report is None:
            continue
        if lid in departing:
            continue
        if report.phase is Phase.UNHEALTHY and lid not in chosen and lid not in in_flight:
            sick.append(lid)
        elif report.phase is Phase.REPLACING and report.reason == REASON_UNHEALTHY:
            healing += 1
    held: tuple[LogicalID, ...] = ()
    health = spec.properties.health
    # An update paused by its failure holds the sick back; one an operator paused does not.
    failing = paused is not None and not operator_paused
    if sick and (failing or len(sick) + healing > health.max_unhealthy_of(len(counted))):
        held = tuple(sick)
    elif not holds.stops_healing and not scale.deciding:
        room = health.max_in_flight_of(len(wanted)) - healing
        replace.extend((lid, REASON_UNHEALTHY) for lid in sick[: max(0, room)])

    converged = (
        not start
        and not retire
        and not release
        and not (set(surplus) - kept)
        and not replace
        and rollout is None
        and len(available) == len(counted)
        and all(not observations[lid].extras for lid in wanted)
        and not any(_surging(lid, status) for lid in wanted)
        and not scale.moves
        and not scale.wait
    )
    return Plan(
        observations=observations,
        start=start,
        retire=retire,
        replace=tuple(replace),
        surge=frozenset(surge),
        unhealthy_held=held,
        protected_held=tuple(sorted(protected)),
        release=release,
        victims=scale.victims,
        moves=scale.moves,
        rollout=rollout,
        failed=failed,
        converged=converged,
    )


_NONE = ScaleIn()


def _scale_in(
    spec: GroupSpec,
    observations: Mapping[LogicalID, Observation],
    surplus: Mapping[LogicalID, list[Description]],
    status: Mapping[LogicalID, SlotStatus],
    kept: Set[LogicalID],
    holds: Holds,
) -> ScaleIn:
    """Scale-in's choice, unless an operator suspended terminating (nothing is removed)."""
    if holds.blocks("terminate"):
        return _NONE
    return choose(spec, observations, sorted(surplus), status, kept, holds.standby)


def _moved_away(
    lids: Sequence[LogicalID],
    status: Mapping[LogicalID, SlotStatus],
    observations: Mapping[LogicalID, Observation],
) -> list[LogicalID]:
    """Of `lids`, the actors whose instance is now another slot's (a scale-in moved it there):
    they are released, never retired, so that the instance they still think theirs lives on."""
    if not lids:
        return []
    owner = {found.owned.id: lid for lid, found in observations.items() if found.owned is not None}
    moved = []
    for lid in lids:
        report = status.get(lid)
        iid = report.instance_id if report is not None else None
        if iid is not None and owner.get(iid, lid) != lid:
            moved.append(lid)
    return moved


@dataclass(frozen=True)
class _Canary:
    """Where a rollout is with its canaries: `gated` while they come first, `waiting` once
    they are healthy and the rest waits for the promotion; `rollout` with its canary fields
    brought up to date (None: unchanged)."""

    gated: bool = False
    waiting: bool = False
    chosen: tuple[LogicalID, ...] = ()
    rollout: Rollout | None = None


def _canary_phase(
    rollout: Rollout | None,
    wanted_canary: tuple[int, float | None],
    stale_lids: Sequence[LogicalID],
    in_flight: Mapping[LogicalID, float],
    wanted: Set[LogicalID],
    now: float,
) -> _Canary:
    """The canary phase of `rollout` (Update.Canary `count`): none for a rollback or once
    promoted; waiting when `count` canaries are replaced and healthy while stale instances
    remain; promoted by Update.AutoPromote when its time has come (the rest then rolls, with
    its ProgressDeadline counted from now)."""
    count, after = wanted_canary
    if rollout is None or not count or rollout.rolling_back or rollout.promoted:
        return _Canary()
    chosen = tuple(lid for lid in rollout.canaries if lid in wanted)
    stale = set(stale_lids)
    rest = [lid for lid in stale_lids if lid not in chosen]
    healthy = len(chosen) >= count and not any(c in in_flight or c in stale for c in chosen)
    if not healthy or not rest:
        return _Canary(gated=True, chosen=chosen)
    ready = rollout.canary_ready or now
    if after is not None and now - ready >= after:
        promoted = dataclass_replace(rollout.promote(now), canaries=chosen)
        return _Canary(chosen=chosen, rollout=promoted)
    waiting = dataclass_replace(rollout, canary_ready=ready, canaries=chosen)
    return _Canary(gated=True, waiting=True, chosen=chosen, rollout=waiting)


def termination_order(
    spec: GroupSpec,
    lids: Sequence[LogicalID],
    status: Mapping[LogicalID, SlotStatus],
    available: set[LogicalID],
    begun: Set[LogicalID] = frozenset(),
) -> list[LogicalID]:
    """The order in which a rolling update takes stale instances: those out of service first
    (replacing them costs nothing), the unhealthy among them before the rest, then those whose
    replacement the rollout had begun (a crash lost it), then by
    Update.TerminationPolicy: `HighestSlot` (the highest slot or last logical ID first),
    `Oldest` or `Newest` (by when the slot's instance was made or adopted)."""
    policy = spec.properties.update.termination_policy
    position = {lid: index for index, lid in enumerate(spec.logical_ids())}

    def key(lid: LogicalID) -> tuple[bool, bool, bool, float]:
        report = status.get(lid)
        unhealthy = report is not None and report.phase is Phase.UNHEALTHY
        since = report.since if report is not None else 0.0
        rank = policy_rank(policy, since, position.get(lid, 0))
        return (lid in available, not unhealthy, lid not in begun, rank)

    return sorted(lids, key=key)


def _in_service(
    lid: LogicalID, status: Mapping[LogicalID, SlotStatus], observations: Mapping[str, Observation]
) -> bool:
    """Whether the slot serves: its instance is running, or the old instance of its surged
    replacement still runs beside the new one."""
    report = status.get(lid)
    if report is None:
        return False
    observed = observations[lid]
    if report.outgoing is not None and observed.outgoing is not None:
        return True
    return report.phase in IN_SERVICE and observed.owned is not None


def _surging(lid: LogicalID, status: Mapping[LogicalID, SlotStatus]) -> bool:
    report = status.get(lid)
    return report is not None and report.outgoing is not None


def _lost(
    lid: LogicalID, status: Mapping[LogicalID, SlotStatus], stale: Callable[[LogicalID], bool]
) -> bool:
    """A replacement the rollout says began, but that its actor is not making: the slot still
    holds a stale instance and is not replacing it (a crash came between the rollout being
    stored and the actor being told). It is chosen again, not waited on until it times out."""
    report = status.get(lid)
    return stale(lid) and (report is None or report.phase in _NOT_REPLACING)


_NOT_REPLACING = frozenset({Phase.PENDING, Phase.STARTING, Phase.RUNNING, Phase.UNHEALTHY})


def _settled(
    lid: LogicalID, status: Mapping[LogicalID, SlotStatus], spec: GroupSpec, now: float
) -> bool:
    """A replacement is done: its instance runs the spec's config, no old one is left beside
    it, and it has been healthy for Update.MinReadyTime."""
    report = status.get(lid)
    if (
        report is None
        or report.phase is not Phase.RUNNING
        or report.config_hash != spec.config_hash
        or report.outgoing is not None
    ):
        return False
    ready = spec.properties.update.min_ready_time
    return not ready or (report.ready_at is not None and now - report.ready_at >= ready)


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


@dataclass(frozen=True)
class PlannedChange:
    """What committing a spec does to one logical instance: `action` is keep, replace, add or
    remove; `reason` says why in an operator's words; `instance` the instance it concerns."""

    logical_id: LogicalID
    action: str
    reason: str
    instance: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {
            "LogicalID": self.logical_id,
            "Action": self.action,
            "Reason": self.reason,
            "Instance": self.instance,
        }


def commit_plan(
    current: GroupSpec | None, new: GroupSpec, members: Sequence[Description] = ()
) -> tuple[PlannedChange, ...]:
    """`describe_commit`'s structured twin: per logical instance of `current` and `new`, what
    committing `new` does to it and why (`config abcd1234 -> ef567890`, `size 3 -> 2`), the
    new spec's instances first, then those it drops. `members` are the instances the group
    last saw."""
    if current is None:
        return tuple(PlannedChange(lid, "add", "new group") for lid in new.logical_ids())
    new_ids, old_ids = new.logical_ids(), current.logical_ids()
    old_set, new_set = set(old_ids), set(new_ids)
    by_lid, _ = assign(new, members, {})
    old_by_lid, _ = assign(current, members, {})
    target = new.config_hash[:8]
    sized = new.is_sized and current.is_sized
    resize = f"size {len(old_ids)} -> {len(new_ids)}"
    changes: list[PlannedChange] = []
    moving = _pretend_moves(current, new, members)
    for lid in new_ids:
        if lid in moving:
            changes.append(moving[lid])
            continue
        if lid not in old_set:
            changes.append(
                PlannedChange(lid, "add", resize if sized else "new in Allocation.LogicalIDs")
            )
            continue
        found = by_lid.get(lid, [])
        stale = next((m for m in found if not is_current(m, new)), None)
        if stale is not None:
            was = (hash_of(stale) or "?")[:8]
            reason = f"config {was} -> {target}"
            changes.append(PlannedChange(lid, "replace", reason, stale.id))
        elif not found and current.config_hash != new.config_hash:
            reason = f"config {current.config_hash[:8]} -> {target}"
            changes.append(PlannedChange(lid, "replace", reason))
        else:
            kept = found[0].id if found else None
            changes.append(PlannedChange(lid, "keep", f"config {target}", kept))
    for lid in old_ids:
        if lid in new_set:
            continue
        if lid in moving:
            changes.append(moving[lid])
            continue
        found = old_by_lid.get(lid, [])
        reason = resize if sized else "not in Allocation.LogicalIDs any more"
        changes.append(PlannedChange(lid, "remove", reason, found[0].id if found else None))
    return tuple(changes)


def _pretend_moves(
    current: GroupSpec, new: GroupSpec, members: Sequence[Description]
) -> dict[LogicalID, PlannedChange]:
    """What a Size decrease's moves do, per logical ID: a wanted slot's instance removed (an
    outdated one, or by TerminationPolicy) and the survivor that moves into its slot. Health is
    the runtime's to know when it happens: every instance is taken as healthy here."""
    if not (current.is_sized and new.is_sized) or len(new.logical_ids()) >= len(members):
        return {}
    by_lid, surplus = assign(new, members, {})
    observations = {lid: _pick_owned(found, None, new) for lid, found in by_lid.items()}
    observations.update({lid: _pick_owned(found, None, new) for lid, found in surplus.items()})
    status = {}
    for lid, found in observations.items():
        owned = found.owned
        if owned is not None:
            status[lid] = SlotStatus(Phase.RUNNING, owned.id, since=created(owned) or 0.0)
    kept = {lid for lid, found in surplus.items() if any(map(is_protected, found))}
    choice = choose(new, observations, sorted(surplus), status, kept, frozenset())
    why = dict(choice.victims)
    resize = f"size {len(current.logical_ids())} -> {len(new.logical_ids())}"
    changes: dict[LogicalID, PlannedChange] = {}
    for move in choice.moves:
        victim = observations[move.target].owned
        reason = f"{resize}: {why.get(move.target, 'empty')}; {move.instance} moves in"
        victim_id = victim.id if victim is not None else None
        changes[move.target] = PlannedChange(move.target, "remove", reason, victim_id)
        changes[move.source] = PlannedChange(
            move.source, "keep", f"{resize}: moves to {move.target}", move.instance
        )
    return changes
