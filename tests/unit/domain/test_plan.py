"""The pure planner: InfraKit's sentences word for word, adoption, and properties over any
observed state (hypothesis): applying the plan converges to the spec, and a rolling update
never has more than Update.MaxParallel instances out of service at once."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from infrakit.group.plan import (
    REASON_UNHEALTHY,
    REASON_UPDATE,
    Phase,
    SlotStatus,
    assign,
    describe_commit,
    plan,
)
from infrakit.rollout import Rollout
from infrakit.spec import GroupSpec, parse_group
from infrakit.spi import Description
from infrakit.spi.instance import TAG_CONFIG_HASH, TAG_GROUP, TAG_LOGICAL_ID


def group(
    size: int | None = 3,
    ids: list[str] | None = None,
    note: str = "v1",
    max_parallel: int = 1,
    max_unhealthy: str | int = "40%",
    max_in_flight: str | int = 1,
) -> GroupSpec:
    allocation: dict[str, Any] = {"LogicalIDs": ids} if ids is not None else {"Size": size}
    return parse_group(
        {
            "ID": "g",
            "Properties": {
                "Allocation": allocation,
                "Instance": {"Plugin": "instance-file", "Properties": {"Note": note}},
                "Flavor": {"Plugin": "flavor-vanilla"},
                "Update": {"MaxParallel": max_parallel, "HealthyTimeout": "1h"},
                "Health": {"MaxUnhealthy": max_unhealthy, "MaxInFlight": max_in_flight},
            },
        }
    )


def member(iid: str, lid: str | None, spec: GroupSpec) -> Description:
    tags = {TAG_GROUP: spec.id, TAG_CONFIG_HASH: spec.config_hash}
    if lid is not None:
        tags[TAG_LOGICAL_ID] = lid
    return Description(id=iid, tags=tags)


# -- InfraKit's sentences, word for word ------------------------------------------------------


def test_new_group_says_managing() -> None:
    assert describe_commit(None, group(3)) == "Managing 3 instances"
    assert describe_commit(None, group(ids=["a", "b"])) == "Managing 2 instances"


def test_same_spec_is_noop() -> None:
    spec = group(3)
    members = [member(f"i{n}", f"g-{n}", spec) for n in range(3)]
    assert describe_commit(spec, group(3), members) == "Noop"


def test_grow_and_shrink_sentences() -> None:
    assert (
        describe_commit(group(3), group(8)) == "Adding 5 instances to increase the group size to 8"
    )
    assert (
        describe_commit(group(3), group(1))
        == "Terminating 2 instances to reduce the group size to 1"
    )


def test_rolling_update_sentences_and_combinations() -> None:
    assert describe_commit(group(3), group(3, note="v2")) == (
        "Performing a rolling update on 3 instances"
    )
    assert describe_commit(group(5), group(10, note="v2")) == (
        "Performing a rolling update on 5 instances, then adding 5 instances to increase the"
        " group size to 10"
    )
    assert describe_commit(group(3), group(1, note="v2")) == (
        "Terminating 2 instances to reduce the group size to 1, then performing a rolling"
        " update on 1 instances"
    )


def test_logical_id_changes_are_supported() -> None:
    old = group(ids=["zk1", "zk2", "zk3"])
    assert describe_commit(old, group(ids=["zk1", "zk2", "zk3", "zk4", "zk5"])) == (
        "Adding 2 instances to increase the group size to 5"
    )
    assert describe_commit(old, group(ids=["zk1", "zk2", "zk4"])) == (
        "Terminating 1 instances and adding 1 instances to change the logical IDs of the group of 3"
    )


def test_resuming_a_paused_update_counts_stale_members() -> None:
    old, new = group(3, note="v1"), group(3, note="v2")
    members = [member("a", "g-0", new), member("b", "g-1", old), member("c", "g-2", old)]
    assert describe_commit(new, new, members) == "Performing a rolling update on 2 instances"


# -- adoption -----------------------------------------------------------------------------------


def test_untagged_members_fill_empty_slots_and_the_rest_is_surplus() -> None:
    spec = group(2)
    members = [member("x", None, spec), member("y", "g-1", spec), member("z", None, spec)]
    by_lid, surplus = assign(spec, members, {})
    assert [m.id for m in by_lid["g-0"]] == ["x"]
    assert [m.id for m in by_lid["g-1"]] == ["y"]
    assert list(surplus) == ["z"]


def test_duplicates_keep_the_owned_one_and_destroy_the_rest() -> None:
    spec = group(1)
    members = [member("a", "g-0", spec), member("b", "g-0", spec)]
    status = {"g-0": SlotStatus(Phase.RUNNING, instance_id="b", config_hash=spec.config_hash)}
    result = plan(spec, members, status, now=0.0)
    assert result.observations["g-0"].owned is not None
    assert result.observations["g-0"].owned.id == "b"
    assert [m.id for m in result.observations["g-0"].extras] == ["a"]
    assert not result.converged


def test_scale_down_retires_the_highest_slots() -> None:
    spec = group(2)
    members = [member(f"i{n}", f"g-{n}", spec) for n in range(4)]
    status = {f"g-{n}": SlotStatus(Phase.RUNNING, f"i{n}", spec.config_hash) for n in range(4)}
    assert plan(spec, members, status, now=0.0).retire == ("g-2", "g-3")


def test_too_many_unhealthy_at_once_are_held_not_replaced() -> None:
    spec = group(5, max_unhealthy="40%", max_in_flight=2)
    members = [member(f"i{n}", f"g-{n}", spec) for n in range(5)]
    status = {
        f"g-{n}": SlotStatus(Phase.UNHEALTHY if n < 3 else Phase.RUNNING, f"i{n}", spec.config_hash)
        for n in range(5)
    }
    held = plan(spec, members, status, now=0.0)
    assert held.replace == () and held.unhealthy_held == ("g-0", "g-1", "g-2")
    status["g-2"] = SlotStatus(Phase.RUNNING, "i2", spec.config_hash)
    healed = plan(spec, members, status, now=0.0)
    assert healed.replace == (("g-0", REASON_UNHEALTHY), ("g-1", REASON_UNHEALTHY))


def test_a_replacement_not_healthy_in_time_fails_the_update() -> None:
    old = group(2, note="v1")
    new = parse_group(
        {
            **old.to_json(),
            "Properties": {
                **group(2, note="v2").to_json()["Properties"],
                "Update": {"HealthyTimeout": "10s"},
            },
        }
    )
    members = [member("a", "g-0", new), member("b", "g-1", old)]
    status = {
        "g-0": SlotStatus(Phase.STARTING, "a", new.config_hash),
        "g-1": SlotStatus(Phase.RUNNING, "b", old.config_hash),
    }
    rollout = Rollout(target=new.config_hash, in_flight=MappingProxyType({"g-0": 80.0}))
    result = plan(new, members, status, now=100.0, rollout=rollout)
    assert result.failed == ("g-0", "not healthy within 10s")
    assert result.rollout is not None
    assert result.rollout.paused == "g-0 not healthy within 10s"  # no previous: pause
    assert result.replace == ()


def test_unhealthy_instances_are_replaced_max_in_flight_at_a_time() -> None:
    spec = group(4, max_unhealthy="100%")
    members = [member(f"i{n}", f"g-{n}", spec) for n in range(4)]
    status = {f"g-{n}": SlotStatus(Phase.UNHEALTHY, f"i{n}", spec.config_hash) for n in range(4)}
    assert plan(spec, members, status, now=0.0).replace == (("g-0", REASON_UNHEALTHY),)
    status["g-0"] = SlotStatus(Phase.REPLACING, reason=REASON_UNHEALTHY)
    assert plan(spec, members, status, now=0.0).replace == ()  # the one at a time is busy


def test_a_paused_update_replaces_nothing_not_even_unhealthy_instances() -> None:
    old, new = group(3, note="v1", max_unhealthy="100%"), group(3, note="v2")
    members = [member("a", "g-0", new), member("b", "g-1", old), member("c", "g-2", old)]
    status = {
        "g-0": SlotStatus(Phase.UNHEALTHY, "a", new.config_hash),
        "g-1": SlotStatus(Phase.RUNNING, "b", old.config_hash),
        "g-2": SlotStatus(Phase.UNHEALTHY, "c", old.config_hash),
    }
    paused = Rollout(target=new.config_hash, total=3, done=0, paused="g-0 not healthy")
    result = plan(new, members, status, now=0.0, rollout=paused)
    assert result.replace == ()
    assert result.unhealthy_held == ("g-0", "g-2")
    assert result.rollout is not None and result.rollout.paused == "g-0 not healthy"
    assert not result.converged


def test_a_failed_update_with_a_previous_spec_asks_for_a_rollback() -> None:
    old = group(2, note="v1")
    new = parse_group(
        {
            **old.to_json(),
            "Properties": {
                **group(2, note="v2").to_json()["Properties"],
                "Update": {"HealthyTimeout": "10s", "OnFailure": "rollback"},
            },
        }
    )
    members = [member("a", "g-0", new), member("b", "g-1", old)]
    status = {
        "g-0": SlotStatus(Phase.STARTING, "a", new.config_hash),
        "g-1": SlotStatus(Phase.RUNNING, "b", old.config_hash),
    }
    rollout = Rollout(
        target=new.config_hash, previous=old, in_flight=MappingProxyType({"g-0": 80.0})
    )
    result = plan(new, members, status, now=100.0, rollout=rollout)
    assert result.failed == ("g-0", "not healthy within 10s")
    assert result.rollout is not None and result.rollout.paused is None  # to roll back
    assert result.replace == ()


def test_a_rollout_survives_its_stored_form() -> None:
    old, new = group(2, note="v1"), group(2, note="v2")
    rollout = Rollout(
        target=new.config_hash,
        previous=old,
        total=2,
        done=1,
        in_flight=MappingProxyType({"g-1": 12.5}),
        paused="g-1 not healthy within 1s",
        since=3.0,
    )
    back = Rollout.from_json(json.loads(json.dumps(rollout.to_json())))
    assert back.to_json() == rollout.to_json()
    assert back.previous is not None and back.previous.config_hash == old.config_hash


# -- properties over any observed state ------------------------------------------------------


@dataclass
class World:
    """A model of the instance plugin and of the actors' reactions, to apply plans to."""

    spec: GroupSpec
    instances: dict[str, Description] = field(default_factory=dict)
    status: dict[str, SlotStatus] = field(default_factory=dict)
    rollout: Rollout | None = None
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    def provision(self, lid: str) -> SlotStatus:
        iid = f"i{next(self.ids)}"
        self.instances[iid] = member(iid, lid, self.spec)
        return SlotStatus(Phase.STARTING, iid, self.spec.config_hash)

    def destroy(self, iid: str | None) -> None:
        if iid is not None:
            self.instances.pop(iid, None)

    def tick(self, now: float) -> tuple[Any, int, bool]:
        wanted = self.spec.logical_ids()
        result = plan(
            self.spec,
            list(self.instances.values()),
            self.status,
            now=now,
            rollout=self.rollout,
        )
        self.rollout = result.rollout
        for lid in result.start:
            self.status[lid] = SlotStatus(Phase.PENDING)
        for lid, observation in result.observations.items():
            for extra in observation.extras:
                self.destroy(extra.id)
            report = self.status.get(lid)
            if report is None or report.phase in (Phase.RETIRING, Phase.RETIRED):
                continue
            owned = observation.owned
            if owned is None:
                self.status[lid] = self.provision(lid)
            else:
                if TAG_LOGICAL_ID not in owned.tags:  # the actor labels what it adopts
                    owned.tags[TAG_LOGICAL_ID] = lid
                self.status[lid] = SlotStatus(Phase.RUNNING, owned.id, owned.tags[TAG_CONFIG_HASH])
        for move in result.moves:  # the reconciler relabels; the source actor is released
            if move.ready:
                self.instances[move.instance].tags[TAG_LOGICAL_ID] = move.target
                self.status.pop(move.source, None)
        for lid in result.release:
            self.status.pop(lid, None)
        for lid in result.retire:
            owned = result.observations.get(lid)
            self.destroy(self.status[lid].instance_id)
            if owned is not None and owned.owned is not None:
                self.destroy(owned.owned.id)
            del self.status[lid]
        rolled_available = False
        for lid, reason in result.replace:
            if reason == REASON_UPDATE:
                rolled_available |= self.status[lid].phase is Phase.RUNNING
            self.destroy(self.status[lid].instance_id)
            self.status[lid] = self.provision(lid)
        unavailable = sum(
            1
            for lid in wanted
            if self.status.get(lid, SlotStatus(Phase.PENDING)).phase is not Phase.RUNNING
        )
        return result, unavailable, rolled_available


