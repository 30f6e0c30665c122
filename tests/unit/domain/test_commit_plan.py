"""The structured twin of InfraKit's commit sentence (`--pretend --json`): per logical
instance, keep / replace / add / remove, with the reason an operator reads."""

from __future__ import annotations

from typing import Any

from test_plan import group

from infrakit.group.plan import commit_plan
from infrakit.spec import GroupSpec
from infrakit.spi import Description
from infrakit.spi.instance import TAG_CONFIG_HASH, TAG_GROUP, TAG_LOGICAL_ID


def members(spec: GroupSpec, count: int | None = None) -> list[Description]:
    lids = spec.logical_ids()[:count] if count is not None else spec.logical_ids()
    return [
        Description(
            id=f"i-{lid}",
            tags={TAG_GROUP: spec.id, TAG_CONFIG_HASH: spec.config_hash, TAG_LOGICAL_ID: lid},
        )
        for lid in lids
    ]


def planned(current: GroupSpec | None, new: GroupSpec, found: list[Description]) -> list[Any]:
    return [change.to_json() for change in commit_plan(current, new, found)]


def test_a_new_group_adds_every_instance() -> None:
    assert planned(None, group(2), []) == [
        {"LogicalID": "g-0", "Action": "add", "Reason": "new group", "Instance": None},
        {"LogicalID": "g-1", "Action": "add", "Reason": "new group", "Instance": None},
    ]


def test_the_same_spec_keeps_every_instance() -> None:
    spec = group(2)
    short = spec.config_hash[:8]
    assert planned(spec, group(2), members(spec)) == [
        {"LogicalID": lid, "Action": "keep", "Reason": f"config {short}", "Instance": f"i-{lid}"}
        for lid in ("g-0", "g-1")
    ]


def test_a_new_config_replaces_naming_both_hashes() -> None:
    old, new = group(2, note="v1"), group(2, note="v2")
    reason = f"config {old.config_hash[:8]} -> {new.config_hash[:8]}"
    plan = planned(old, new, members(old))
    assert [(c["LogicalID"], c["Action"], c["Reason"]) for c in plan] == [
        ("g-0", "replace", reason),
        ("g-1", "replace", reason),
    ]


def test_resizing_adds_or_removes_the_highest_slots() -> None:
    spec = group(3)
    grown = planned(spec, group(4), members(spec))
    assert [(c["LogicalID"], c["Action"]) for c in grown] == [
        ("g-0", "keep"),
        ("g-1", "keep"),
        ("g-2", "keep"),
        ("g-3", "add"),
    ]
    assert grown[-1]["Reason"] == "size 3 -> 4"
    shrunk = planned(spec, group(2), members(spec))
    assert shrunk[-1] == {
        "LogicalID": "g-2",
        "Action": "remove",
        "Reason": "size 3 -> 2",
        "Instance": "i-g-2",
    }
    assert [c["Action"] for c in shrunk[:2]] == ["keep", "keep"]


def test_logical_ids_changed_and_a_new_config_together() -> None:
    old = group(ids=["a", "b"], note="v1")
    new = group(ids=["b", "c"], note="v2")
    plan = {c["LogicalID"]: (c["Action"], c["Reason"]) for c in planned(old, new, members(old))}
    assert plan == {
        "a": ("remove", "not in Allocation.LogicalIDs any more"),
        "b": ("replace", f"config {old.config_hash[:8]} -> {new.config_hash[:8]}"),
        "c": ("add", "new in Allocation.LogicalIDs"),
    }


def test_an_instance_still_at_an_older_config_is_replaced_by_the_same_spec() -> None:
    """A rolling update paused halfway: committing the same spec resumes it."""
    old, new = group(2, note="v1"), group(2, note="v2")
    found = [*members(new, 1), *members(old)[1:]]
    plan = planned(new, group(2, note="v2"), found)
    assert [(c["Action"], c["Reason"]) for c in plan] == [
        ("keep", f"config {new.config_hash[:8]}"),
        ("replace", f"config {old.config_hash[:8]} -> {new.config_hash[:8]}"),
    ]


def test_a_size_decrease_shows_the_outdated_instance_going_and_a_survivor_moving_in() -> None:
    old, spec = group(3, note="v0"), group(3)
    found = members(spec)
    found[0] = Description(id="i-g-0", tags={**found[0].tags, TAG_CONFIG_HASH: old.config_hash})
    plan = {c["LogicalID"]: c for c in planned(spec, group(2), found)}
    assert plan["g-0"] == {
        "LogicalID": "g-0",
        "Action": "remove",
        "Reason": "size 3 -> 2: outdated config; i-g-2 moves in",
        "Instance": "i-g-0",
    }
    assert (plan["g-2"]["Action"], plan["g-2"]["Reason"]) == ("keep", "size 3 -> 2: moves to g-0")
    assert plan["g-1"]["Action"] == "keep"
