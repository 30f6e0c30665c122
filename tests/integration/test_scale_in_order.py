"""Which instances a Size decrease removes (issue 14): outdated config first, then unhealthy,
then Update.TerminationPolicy; a protected instance never. The survivors beyond the new size
move into the slots their victims freed, keeping their instance IDs: real processes, counted
by the test from the live processes and the plugin's own description."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support import wait_for
from test_rollout_surge import Ready, Recorder

from infrakit import Runtime
from infrakit.spec import TAG_PROTECTED

GROUP = "surge"  # test_rollout_surge.Ready's group


def slots(runtime: Runtime) -> dict[str, str]:
    """Logical ID -> instance ID of the group's instances, as the plugin describes them."""
    plugin = runtime.plugins["instance-process"]
    found = plugin.describe_instances({"infrakit.group": GROUP})
    return {d.tags["infrakit.logical_id"]: d.id for d in found}


def settled(runtime: Runtime, ready: Ready, size: int) -> dict[str, str]:
    """Wait until the group has `size` instances in slots 0..size-1, one live process each,
    and says it converged; its slots then."""

    def done() -> dict[str, str] | None:
        if not runtime.describe(GROUP)["Converged"]:
            return None
        found = slots(runtime)  # after the group said so: not a moment before it changed
        if sorted(found) != [f"{GROUP}-{n}" for n in range(size)]:
            return None
        return found if ready.live() == set(found.values()) else None

    return wait_for(done, what=f"{size} instances in slots 0..{size - 1}")


def healthy(recorder: Recorder, instances: set[str]) -> bool:
    return instances <= {e.instance for e in recorder.of("healthy")}


def group(ready: Ready, version: str, size: int, **update: Any) -> dict[str, Any]:
    return ready.group(version, size, dict(update))


def test_scale_in_removes_the_outdated_and_the_unhealthy_and_moves_the_rest(home: Path) -> None:
    ready = Ready(home.parent)
    with Runtime(home=home) as runtime:
        recorder = Recorder(runtime)
        runtime.commit(group(ready, "v1", 1))
        runtime.wait_converged(GROUP)
        # Keep the old one in slot 0 (no rollout) and the unhealthy one (no healing).
        runtime.suspend(GROUP, ["rollout", "heal"])
        runtime.commit(group(ready, "v2", 5))
        before = wait_for(
            lambda: (
                (found := slots(runtime))
                and len(found) == 5
                and healthy(recorder, {*found.values()})
                and found
            ),
            what="5 healthy instances",
        )
        (ready.dir / before["surge-1"]).unlink()  # its health check fails from now on
        wait_for(
            lambda: any(e.instance == before["surge-1"] for e in recorder.of("unhealthy")),
            what="surge-1 to be unhealthy",
        )
        seen = len(recorder.events)
        runtime.commit(group(ready, "v2", 3))
        after = settled(runtime, ready, 3)
        activity = [entry["What"] for entry in runtime.group_activity(GROUP)]
    later = recorder.events[seen:]
    kept = {before["surge-2"], before["surge-3"], before["surge-4"]}
    assert set(after.values()) == kept, f"{before} -> {after}:\n{recorder.lines()}"
    assert after["surge-2"] == before["surge-2"]
    assert not [e for e in later if e.kind == "provisioned"], recorder.lines()
    said = {e.logical_id: e.message for e in later if e.kind == "scale-in"}
    assert said == {
        "surge-0": f"scale-in removes surge-0 ({before['surge-0']}): outdated config",
        "surge-1": f"scale-in removes surge-1 ({before['surge-1']}): unhealthy",
    }
    moved = sorted(e.message for e in later if e.kind == "moved")
    assert moved == [
        f"moved surge-3 ({before['surge-3']}) to surge-1: scale-in removed surge-1 (unhealthy)",
        f"moved surge-4 ({before['surge-4']}) to surge-0: scale-in removed surge-0"
        " (outdated config)",
    ]
    assert set(moved) <= set(activity) and set(said.values()) <= set(activity)


def test_oldest_and_newest_by_creation_and_a_protected_instance_never(home: Path) -> None:
    ready = Ready(home.parent)
    with Runtime(home=home) as runtime:
        recorder = Recorder(runtime)
        for size in (1, 2, 3, 4):  # one at a time: each instance younger than the last
            runtime.commit(group(ready, "v1", size))
            runtime.wait_converged(GROUP)
        made = settled(runtime, ready, 4)
        a0, a1, a2, a3 = (made[f"{GROUP}-{n}"] for n in range(4))
        runtime.plugins["instance-process"].label(a0, {TAG_PROTECTED: "true"})
        provisioned = len(recorder.of("provisioned"))

        # Oldest: a0 is the oldest but protected; a1 goes, and a3 moves into its slot.
        runtime.commit(group(ready, "v1", 3, TerminationPolicy="Oldest"))
        wait_for(
            lambda: settled(runtime, ready, 3) == {"surge-0": a0, "surge-1": a3, "surge-2": a2},
            what="a1 gone, a3 moved into surge-1",
        )
        # Newest: a3, now in surge-1, goes (HighestSlot would take a2); a2 moves in.
        runtime.commit(group(ready, "v1", 2, TerminationPolicy="Newest"))
        wait_for(
            lambda: settled(runtime, ready, 2) == {"surge-0": a0, "surge-1": a2},
            what="a3 gone, a2 moved into surge-1",
        )
    assert len(recorder.of("provisioned")) == provisioned, recorder.lines()
    assert a1 not in ready.live() and a3 not in ready.live()