lids = st.sampled_from(["g-0", "g-1", "g-2", "g-3", "g-4", "g-5", "g-9", "zk1", "zk2", None])


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[GroupSpec, GroupSpec, list[tuple[str | None, bool]]]:
    named = draw(st.booleans())
    if named:
        ids = draw(st.lists(st.sampled_from(["zk1", "zk2", "zk3", "g-1"]), unique=True))
        old, new = group(ids=ids, note="v1"), group(ids=ids, note="v2")
    else:
        size = draw(st.integers(min_value=0, max_value=6))
        old, new = group(size, note="v1"), group(size, note="v2")
    parallel = draw(st.integers(min_value=1, max_value=3))
    new = group(
        ids=list(new.logical_ids()) if named else None,
        size=None if named else len(new.logical_ids()),
        note="v2",
        max_parallel=parallel,
    )
    existing = draw(st.lists(st.tuples(lids, st.booleans()), max_size=10))
    return old, new, existing


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_any_observed_state_converges_within_bounded_ticks(
    scenario: tuple[GroupSpec, GroupSpec, list[tuple[str | None, bool]]],
) -> None:
    old, new, existing = scenario
    world = World(spec=new)
    for index, (lid, current) in enumerate(existing):
        world.instances[f"e{index}"] = member(f"e{index}", lid, new if current else old)
    size = len(new.logical_ids())
    for now in range(4 * size + 2 * len(existing) + 6):
        result, _, _ = world.tick(float(now))
        if result.converged:
            break
    assert result.converged, f"not converged: {world.status}"
    remaining = sorted(m.tags.get(TAG_LOGICAL_ID) or "" for m in world.instances.values())
    assert remaining == sorted(new.logical_ids())
    assert all(m.tags[TAG_CONFIG_HASH] == new.config_hash for m in world.instances.values())


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=1, max_value=8),
    st.integers(min_value=1, max_value=4),
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 7)), max_size=8),
)
def test_rolling_update_keeps_at_most_max_parallel_out_of_service(
    size: int, parallel: int, losses: list[tuple[int, int]]
) -> None:
    """Instances also vanish during the update (`losses`: tick, slot); the update must count
    them as out of service and not roll more than MaxParallel on top."""
    old = group(size, note="v1")
    world = World(spec=old)
    for _ in range(4):
        world.tick(0.0)
    world.spec = group(size, note="v2", max_parallel=parallel)
    for now in range(1, 6 * size + 40):
        for when, slot in losses:
            if when == now:
                gone = [
                    i for i, m in world.instances.items() if m.tags[TAG_LOGICAL_ID] == f"g-{slot}"
                ]
                for iid in gone:
                    world.destroy(iid)
        result, unavailable, rolled_available = world.tick(float(now))
        if rolled_available:
            assert unavailable <= parallel
        if result.converged and now > 30:
            break
    assert result.converged


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=8),
    st.integers(min_value=1, max_value=3),
    st.integers(min_value=1, max_value=20),
)
def test_a_rollout_restarted_from_its_stored_form_resumes_and_replaces_no_slot_twice(
    size: int, parallel: int, restart_at: int
) -> None:
    """A runtime that restarts mid-update has only the stored rollout and the instances: its
    actors start over (pending). The update must go on from there, replace every stale
    instance exactly once, and keep its count of what is done."""
    old = group(size, note="v1")
    world = World(spec=old)
    for _ in range(4):
        world.tick(0.0)
    world.spec = group(size, note="v2", max_parallel=parallel)
    replaced: list[str] = []
    done_before = 0
    result = None
    for now in range(1, 6 * size + 40):
        if now == restart_at and world.rollout is not None:
            done_before = world.rollout.done
            stored = json.loads(json.dumps(world.rollout.to_json()))
            world.rollout = Rollout.from_json(stored)
            world.status = {lid: SlotStatus(Phase.PENDING) for lid in world.status}
        before = dict(world.instances)
        result, _, _ = world.tick(float(now))
        replaced += [lid for lid, reason in result.replace if reason == REASON_UPDATE]
        if world.rollout is not None and now >= restart_at:
            assert world.rollout.done >= done_before  # progress is never lost
        assert len(world.instances) <= len(before) + size  # no runaway provisioning
        if result.converged:
            break
    assert result is not None and result.converged
    assert sorted(replaced) == sorted(old.logical_ids())  # each slot rolled exactly once
    assert all(m.tags[TAG_CONFIG_HASH] == world.spec.config_hash for m in world.instances.values())


def test_a_replacement_lost_in_a_crash_is_made_again() -> None:
    """Killed after the rollout stored a replacement as begun but before the actor was told:
    after the restart the slot still runs its old instance. It must be replaced again, not
    waited on until HealthyTimeout pauses the update."""
    old, new = group(2, note="v1"), group(2, note="v2")
    members = [member("a", "g-0", old), member("b", "g-1", old)]
    status = {
        "g-0": SlotStatus(Phase.RUNNING, "a", old.config_hash),
        "g-1": SlotStatus(Phase.RUNNING, "b", old.config_hash),
    }
    stored = Rollout(target=new.config_hash, total=2, in_flight=MappingProxyType({"g-0": 90.0}))
    result = plan(new, members, status, now=100.0, rollout=stored)
    assert result.replace == (("g-0", REASON_UPDATE),)
    assert result.rollout is not None and result.rollout.done == 0
