"""The planner's canary and maintenance decisions (issue 14, phase 2): Update.Canary waits for
a promotion (or AutoPromote), a rollback has no canaries, suspended processes and instances in
standby are data the planner takes."""

from __future__ import annotations

from typing import Any

import pytest
from test_plan_surge import group  # a sized group of file instances, with Update keys

from infrakit.group.plan import (
    REASON_UNHEALTHY,
    REASON_UPDATE,
    Holds,
    Phase,
    Plan,
    SlotStatus,
    plan,
)
from infrakit.manager import maintenance
from infrakit.rollout import Rollout, begin
from infrakit.spec import GroupSpec
from infrakit.spi import Description
from infrakit.spi.group import GroupStateError
from infrakit.spi.instance import TAG_CONFIG_HASH, TAG_GROUP, TAG_LOGICAL_ID


class Slots:
    """A sized group's instances and their actors' reports, edited as a test goes."""

    def __init__(self, spec: GroupSpec, size: int = 4) -> None:
        self.members = {f"g-{n}": self.made(f"i{n}", f"g-{n}", spec) for n in range(size)}
        self.status = {
            lid: SlotStatus(Phase.RUNNING, m.id, spec.config_hash, ready_at=0.0)
            for lid, m in self.members.items()
        }

    @staticmethod
    def made(iid: str, lid: str, spec: GroupSpec) -> Description:
        tags = {TAG_GROUP: "g", TAG_CONFIG_HASH: spec.config_hash, TAG_LOGICAL_ID: lid}
        return Description(id=iid, tags=tags)

    def replaced(self, lid: str, spec: GroupSpec) -> None:
        """The slot's replacement runs, healthy, with `spec`."""
        new = self.made(f"{lid}-new", lid, spec)
        self.members[lid] = new
        self.status[lid] = SlotStatus(Phase.RUNNING, new.id, spec.config_hash, ready_at=0.0)

    def plan(self, spec: GroupSpec, rollout: Rollout | None, now: float, **kw: Any) -> Plan:
        return plan(spec, list(self.members.values()), self.status, now=now, rollout=rollout, **kw)


def updates(found: Plan) -> list[str]:
    return [lid for lid, why in found.replace if why == REASON_UPDATE]


def canary_rollout(old: GroupSpec, new: GroupSpec) -> Rollout:
    return Rollout(target=new.config_hash, previous=old, since=1.0)


def test_a_canary_of_one_is_replaced_alone_then_the_rollout_waits_for_its_promotion() -> None:
    old, new = group(), group(note="v2", Canary=1, MaxSurge=2, MaxUnavailable=2)
    slots = Slots(old)
    first = slots.plan(new, canary_rollout(old, new), now=2.0)
    assert len(updates(first)) == 1  # the budgets would allow 4
    assert first.rollout is not None and first.rollout.canaries == tuple(updates(first))
    (canary,) = updates(first)
    slots.status[canary] = SlotStatus(Phase.PROVISIONING, outgoing="x")
    again = slots.plan(new, first.rollout, now=3.0)
    assert updates(again) == [] and again.rollout is not None
    assert not again.rollout.waiting_for_promotion  # the canary is not healthy yet

    slots.replaced(canary, new)
    waiting = slots.plan(new, again.rollout, now=4.0)
    assert updates(waiting) == [] and not waiting.converged
    assert waiting.rollout is not None and waiting.rollout.waiting_for_promotion
    assert waiting.rollout.canary_ready == 4.0
    later = slots.plan(new, waiting.rollout, now=5000.0)  # long past the ProgressDeadline
    assert updates(later) == [] and later.failed is None
    assert later.rollout is not None and later.rollout.paused is None

    promoted = slots.plan(new, waiting.rollout.promote(5000.0), now=5001.0)
    assert len(updates(promoted)) == 3 and canary not in updates(promoted)


