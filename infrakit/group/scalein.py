"""Scale-in of a sized group, as a pure choice: which instances go, and which survivors move.

When a sized group has more instances than slots, the ones to remove are chosen by outdated
config first, then out of service (unhealthy first), then Update.TerminationPolicy; protected
and standby instances are never chosen. A survivor living beyond the size moves into a wanted
slot its victim freed: it is relabelled, not re-provisioned. The victim leaves first, so that a
slot never holds two instances, and the state is always what the tags say.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass

from infrakit.group.slots import (
    LEAVING,
    LogicalID,
    Observation,
    Phase,
    SlotStatus,
    is_current,
    is_protected,
    policy_rank,
)
from infrakit.spec import GroupSpec
from infrakit.spi.instance import Description

REASON_OUTDATED = "outdated config"
REASON_NOT_IN_SERVICE = "not in service"
_POLICY_WORDS = {"HighestSlot": "highest slot", "Oldest": "oldest", "Newest": "newest"}


@dataclass(frozen=True)
class Move:
    """A survivor that moves from surplus slot `source` into wanted slot `target`. `ready`: the
    target is empty now (relabel it in); else the target's victim leaves first. `why` says what
    freed the target ("scale-in removed web-1 (outdated config)")."""

    source: LogicalID
    target: LogicalID
    instance: str
    ready: bool
    why: str


@dataclass(frozen=True)
class ScaleIn:
    """The choice: `victims` (slot, why) whose instance goes, `moves`, the surplus slots kept
    for now (`keep`: movers, or not yet reported) and the empty wanted slots not to provision
    (`wait`: a survivor moves in); `deciding` while actors have yet to report, during which
    no instance is replaced either (one of them may be a victim)."""

    victims: tuple[tuple[LogicalID, str], ...] = ()
    moves: tuple[Move, ...] = ()
    keep: frozenset[LogicalID] = frozenset()
    wait: frozenset[LogicalID] = frozenset()
    deciding: bool = False  # waiting for actors' reports: replace nothing meanwhile


NOTHING = ScaleIn()


def slot_number(lid: LogicalID) -> float:
    """The slot of a sized group's logical ID (`web-4` -> 4); anything else sorts above all."""
    _, _, tail = lid.rpartition("-")
    return float(tail) if tail.isdigit() else float("inf")


def choose(
    spec: GroupSpec,
    observations: Mapping[LogicalID, Observation],
    surplus: Sequence[LogicalID],
    status: Mapping[LogicalID, SlotStatus],
    kept: Set[LogicalID],
    standby: Set[LogicalID],
) -> ScaleIn:
    """Which instances a sized group with surplus instances removes, and which move.

    Nothing is chosen while an instance concerned has not been reported on by its actor (after
    a restart): its health decides. A survivor moves only while it runs; one that does not is
    removed instead, and its slot provisioned. `kept` are the surplus slots never removed
    (protected, standby).
    """
    if not spec.is_sized:
        return NOTHING

    def leaving(lid: LogicalID) -> bool:
        report = status.get(lid)
        return report is not None and report.phase in LEAVING

    movable = [
        lid
        for lid in surplus
        if lid not in kept and not leaving(lid) and observations[lid].owned is not None
    ]
    if not movable:  # the common case: nothing beyond the size, and nothing more to do
        return NOTHING
    wanted = [lid for lid in spec.logical_ids() if lid not in standby]
    if not wanted:
        return NOTHING
    free = [lid for lid in wanted if observations[lid].owned is None and lid not in status]
    departing = [lid for lid in wanted if leaving(lid)]
    filled = [lid for lid in wanted if observations[lid].owned is not None and not leaving(lid)]
    if any(_unreported(status.get(lid)) for lid in (*filled, *movable)):
        return ScaleIn(keep=frozenset(movable), wait=frozenset(free), deciding=True)
    protected = {lid for lid in filled if is_protected(_owned(observations, lid))}
    candidates = [lid for lid in filled if lid not in protected] + movable
    room = len(filled) + len(free) + len(departing) - len(protected)
    surplus_set = set(movable)
    fit = {lid for lid in movable if _fit(status[lid])}
    key = _victim_key(spec, observations, status, surplus_set - fit)
    ranked = sorted(candidates, key=key)
    cut = max(0, len(ranked) - room)
    victims, survivors = ranked[:cut], ranked[cut:]
    movers = sorted((lid for lid in survivors if lid in fit), key=slot_number, reverse=True)
    unfit = [lid for lid in survivors if lid in surplus_set and lid not in fit]
    wanted_victims = sorted((lid for lid in victims if lid not in surplus_set), key=slot_number)
    targets = sorted(free, key=slot_number) + sorted(departing, key=slot_number) + wanted_victims
    reasons = {lid: _reason(spec, observations, status, lid) for lid in (*victims, *unfit)}
    moves = []
    for source, target in zip(movers, targets, strict=False):
        owned = _owned(observations, source)
        if target in reasons:
            why = f"scale-in removed {target} ({reasons[target]})"
        else:
            why = f"{target} was empty"
        moves.append(Move(source, target, owned.id, ready=target in free, why=why))
    paired = {move.target for move in moves}
    # A victim in a wanted slot goes only when a survivor moves in: else it stays (for now).
    chosen = [lid for lid in (*victims, *unfit) if lid in surplus_set or lid in paired]
    return ScaleIn(
        victims=tuple((lid, reasons[lid]) for lid in chosen),
        moves=tuple(moves),
        keep=frozenset(movers),
        wait=frozenset(target for target in paired if target in free),
    )


def _owned(observations: Mapping[LogicalID, Observation], lid: LogicalID) -> Description:
    owned = observations[lid].owned
    assert owned is not None
    return owned


def _unreported(report: SlotStatus | None) -> bool:
    return report is None or report.phase is Phase.PENDING


def _fit(report: SlotStatus) -> bool:
    """A survivor worth moving: running, not in the middle of a replacement."""
    return report.phase is Phase.RUNNING and report.outgoing is None


def _victim_key(
    spec: GroupSpec,
    observations: Mapping[LogicalID, Observation],
    status: Mapping[LogicalID, SlotStatus],
    unfit: Set[LogicalID],
) -> Callable[[LogicalID], tuple[bool, bool, bool, bool, float, str]]:
    """Sorts victims first: a surplus instance not worth moving, then outdated config, then out
    of service (unhealthy first), then Update.TerminationPolicy (the same age as a rollout's)."""
    policy = spec.properties.update.termination_policy

    def key(lid: LogicalID) -> tuple[bool, bool, bool, bool, float, str]:
        report = status[lid]
        rank = policy_rank(policy, report.since, slot_number(lid))
        return (
            lid not in unfit,
            is_current(_owned(observations, lid), spec),
            report.phase is not Phase.UNHEALTHY,
            report.phase is Phase.RUNNING,
            rank,
            lid,
        )

    return key


def _reason(
    spec: GroupSpec,
    observations: Mapping[LogicalID, Observation],
    status: Mapping[LogicalID, SlotStatus],
    lid: LogicalID,
) -> str:
    """Why `lid`'s instance is the one to go, in an operator's words."""
    report = status[lid]
    if not is_current(_owned(observations, lid), spec):
        return REASON_OUTDATED
    if report.phase is Phase.UNHEALTHY:
        return "unhealthy"
    if report.phase is not Phase.RUNNING:
        return REASON_NOT_IN_SERVICE
    policy = spec.properties.update.termination_policy
    return f"TerminationPolicy {policy}: {_POLICY_WORDS[policy]}"
