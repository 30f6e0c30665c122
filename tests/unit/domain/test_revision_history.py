"""A group's revisions as values (infrakit/manager/revisions.py): numbering, the last ten
kept, the stored form read back, what a change says, and which revision is known good."""

from __future__ import annotations

from typing import Any

from infrakit.manager.revisions import KEEP, History, describe_change
from infrakit.spec import GroupSpec, parse_group


def group(note: str = "v1", size: int = 2) -> GroupSpec:
    data: dict[str, Any] = {
        "ID": "web",
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": "instance-file", "Properties": {"Note": note}},
            "Flavor": {"Plugin": "flavor-vanilla"},
        },
    }
    return parse_group(data)


def test_revisions_are_numbered_and_only_the_last_ten_are_kept() -> None:
    history = History()
    for n in range(KEEP + 3):
        history = history.add(group(f"v{n}"), float(n), "alice", False, "change")
    assert history.current == KEEP + 3
    assert [r.number for r in history.revisions] == list(range(4, KEEP + 4))


def test_the_stored_form_reads_back_the_same() -> None:
    history = History().add(group(), 1.0, "alice", True, "created (size 2)", rolled_out=True)
    history = history.add(group("v2"), 2.0, "bob", False, "config")
    assert History.from_json(history.to_json()).to_json() == history.to_json()
    assert History.from_json([{"Revision": "x"}, None, {"Revision": 3, "Spec": {}}]) == History()


def test_the_last_rolled_out_revision_skips_the_latest_and_those_not_wanted() -> None:
    a, b, c = group("a"), group("b"), group("c")
    history = History().add(a, 1.0, "x", False, "", rolled_out=True)
    history = history.add(b, 2.0, "x", False, "")  # paused: never rolled out
    history = history.add(c, 3.0, "x", False, "")
    found = history.last_rolled_out(lambda s: s.config_hash != c.config_hash)
    assert found is not None and found.spec == a
    assert history.rolled_out(c.config_hash).revisions[-1].rolled_out
    assert not history.rolled_out(b.config_hash).revisions[-1].rolled_out


def test_a_change_says_what_it_changes() -> None:
    assert describe_change(None, group()) == "created (size 2)"
    assert describe_change(group(), group(size=4)) == "size 2 -> 4"
    changed = describe_change(group(), group("v2"))
    assert changed.endswith("(Instance.Properties)") and changed.startswith("config ")
    assert describe_change(group(), group()) == "no change"