def test_auto_promote_rolls_the_rest_once_its_time_after_the_canaries_is_up() -> None:
    old, new = group(), group(note="v2", Canary=1, AutoPromote="30s", MaxUnavailable=4)
    slots = Slots(old)
    first = slots.plan(new, canary_rollout(old, new), now=2.0)
    slots.replaced(updates(first)[0], new)
    waiting = slots.plan(new, first.rollout, now=10.0)
    assert updates(waiting) == [] and waiting.rollout is not None
    early = slots.plan(new, waiting.rollout, now=39.0)
    assert updates(early) == []
    held = Holds(suspended=frozenset({"rollout"}))
    assert updates(slots.plan(new, waiting.rollout, now=40.0, holds=held)) == []
    due = slots.plan(new, waiting.rollout, now=40.0)
    assert len(updates(due)) == 3
    assert due.rollout is not None and due.rollout.promoted and due.rollout.since == 40.0


def test_auto_promote_true_promotes_as_soon_as_the_canaries_are_healthy() -> None:
    assert group(Canary=1, AutoPromote=True).properties.update.auto_promote == 0.0
    assert group(Canary=1, AutoPromote=False).properties.update.auto_promote is None
    old, new = group(), group(note="v2", Canary=1, AutoPromote=True, MaxUnavailable=4)
    slots = Slots(old)
    first = slots.plan(new, canary_rollout(old, new), now=2.0)
    slots.replaced(updates(first)[0], new)
    assert len(updates(slots.plan(new, first.rollout, now=3.0))) == 3


def test_a_rollback_has_no_canaries() -> None:
    old, new = group(), group(note="v2", Canary=1, MaxUnavailable=4)
    slots = Slots(new)  # rolling back from new to old, whose spec also says Canary 1
    back = group(Canary=1, MaxUnavailable=4)
    rollout = Rollout(target=back.config_hash, rolling_back=True, since=1.0)
    assert len(updates(slots.plan(back, rollout, now=2.0))) == 4
    assert old.config_hash == back.config_hash


def test_a_canary_that_never_turns_healthy_fails_the_rollout_for_on_failure() -> None:
    old = group()
    new = group(note="v2", Canary=1, HealthyTimeout="10s", OnFailure="rollback")
    slots = Slots(old)
    first = slots.plan(new, canary_rollout(old, new), now=2.0)
    (canary,) = updates(first)
    slots.members[canary] = slots.made("c", canary, new)
    slots.status[canary] = SlotStatus(Phase.STARTING, "c", new.config_hash)
    failed = slots.plan(new, first.rollout, now=20.0)
    assert failed.failed is not None and failed.failed[0] == canary
    assert failed.rollout is not None and failed.rollout.paused is None  # OnFailure rolls back


def test_a_canary_count_beyond_what_is_stale_rolls_everything_without_waiting() -> None:
    old, new = group(2), group(2, note="v2", Canary=5, MaxUnavailable=2)
    slots = Slots(old, 2)
    first = slots.plan(new, canary_rollout(old, new), now=2.0)
    assert len(updates(first)) == 2
    for lid in updates(first):
        slots.replaced(lid, new)
    done = slots.plan(new, first.rollout, now=3.0)
    assert done.rollout is None and done.converged


def test_canary_state_is_stored_with_the_rollout() -> None:
    old, new = group(), group(note="v2", Canary=1)
    rollout = Rollout(
        target=new.config_hash, previous=old, canaries=("g-3",), canary_ready=7.0, promoted=True
    )
    back = Rollout.from_json(rollout.to_json())
    assert (back.canaries, back.canary_ready, back.promoted) == (("g-3",), 7.0, True)


# -- suspended processes and standby ------------------------------------------------------


def sick(slots: Slots, lid: str, spec: GroupSpec) -> None:
    slots.status[lid] = SlotStatus(Phase.UNHEALTHY, slots.members[lid].id, spec.config_hash)


def test_suspended_heal_launch_or_terminate_replaces_no_unhealthy_instance() -> None:
    spec = group()
    for process in ("heal", "launch", "terminate"):
        slots = Slots(spec)
        sick(slots, "g-1", spec)
        held = slots.plan(spec, None, now=1.0, holds=Holds(suspended=frozenset({process})))
        assert held.replace == () and not held.converged, process
    slots = Slots(spec)
    sick(slots, "g-1", spec)
    assert slots.plan(spec, None, now=1.0).replace == (("g-1", REASON_UNHEALTHY),)


