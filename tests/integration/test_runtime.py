"""The runtime end to end with real local processes and real files: healing, adoption after a
restart, scaling and rolling updates with InfraKit's sentences, pretend, bad input, free and
destroy, a crashing plugin, a failing plugin, and a follower on the same home."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import alive, recorded_pids, wait_for

from infrakit import Runtime, SpecError
from infrakit.events import Event
from infrakit.manager.actor import GroupNotFoundError, NotLeaderError
from infrakit.plugins.instance.file import FileInstancePlugin
from infrakit.spi import PluginError, Spec
from infrakit.spi.instance import TAG_CONFIG_HASH, TAG_LOGICAL_ID


def process_group(
    group_id: str = "workers",
    size: int | None = 3,
    ids: list[str] | None = None,
    init: str = "exec sleep 600",
    health: dict[str, Any] | None = None,
    **properties: Any,
) -> dict[str, Any]:
    flavor: dict[str, Any] = {"Init": [init]}
    if health is not None:
        flavor["Health"] = health
    spec: dict[str, Any] = {
        "ID": group_id,
        "Properties": {
            "Allocation": {"LogicalIDs": ids} if ids is not None else {"Size": size},
            "Instance": {"Plugin": "instance-process", "Properties": {}},
            "Flavor": {"Plugin": "flavor-vanilla", "Properties": flavor},
            "Health": {"Interval": "100ms", "GracePeriod": "2s", "UnhealthyAfter": 2},
        },
    }
    spec["Properties"].update(properties)
    return spec


def members(runtime: Runtime, group_id: str = "workers") -> dict[str, dict[str, Any]]:
    """Instance ID -> description of every live member."""
    return {i["ID"]: i for i in runtime.describe(group_id)["Instances"]}


def logical_ids(runtime: Runtime, group_id: str = "workers") -> list[str]:
    return sorted(i["Tags"][TAG_LOGICAL_ID] for i in members(runtime, group_id).values())


class Recorder:
    """Collects the runtime's events."""

    def __init__(self, runtime: Runtime) -> None:
        self.events: list[Event] = []
        runtime.events.subscribe(self.events.append)

    def kinds(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


def test_a_killed_instance_is_replaced(home: Path) -> None:
    with Runtime(home=home) as runtime:
        assert runtime.commit(process_group()) == "Managing 3 instances"
        before = runtime.wait_converged("workers")
        victim = before["Instances"][1]
        pid = recorded_pids(home / "instances" / "process")[victim["ID"]]
        os.killpg(pid, signal.SIGKILL)

        def replaced() -> bool:
            now = members(runtime)
            return len(now) == 3 and victim["ID"] not in now

        wait_for(replaced, what="a replacement for the killed instance")
        assert logical_ids(runtime) == ["workers-0", "workers-1", "workers-2"]
        runtime.wait_converged("workers")


def test_a_restarted_runtime_adopts_its_instances_without_duplicates(home: Path) -> None:
    with Runtime(home=home) as first:
        first.commit(process_group(ids=["zk1", "zk2", "zk3"]))
        original = {i["ID"] for i in first.wait_converged("workers")["Instances"]}
        assert len(original) == 3
    # Stopping the runtime leaves the instances running.
    pids = recorded_pids(home / "instances" / "process")
    assert all(alive(pids[i]) for i in original)
    second = Runtime(home=home)
    recorder = Recorder(second)  # before start: adoption happens at once
    with second:
        wait_for(lambda: second.info("workers")["Converged"], what="convergence after restart")
        assert set(members(second)) == original
        assert recorder.kinds("provisioned") == []


def test_scale_up_down_and_roll_with_infrakit_sentences(home: Path) -> None:
    spec = process_group(size=2)
    with Runtime(home=home) as runtime:
        assert runtime.commit(spec) == "Managing 2 instances"
        runtime.wait_converged("workers")
        spec["Properties"]["Allocation"]["Size"] = 4
        assert runtime.commit(spec) == "Adding 2 instances to increase the group size to 4"
        runtime.wait_converged("workers")
        assert logical_ids(runtime) == [f"workers-{n}" for n in range(4)]
        spec["Properties"]["Allocation"]["Size"] = 3
        assert runtime.commit(spec) == "Terminating 1 instances to reduce the group size to 3"
        runtime.wait_converged("workers")
        assert logical_ids(runtime) == ["workers-0", "workers-1", "workers-2"]

        old = members(runtime)
        spec["Properties"]["Flavor"]["Properties"]["Init"] = ["exec sleep 700"]
        spec["Properties"]["Allocation"]["Size"] = 4
        assert runtime.commit(spec) == (
            "Performing a rolling update on 3 instances, then adding 1 instances to increase"
            " the group size to 4"
        )
        done = runtime.wait_converged("workers")
        hashes = {i["Tags"][TAG_CONFIG_HASH] for i in done["Instances"]}
        assert len(hashes) == 1 and len(done["Instances"]) == 4
        assert not set(old) & {i["ID"] for i in done["Instances"]}


def test_log_lines_count_in_good_english_while_the_sentences_stay_infrakits(
    home: Path,
) -> None:
    """Seen: "converged: 1 instances". The commit sentence stays InfraKit's, word for word."""
    spec = process_group(size=1)
    with Runtime(home=home) as runtime:
        heard = Recorder(runtime)
        assert runtime.commit(spec) == "Managing 1 instances"
        runtime.wait_converged("workers")
        wait_for(lambda: heard.kinds("converged"), what="the converged event")
        assert heard.kinds("converged")[0].message == "converged: 1 instance"
        spec["Properties"]["Flavor"]["Properties"]["Init"] = ["exec sleep 700"]
        assert runtime.commit(spec) == "Performing a rolling update on 1 instances"
        runtime.wait_converged("workers")
        wait_for(lambda: heard.kinds("update-done"), what="the rollout's end")
        assert heard.kinds("update-started")[0].message.startswith("rolling update of 1 instance ")
        assert heard.kinds("update-done")[0].message == "rolling update done: 1 instance"


def test_rolling_update_replaces_one_at_a_time_and_pauses_on_failure(home: Path) -> None:
    ready = home.parent / "ready"
    ready.mkdir()
    health = {"Command": f'test -e "{ready}/$INFRAKIT_INSTANCE_ID" -o -e "{ready}/all"'}
    spec = process_group(size=3, health=health)
    (ready / "all").touch()
    with Runtime(home=home) as runtime:
        recorder = Recorder(runtime)
        runtime.commit(spec)
        runtime.wait_converged("workers")
        (ready / "all").unlink()
        for instance_id in members(runtime):
            (ready / instance_id).touch()  # the old ones stay healthy; new ones never will
        changed = copy.deepcopy(spec)
        changed["Properties"]["Flavor"]["Properties"]["Init"] = ["exec sleep 650"]
        changed["Properties"]["Update"] = {"HealthyTimeout": "1s", "MaxParallel": 1}
        assert runtime.commit(changed) == "Performing a rolling update on 3 instances"
        wait_for(lambda: recorder.kinds("update-paused"), what="the update to pause")
        assert "commit the spec again to resume" in recorder.kinds("update-paused")[0].message
        hashes = [i["Tags"][TAG_CONFIG_HASH] for i in members(runtime).values()]
        # Exactly one instance was replaced; the other two still run the old config.
        assert len(hashes) == 3 and len(set(hashes)) == 2
        assert sorted(hashes.count(h) for h in set(hashes)) == [1, 2]
        assert not runtime.info("workers")["Converged"]


def test_pretend_changes_nothing(home: Path) -> None:
    spec = process_group(size=2)
    with Runtime(home=home) as runtime:
        assert runtime.commit(spec, pretend=True) == "Managing 2 instances"
        assert runtime.inspect() == []
        with pytest.raises(GroupNotFoundError, match="Group 'workers' is not being watched"):
            runtime.free("workers")
        runtime.commit(spec)
        runtime.wait_converged("workers")
        before, stored = members(runtime), runtime.inspect()
        bigger = copy.deepcopy(spec)
        bigger["Properties"]["Allocation"]["Size"] = 5
        bigger["Properties"]["Flavor"]["Properties"]["Init"] = ["exec sleep 601"]
        assert runtime.commit(bigger, pretend=True) == (
            "Performing a rolling update on 2 instances, then adding 3 instances to increase"
            " the group size to 5"
        )
        assert runtime.inspect() == stored
        assert members(runtime) == before
        assert runtime.info("workers")["Converged"]


def test_a_bad_spec_is_refused_whole_and_changes_nothing(home: Path) -> None:
    spec = process_group(size=2)
    with Runtime(home=home) as runtime:
        runtime.commit(spec)
        runtime.wait_converged("workers")
        before, stored = members(runtime), runtime.inspect()
        bad = copy.deepcopy(spec)
        bad["Properties"]["Allocation"]["Size"] = -1
        with pytest.raises(SpecError, match=r"Properties\.Allocation\.Size: must be >= 0, got -1"):
            runtime.commit(bad)
        bad = copy.deepcopy(spec)
        bad["Properties"]["Allocation"]["Size"] = 5
        bad["Properties"]["Instance"]["Properties"] = {"Cmd": "sleep 5"}
        with pytest.raises(SpecError, match=r"Properties\.Instance\.Properties\.Cmd"):
            runtime.commit(bad)
        bad = copy.deepcopy(spec)
        bad["Properties"]["Flavor"]["Plugin"] = "flavor-nowhere"
        with pytest.raises(SpecError, match="no flavor plugin named 'flavor-nowhere'"):
            runtime.commit(bad)
        assert runtime.inspect() == stored
        assert members(runtime) == before


def test_free_leaves_instances_and_destroy_removes_them(home: Path) -> None:
    spec = process_group(size=2)
    with Runtime(home=home) as runtime:
        runtime.commit(spec)
        original = set(runtime.wait_converged("workers")["Instances"][i]["ID"] for i in (0, 1))
        runtime.free("workers")
        assert runtime.inspect() == []
        pids = recorded_pids(home / "instances" / "process")
        assert all(alive(pids[i]) for i in original)
        recorder = Recorder(runtime)
        assert runtime.commit(spec) == "Managing 2 instances"
        runtime.wait_converged("workers")
        assert set(members(runtime)) == original  # adopted again, not duplicated
        assert recorder.kinds("provisioned") == []
        runtime.destroy("workers", timeout=30)
        assert runtime.inspect() == []
        wait_for(lambda: not any(alive(pids[i]) for i in original), what="processes to end")


class CrashingFiles(FileInstancePlugin):
    """A real file plugin with a bug: its first provisions raise an unexpected exception."""

    def __init__(self, directory: Path, crashes: int) -> None:
        super().__init__(directory)
        self.crashes = crashes

    def provision(self, spec: Spec) -> str:
        if self.crashes > 0:
            self.crashes -= 1
            raise ZeroDivisionError("a bug in the plugin")
        return super().provision(spec)


class StubbornFiles(FileInstancePlugin):
    """A real file plugin whose destroys fail a few times (a cloud API having a bad day)."""

    def __init__(self, directory: Path, failures: int) -> None:
        super().__init__(directory)
        self.failures = failures

    def destroy(self, instance_id: str) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise PluginError("the API is unavailable")
        super().destroy(instance_id)


def file_group(plugin: str, size: int = 2) -> dict[str, Any]:
    return {
        "ID": "files",
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": plugin, "Properties": {"Note": "v1"}},
            "Flavor": {"Plugin": "flavor-vanilla"},
            "Health": {"Interval": "100ms"},
        },
    }


