"""The planner's rollout decisions (issue 14): surge and unavailability budgets, MinReadyTime,
ProgressDeadline, termination order, protected instances on scale-in, and who owns what in a
slot that holds two instances mid-surge."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from infrakit.group.plan import REASON_UPDATE, Phase, SlotStatus, plan, termination_order
from infrakit.rollout import Rollout
from infrakit.spec import TAG_PROTECTED, GroupSpec, SpecError, parse_group
from infrakit.spi import Description
from infrakit.spi.instance import TAG_CONFIG_HASH, TAG_GROUP, TAG_LOGICAL_ID


def group(size: int = 4, note: str = "v1", **update: Any) -> GroupSpec:
    return parse_group(
        {
            "ID": "g",
            "Properties": {
                "Allocation": {"Size": size},
                "Instance": {"Plugin": "instance-file", "Properties": {"Note": note}},
                "Flavor": {"Plugin": "flavor-vanilla"},
                "Update": {"HealthyTimeout": "1h", **update},
            },
        }
    )


def member(iid: str, lid: str, spec: GroupSpec, **tags: str) -> Description:
    return Description(
        id=iid,
        tags={TAG_GROUP: "g", TAG_CONFIG_HASH: spec.config_hash, TAG_LOGICAL_ID: lid, **tags},
    )


def running(old: GroupSpec, size: int = 4) -> tuple[list[Description], dict[str, SlotStatus]]:
    members = [member(f"old{n}", f"g-{n}", old) for n in range(size)]
    status = {
        f"g-{n}": SlotStatus(Phase.RUNNING, f"old{n}", old.config_hash, since=float(n))
        for n in range(size)
    }
    return members, status


# -- the spec --------------------------------------------------------------------------------


def faults(update: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        group(**update)
    return dict(caught.value.problems)


def test_max_parallel_and_max_unavailable_together_are_refused_with_the_path() -> None:
    found = faults({"MaxParallel": 2, "MaxUnavailable": 1})
    assert "not both" in found["Properties.Update"], found


def test_no_surge_and_no_unavailability_is_refused_as_nothing_could_move() -> None:
    found = faults({"MaxSurge": 0, "MaxUnavailable": "0%"})
    assert "could replace nothing" in found["Properties.Update"], found


def test_defaults_keep_one_at_a_time_in_place() -> None:
    update = group().properties.update
    assert (update.max_surge_of(4), update.max_unavailable_of(4)) == (0, 1)
    assert group(MaxParallel=3).properties.update.max_unavailable_of(4) == 3


def test_percentages_surge_rounds_up_unavailable_rounds_down() -> None:
    update = group(10, MaxSurge="25%", MaxUnavailable="25%").properties.update
    assert (update.max_surge_of(10), update.max_unavailable_of(10)) == (3, 2)
    tiny = group(3, MaxSurge="0%", MaxUnavailable="10%").properties.update
    assert tiny.max_unavailable_of(3) == 1  # both came to 0: one at a time, as Kubernetes


@pytest.mark.parametrize(
    ("key", "value"),
    [("MaxSurge", -1), ("MaxSurge", "150%"), ("MinReadyTime", "2y"), ("DrainTimeout", "30d")],
)
def test_bad_values_name_their_path(key: str, value: Any) -> None:
    assert f"Properties.Update.{key}" in faults({key: value})


# -- surge and unavailability -----------------------------------------------------------------


def test_surge_with_no_unavailability_makes_one_replacement_first() -> None:
    old = group()
    new = group(note="v2", MaxSurge=1, MaxUnavailable=0)
    members, status = running(old)
    result = plan(new, members, status, now=100.0)
    assert len(result.replace) == 1 and result.surge == {result.replace[0][0]}


def test_a_surge_under_way_keeps_its_old_instance_and_takes_no_more() -> None:
    old = group()
    new = group(note="v2", MaxSurge=1, MaxUnavailable=0)
    members, status = running(old)
    members.append(member("new3", "g-3", new))
    status["g-3"] = SlotStatus(Phase.STARTING, "new3", new.config_hash, outgoing="old3")
    stored = Rollout(target=new.config_hash, total=4, in_flight=MappingProxyType({"g-3": 99.0}))
    result = plan(new, members, status, now=100.0, rollout=stored)
    assert result.replace == ()
    seen = result.observations["g-3"]
    assert (seen.owned and seen.owned.id, seen.outgoing and seen.outgoing.id) == ("new3", "old3")
    assert seen.extras == ()


def test_a_restart_mid_surge_keeps_the_new_instance_and_retires_the_old() -> None:
    old, new = group(), group(note="v2", MaxSurge=1, MaxUnavailable=0)
    members, status = running(old)
    members.append(member("new3", "g-3", new))
    status["g-3"] = SlotStatus(Phase.PENDING)  # a new actor knows nothing yet
    seen = plan(new, members, status, now=100.0).observations["g-3"]
    assert seen.owned is not None and seen.owned.id == "new3"
    assert [extra.id for extra in seen.extras] == ["old3"]


def test_max_unavailable_two_replaces_two_in_place() -> None:
    old, new = group(), group(note="v2", MaxUnavailable=2)
    members, status = running(old)
    result = plan(new, members, status, now=100.0)
    assert len(result.replace) == 2 and result.surge == frozenset()


def test_logical_ids_replace_in_place_whatever_max_surge_says() -> None:
    def named(note: str, **update: Any) -> GroupSpec:
        spec = group(note=note, **update).to_json()
        spec["Properties"]["Allocation"] = {"LogicalIDs": ["a", "b"]}
        return parse_group(spec)

    old, new = named("v1"), named("v2", MaxSurge=2, MaxUnavailable=1)
    members = [member("i-a", "a", old), member("i-b", "b", old)]
    status = {lid: SlotStatus(Phase.RUNNING, f"i-{lid}", old.config_hash) for lid in "ab"}
    result = plan(new, members, status, now=100.0)
    assert len(result.replace) == 1 and result.surge == frozenset()


# -- MinReadyTime and ProgressDeadline --------------------------------------------------------


def test_min_ready_time_holds_the_next_replacement_until_it_has_passed() -> None:
    old, new = group(), group(note="v2", MinReadyTime="30s")
    members, status = running(old)
    members[0] = member("new0", "g-0", new)
    status["g-0"] = SlotStatus(Phase.RUNNING, "new0", new.config_hash, ready_at=100.0)
    stored = Rollout(target=new.config_hash, total=4, in_flight=MappingProxyType({"g-0": 90.0}))
    assert plan(new, members, status, now=110.0, rollout=stored).replace == ()
    later = plan(new, members, status, now=131.0, rollout=stored)
    assert [reason for _, reason in later.replace] == [REASON_UPDATE]


def test_a_rollout_past_its_progress_deadline_fails_though_healthy_timeout_is_long() -> None:
    old, new = group(), group(note="v2", ProgressDeadline="1m")
    members, status = running(old)
    status["g-3"] = SlotStatus(Phase.STARTING, "new3", new.config_hash)
    members[3] = member("new3", "g-3", new)
    stored = Rollout(
        target=new.config_hash, total=4, since=1.0, in_flight=MappingProxyType({"g-3": 1.0})
    )
    early = plan(new, members, status, now=50.0, rollout=stored)
    assert early.failed is None and early.rollout is not None and early.rollout.paused is None
    result = plan(new, members, status, now=100.0, rollout=stored)
    assert result.failed is not None and "ProgressDeadline" in result.failed[1]
    assert result.rollout is not None and "ProgressDeadline" in (result.rollout.paused or "")


# -- termination order and protected instances ------------------------------------------------


def test_termination_order_out_of_service_first_then_by_policy() -> None:
    _, status = running(group())
    status["g-1"] = SlotStatus(Phase.UNHEALTHY, "old1", "x", since=1.0)
    available = {"g-0", "g-2", "g-3"}
    lids = ["g-0", "g-1", "g-2", "g-3"]
    assert termination_order(group(), lids, status, available) == ["g-1", "g-3", "g-2", "g-0"]
    oldest = group(TerminationPolicy="Oldest")
    assert termination_order(oldest, lids, status, available) == ["g-1", "g-0", "g-2", "g-3"]
    newest = group(TerminationPolicy="Newest")
    assert termination_order(newest, lids, status, available) == ["g-1", "g-3", "g-2", "g-0"]


def test_scale_in_leaves_a_protected_instance_and_says_so() -> None:
    spec = group(2)
    members = [member(f"i{n}", f"g-{n}", spec) for n in range(4)]
    members[3] = member("i3", "g-3", spec, **{TAG_PROTECTED: "true"})
    status = {f"g-{n}": SlotStatus(Phase.RUNNING, f"i{n}", spec.config_hash) for n in range(4)}
    result = plan(spec, members, status, now=1.0)
    assert result.retire == ("g-2",)
    assert result.protected_held == ("g-3",) and result.release == ("g-3",)
    del status["g-3"], status["g-2"]
    members = members[:2] + members[3:]
    after = plan(spec, members, status, now=2.0)
    assert after.start == () and after.retire == () and after.converged


def test_a_rollout_resumed_after_its_deadline_gets_a_new_deadline() -> None:
    old, new = group(), group(note="v2", ProgressDeadline="1m")
    members, status = running(old)
    stored = Rollout(target=new.config_hash, total=4, since=1.0, paused="past its deadline")
    resumed = stored.resumed(now=1000.0)
    result = plan(new, members, status, now=1001.0, rollout=resumed)
    assert result.failed is None and len(result.replace) == 1
