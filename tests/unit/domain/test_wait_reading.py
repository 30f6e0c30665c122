"""How `--wait` reads a group's summary (infrakit/cli/progress.py): done only once the group
has taken the committed spec and converged; a pause fails it, but not a pause left over from
the previous spec; a later revision fails it."""

from __future__ import annotations

from typing import Any

from infrakit.cli.progress import reading


def summary(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "ID": "web",
        "Revision": 2,
        "SpecSeen": True,
        "Size": 3,
        "Converged": True,
        "Phases": {"running": 3},
        "Update": {"Total": 0, "Done": 0, "Paused": None},
        "Conditions": [],
    }
    return {**base, **changes}


def test_converged_at_the_revision_is_done() -> None:
    now = reading(summary(), revision=2)
    assert now.done and now.failed is None
    assert now.line() == "web  revision 2  healthy 3/3"


def test_not_done_until_the_group_has_taken_the_spec() -> None:
    stale = summary(SpecSeen=False, Update={"Total": 3, "Done": 0, "Paused": "web-1 failed"})
    now = reading(stale, revision=2)
    assert not now.done and now.failed is None
    assert now.plain == "waiting for the group to take the new spec"


def test_a_pause_fails_and_a_later_revision_fails() -> None:
    paused = summary(Converged=False, Update={"Total": 3, "Done": 1, "Paused": "paused by bob"})
    assert reading(paused, revision=2).failed == "paused: paused by bob"
    assert reading(summary(Revision=3), revision=2).failed == "the group moved on to revision 3"


def test_what_a_replacement_waits_for() -> None:
    rolling = summary(
        Converged=False,
        Phases={"running": 2, "starting": 1},
        Update={
            "Total": 3,
            "Done": 1,
            "Paused": None,
            "HealthyTimeout": 60.0,
            "InFlight": [{"LogicalID": "web-2", "Phase": "starting", "Elapsed": 12.4}],
        },
    )
    now = reading(rolling, revision=2)
    assert not now.done
    assert now.waiting == "waiting for web-2 to turn healthy (12s of HealthyTimeout 1m)"
    assert now.line() == (
        "web  revision 2  replaced 1/3  healthy 2/3:"
        " waiting for web-2 to turn healthy (HealthyTimeout 1m)"
    )