def test_suspended_rollout_takes_no_step_and_its_wait_is_not_the_deadline() -> None:
    old, new = group(), group(note="v2", ProgressDeadline="10s", HealthyTimeout="5s")
    slots = Slots(old)
    holds = Holds(suspended=frozenset({"rollout"}))
    held = slots.plan(new, canary_rollout(old, new), now=100.0, holds=holds)
    assert held.replace == () and held.failed is None and held.rollout is not None
    slots.members["g-3"] = slots.made("n3", "g-3", new)
    slots.status["g-3"] = SlotStatus(Phase.STARTING, "n3", new.config_hash)
    in_flight = Rollout(
        target=new.config_hash, previous=old, since=1.0, in_flight={"g-3": 1.0}, total=4
    )
    still = slots.plan(new, in_flight, now=100.0, holds=holds)
    assert still.failed is None and still.replace == ()
    assert slots.plan(new, in_flight, now=100.0).failed is not None


def test_a_new_commit_while_canaries_wait_starts_the_canaries_over() -> None:
    old, new = group(), group(note="v2", Canary=1)
    waiting = Rollout(
        target=new.config_hash, previous=old, canaries=("g-3",), canary_ready=5.0, total=4
    )
    newer = group(note="v3", Canary=1)
    again = begin(new, newer, waiting, now=9.0)
    assert again is not None and again.canaries == () and not again.waiting_for_promotion


def test_suspended_terminate_keeps_scale_in_and_duplicates() -> None:
    spec = group(4)
    slots = Slots(spec, 4)
    smaller = group(2)
    holds = Holds(suspended=frozenset({"terminate"}))
    kept = slots.plan(smaller, None, now=1.0, holds=holds)
    assert kept.retire == () and not kept.converged
    assert slots.plan(smaller, None, now=1.0).retire == ("g-2", "g-3")


def test_standby_is_out_of_the_counts_never_replaced_nor_removed() -> None:
    old = group()
    slots = Slots(old)
    sick(slots, "g-1", old)
    holds = Holds(standby=frozenset({"g-1"}))
    found = slots.plan(old, None, now=1.0, holds=holds)
    assert found.replace == () and found.converged  # the other three are all that count

    new = group(note="v2", MaxUnavailable=4)
    rolled = slots.plan(new, canary_rollout(old, new), now=2.0, holds=holds)
    assert sorted(updates(rolled)) == ["g-0", "g-2", "g-3"]
    assert rolled.rollout is not None and rolled.rollout.total == 3

    # Scaled in below it, the standby slot is kept, instance and actor.
    smaller = group(1)
    shrunk = slots.plan(smaller, None, now=3.0, holds=holds)
    assert "g-1" not in shrunk.retire and "g-1" not in shrunk.release


# -- an operator's requests, checked ---------------------------------------------------------


def test_promote_suspend_and_standby_refuse_what_does_not_apply_saying_why() -> None:
    old, new = group(), group(note="v2", Canary=1)
    with pytest.raises(GroupStateError, match="no rolling update is under way"):
        maintenance.promotable(new, None)
    early = Rollout(target=new.config_hash, previous=old)
    with pytest.raises(GroupStateError, match="not all healthy yet"):
        maintenance.promotable(new, early)
    with pytest.raises(GroupStateError, match=r"Update\.Canary is 0"):
        maintenance.promotable(group(note="v2"), early)
    waiting = Rollout(target=new.config_hash, previous=old, canaries=("g-3",), canary_ready=5.0)
    assert maintenance.promotable(new, waiting) is waiting
    with pytest.raises(ValueError, match="'nap' is not a process"):
        maintenance.processes_of(["heal", "nap"])
    with pytest.raises(GroupStateError, match="no instance 'g-9'"):
        maintenance.stood_by(new, Holds(), "g-9", True)
    holds = maintenance.stood_by(new, Holds(), "g-1", True)
    assert maintenance.holds_from_json(holds.to_json()) == holds