def test_a_plugin_that_raises_gets_its_actor_restarted_and_the_runtime_lives(
    home: Path,
) -> None:
    plugin = CrashingFiles(home.parent / "files", crashes=3)
    with Runtime(home=home, plugins={"instance-buggy": plugin}) as runtime:
        runtime.commit(file_group("instance-buggy", size=2))
        done = runtime.wait_converged("files")
        assert len(done["Instances"]) == 2
        assert plugin.crashes == 0
        assert runtime.running and runtime.is_leader()


def test_destroy_keeps_retrying_until_nothing_is_left(home: Path) -> None:
    plugin = StubbornFiles(home.parent / "files", failures=0)
    with Runtime(home=home, plugins={"instance-stubborn": plugin}) as runtime:
        recorder = Recorder(runtime)
        runtime.commit(file_group("instance-stubborn", size=3))
        runtime.wait_converged("files")
        plugin.failures = 4
        runtime.destroy("files", timeout=60)
        assert recorder.kinds("destroy-failed")
        assert plugin.describe_instances({}) == []
        assert runtime.inspect() == []


class BrokenFiles(FileInstancePlugin):
    """A real file plugin whose provisions always fail, to trip the circuit breaker."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.attempts = 0

    def provision(self, spec: Spec) -> str:
        self.attempts += 1
        raise PluginError("quota exceeded")


def test_a_group_that_keeps_failing_stops_hammering_and_says_so(home: Path) -> None:
    plugin = BrokenFiles(home.parent / "files")
    with Runtime(home=home, plugins={"instance-broken": plugin}) as runtime:
        recorder = Recorder(runtime)
        runtime.commit(file_group("instance-broken", size=10))
        opened = wait_for(
            lambda: [e for e in recorder.kinds("circuit") if "open" in e.message],
            what="the circuit to open",
        )
        assert "quota exceeded" in opened[0].message
        attempts = plugin.attempts
        # While open, nothing calls the plugin: the count stays where it was when it opened.
        assert runtime.info("files")["Circuit"] == "open"
        assert plugin.attempts == attempts
        assert attempts < 20


def test_a_second_runtime_on_the_same_home_follows_and_takes_over(home: Path) -> None:
    first = Runtime(home=home, location="first").start()
    try:
        first.commit(process_group(size=2))
        original = set(first.wait_converged("workers")["Instances"][i]["ID"] for i in (0, 1))
        second = Runtime(home=home, location="second").start(wait_for_leadership=0.5)
        try:
            assert not second.is_leader()
            with pytest.raises(NotLeaderError, match="the leader is at first"):
                second.commit(process_group(size=5))
            first.stop()
            wait_for(second.is_leader, what="the follower to take over")
            wait_for(lambda: second.info("workers")["Converged"], what="adoption")
            assert set(members(second)) == original
        finally:
            second.stop()
    finally:
        first.stop()


def test_an_instance_unhealthy_past_the_threshold_is_replaced(home: Path) -> None:
    sick = home.parent / "sick"
    sick.mkdir()
    health = {"Command": f'test ! -e "{sick}/$INFRAKIT_INSTANCE_ID"'}
    spec = process_group(size=3, health=health)
    spec["Properties"]["Health"] = {"Interval": "100ms", "GracePeriod": "1s", "UnhealthyAfter": 3}
    with Runtime(home=home) as runtime:
        recorder = Recorder(runtime)
        runtime.commit(spec)
        runtime.wait_converged("workers")
        before = set(members(runtime))
        victim = sorted(before)[0]
        (sick / victim).touch()
        wait_for(lambda: victim not in members(runtime), what="the sick instance to go")
        runtime.wait_converged("workers")
        after = set(members(runtime))
        assert len(after) == 3 and after - before and victim not in after
        assert [e.instance for e in recorder.kinds("unhealthy")] == [victim]
        assert any(victim in e.message for e in recorder.kinds("replacing"))


def test_too_many_unhealthy_at_once_are_held_and_reported(home: Path) -> None:
    sick = home.parent / "sick"
    sick.mkdir()
    health = {"Command": f'test ! -e "{sick}/$INFRAKIT_INSTANCE_ID"'}
    spec = process_group(size=4, health=health)
    spec["Properties"]["Health"] = {
        "Interval": "100ms",
        "GracePeriod": "1s",
        "UnhealthyAfter": 2,
        "MaxUnhealthy": "25%",
    }
    with Runtime(home=home) as runtime:
        recorder = Recorder(runtime)
        runtime.commit(spec)
        runtime.wait_converged("workers")
        before = set(members(runtime))
        # Three fall ill at once: healing is suspended while they do, so that none is
        # replaced for being, for a moment, the only one ill (which would be right).
        runtime.suspend("workers", ["heal"])
        for instance_id in sorted(before)[:3]:
            (sick / instance_id).touch()

        def unhealthy() -> int:
            return int(runtime.info("workers")["Phases"].get("unhealthy", 0))

        wait_for(lambda: unhealthy() == 3, what="3 instances unhealthy")
        runtime.suspend("workers", ["heal"], suspend=False)

        def held() -> bool:
            """Healing is back, and the group holds the three back rather than replace them."""
            info = runtime.info("workers")
            reason = "3 instances unhealthy: not replacing them"
            return not info["Suspended"] and reason in info["Conditions"]

        wait_for(held, what="the hold once healing resumed")
        said = [e.message for e in recorder.kinds("unhealthy-held")]
        assert any("3 of 4 instances unhealthy" in message for message in said), said
        assert set(members(runtime)) == before  # nothing destroyed
        for marker in sick.iterdir():
            marker.unlink()
        wait_for(lambda: runtime.info("workers")["Converged"], what="recovery")
        assert set(members(runtime)) == before


CRASHER = """
import sys
from infrakit import Runtime
runtime = Runtime(home=sys.argv[1]).start()
print(runtime.commit({
    "ID": "durable",
    "Properties": {
        "Allocation": {"Size": 2},
        "Instance": {"Plugin": "instance-process"},
        "Flavor": {"Plugin": "flavor-vanilla", "Properties": {"Init": ["exec sleep 600"]}},
        "Health": {"Interval": "100ms"},
    },
}), flush=True)
runtime.wait_converged("durable")
print("converged", flush=True)
sys.stdin.read()
"""


def test_a_committed_spec_survives_a_crash_and_instances_are_adopted(home: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", CRASHER, str(home)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "Managing 2 instances"
    assert process.stdout.readline().strip() == "converged"
    process.kill()  # SIGKILL: no clean shutdown of anything
    process.wait(timeout=30)
    pids = recorded_pids(home / "instances" / "process")
    assert len(pids) == 2 and all(alive(pid) for pid in pids.values())
    runtime = Runtime(home=home)
    recorder = Recorder(runtime)
    with runtime:
        assert [spec["ID"] for spec in runtime.inspect()] == ["durable"]
        wait_for(lambda: runtime.info("durable")["Converged"], what="adoption")
        assert set(members(runtime, "durable")) == set(pids)
        assert recorder.kinds("provisioned") == []


def test_a_failed_update_with_rollback_returns_to_the_previous_config(home: Path) -> None:
    health = {"Command": 'test "$INFRAKIT_TAG_VERSION" != broken'}
    spec = process_group(size=2, health=health)
    spec["Properties"]["Flavor"]["Properties"]["Tags"] = {"version": "good"}
    with Runtime(home=home) as runtime:
        recorder = Recorder(runtime)
        runtime.commit(spec)
        good_hash = {
            i["Tags"][TAG_CONFIG_HASH] for i in runtime.wait_converged("workers")["Instances"]
        }
        broken = copy.deepcopy(spec)
        broken["Properties"]["Flavor"]["Properties"]["Tags"] = {"version": "broken"}
        broken["Properties"]["Update"] = {"HealthyTimeout": "1s", "OnFailure": "rollback"}
        assert runtime.commit(broken) == "Performing a rolling update on 2 instances"
        wait_for(lambda: recorder.kinds("update-paused"), what="the update to fail")
        assert "rolling back" in recorder.kinds("update-paused")[0].message
        wait_for(
            lambda: (
                runtime.info("workers")["Converged"]
                and {i["Tags"][TAG_CONFIG_HASH] for i in runtime.describe("workers")["Instances"]}
                == good_hash
            ),
            what="the rollback to converge",
        )
        stored = runtime.inspect()[0]["Properties"]["Flavor"]["Properties"]["Tags"]
        assert stored == {"version": "good"}


def test_the_cluster_file_applies_when_new_or_edited_not_over_later_commits(home: Path) -> None:
    def note(runtime: Runtime) -> Any:
        return runtime.inspect()[0]["Properties"]["Instance"]["Properties"]["Note"]

    spec = file_group("instance-file", size=1)
    with Runtime({"Groups": [spec]}, home=home) as runtime:
        assert note(runtime) == "v1"
        later = copy.deepcopy(spec)
        later["Properties"]["Instance"]["Properties"]["Note"] = "v2"
        runtime.commit(later)
    with Runtime({"Groups": [spec]}, home=home) as runtime:
        assert note(runtime) == "v2"  # the same file again: the later commit stands
    edited = copy.deepcopy(spec)
    edited["Properties"]["Instance"]["Properties"]["Note"] = "v3"
    with Runtime({"Groups": [edited]}, home=home) as runtime:
        assert note(runtime) == "v3"  # an edited file is a new declaration
