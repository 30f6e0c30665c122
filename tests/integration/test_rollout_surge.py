"""Rollout mechanics tried from outside (issue 14): a surged rollout of real processes never has
fewer healthy instances than the group's size, MaxUnavailable replaces that many at once,
MinReadyTime spaces the batches, ProgressDeadline fails a rollout that HealthyTimeout would let
run, scale-in leaves protected instances, and a drain that hangs is abandoned after
Update.DrainTimeout while the instance is destroyed anyway.

Each instance is a real process that turns "ready" (writes a file) a moment after it starts;
the vanilla health command tests that file, and the test samples the same files together with
the live processes, independently of what the runtime believes."""

from __future__ import annotations

import secrets
import shlex
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import TEST_IMAGE, TEST_LABEL, environments, wait_for

from infrakit import Runtime
from infrakit.events import Event
from infrakit.plugins.flavor.vanilla import VanillaFlavor
from infrakit.spec import TAG_PROTECTED
from infrakit.spi import Description

TOKEN = "SURGE_TOKEN"  # in every instance process's environment: how the test finds them


class Ready:
    """The directory where each instance writes `<instance ID>` once it is ready."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "ready"
        self.dir.mkdir()
        self.token = secrets.token_hex(6)

    def group(
        self, version: str, size: int, update: dict[str, Any], ready: bool = True
    ) -> dict[str, Any]:
        """A group of `size` processes at `version`; with `ready`, each turns ready after a
        real delay (half a second), else never."""
        mark = f'touch {shlex.quote(str(self.dir))}/"$INFRAKIT_INSTANCE_ID"'
        init = [f"echo {version}", f"sleep 0.5; {mark}" if ready else "true", "exec sleep 600"]
        check = f'test -e {shlex.quote(str(self.dir))}/"$INFRAKIT_INSTANCE_ID"'
        return {
            "ID": "surge",
            "Properties": {
                "Allocation": {"Size": size},
                "Instance": {
                    "Plugin": "instance-process",
                    "Properties": {"Env": {TOKEN: self.token}},
                },
                "Flavor": {
                    "Plugin": "flavor-vanilla",
                    "Properties": {"Init": init, "Health": {"Command": check}},
                },
                "Health": {"Interval": "100ms", "GracePeriod": "10m"},
                "Update": {"HealthyTimeout": "10m", **update},
            },
        }

    def live(self) -> set[str]:
        """Instance IDs of the live processes carrying this test's token."""
        return {
            env.get("INFRAKIT_INSTANCE_ID", "?")
            for env in environments().values()
            if env.get(TOKEN) == self.token
        }

    def all_live(self, size: int) -> set[str]:
        """Wait until exactly `size` instance processes live; their IDs."""

        def found() -> set[str] | None:
            live = self.live()
            return live if len(live) == size else None

        return wait_for(found, what=f"{size} live instances")

    def healthy(self, live: set[str]) -> set[str]:
        return {instance for instance in live if (self.dir / instance).exists()}


class Recorder:
    """Every event of the group, in order (listeners run on the runtime's threads)."""

    def __init__(self, runtime: Runtime) -> None:
        self.events: list[Event] = []
        runtime.events.subscribe(self._take)

    def _take(self, event: Event) -> None:
        if event.group == "surge":
            self.events.append(event)

    def of(self, *kinds: str) -> list[Event]:
        return [e for e in list(self.events) if e.kind in kinds]

    def lines(self) -> str:
        return "\n".join(f"  {e.kind}: {e.line()}" for e in list(self.events))


def rolled(runtime: Runtime, recorder: Recorder) -> bool:
    """The rollout is done and the group converged on it."""
    described = runtime.describe("surge")
    return bool(recorder.of("update-done")) and described["Converged"]


def converge(runtime: Runtime, ready: Ready, size: int, update: dict[str, Any]) -> set[str]:
    runtime.commit(ready.group("v1", size, update))
    runtime.wait_converged("surge")
    return ready.all_live(size)


# -- the no-downtime sampler -------------------------------------------------------------------


def test_a_surged_rollout_never_has_fewer_healthy_instances_than_the_size(home: Path) -> None:
    size, update = 4, {"MaxSurge": 1, "MaxUnavailable": 0}
    ready = Ready(home.parent)
    with Runtime(home=home) as runtime:
        v1 = converge(runtime, ready, size, update)
        recorder = Recorder(runtime)
        runtime.commit(ready.group("v2", size, update))
        samples: list[tuple[int, int]] = []  # (live, healthy)

        def sample_until_rolled() -> bool:
            live = ready.live()
            samples.append((len(live), len(ready.healthy(live))))
            assert samples[-1][1] >= size, (
                f"only {samples[-1][1]} of {size} instances healthy during a rollout with"
                f" MaxUnavailable 0 (samples so far: {samples[-20:]})\n{recorder.lines()}"
            )
            return rolled(runtime, recorder)

        wait_for(sample_until_rolled, what="the surged rollout to finish")
        final = ready.live()
    assert len(final) == size and not final & v1, (v1, final)
    assert max(live for live, _ in samples) == size + 1, (
        f"the rollout never ran a surge instance beside the {size}: {samples}"
    )
    assert len(recorder.of("replacing")) == size


# -- MaxUnavailable and MinReadyTime ------------------------------------------------------------


def in_flight_at_most(recorder: Recorder) -> int:
    """The most replacements under way at once, from the events: a replacement starts with
    `replacing` and ends when its slot's new instance is `healthy`."""
    under_way: set[str] = set()
    most = 0
    for event in list(recorder.events):
        if event.kind == "replacing" and event.logical_id:
            under_way.add(event.logical_id)
        elif event.kind == "healthy" and event.logical_id:
            under_way.discard(event.logical_id)
        most = max(most, len(under_way))
    return most


def roll_out(home: Path, size: int, update: dict[str, Any]) -> Recorder:
    """Converge a group of `size` at v1, roll it to v2 with `update`; the rollout's events."""
    ready = Ready(home.parent)
    with Runtime(home=home) as runtime:
        converge(runtime, ready, size, update)
        recorder = Recorder(runtime)
        runtime.commit(ready.group("v2", size, update))
        wait_for(lambda: rolled(runtime, recorder), what="the rollout to finish")
    return recorder


def test_max_unavailable_two_replaces_two_at_a_time(home: Path) -> None:
    recorder = roll_out(home, 4, {"MaxUnavailable": 2})
    assert in_flight_at_most(recorder) == 2, recorder.lines()


def test_min_ready_time_delays_the_next_replacement(home: Path) -> None:
    recorder = roll_out(home, 2, {"MaxUnavailable": 1, "MinReadyTime": "2s"})
    first, second = recorder.of("replacing")
    (became_healthy,) = [e for e in recorder.of("healthy") if e.logical_id == first.logical_id][:1]
    assert second.time - became_healthy.time >= 2.0, recorder.lines()


# -- ProgressDeadline --------------------------------------------------------------------------


def test_progress_deadline_fails_a_rollout_whose_instances_never_turn_healthy(
    home: Path,
) -> None:
    update = {"ProgressDeadline": "2s", "HealthyTimeout": "10m"}
    ready = Ready(home.parent)
    with Runtime(home=home) as runtime:
        converge(runtime, ready, 2, update)
        recorder = Recorder(runtime)
        runtime.commit(ready.group("v2", 2, update, ready=False))

        def paused() -> list[str]:
            conditions = runtime.describe("surge")["Conditions"]
            return [c for c in conditions if "ProgressDeadline" in c]

        (condition,) = wait_for(paused, what="the rollout to fail on its ProgressDeadline")
    assert "paused" in condition
    assert any("ProgressDeadline" in e.line() for e in recorder.of("update-paused"))


# -- protected instances and scale-in ----------------------------------------------------------


def test_scale_in_removes_the_highest_slots_but_never_a_protected_instance(home: Path) -> None:
    ready = Ready(home.parent)
    with Runtime(home=home) as runtime:
        converge(runtime, ready, 4, {})
        plugin = runtime.plugins["instance-process"]
        members = {
            d.tags["infrakit.logical_id"]: d.id
            for d in plugin.describe_instances({"infrakit.group": "surge"})
        }
        plugin.label(members["surge-3"], {TAG_PROTECTED: "true"})
        runtime.commit(ready.group("v1", 2, {}))

        def kept() -> list[str]:
            live = ready.live()
            if live != {members["surge-0"], members["surge-1"], members["surge-3"]}:
                return []
            return [c for c in runtime.describe("surge")["Conditions"] if "protected" in c]

        (condition,) = wait_for(kept, what="surge-2 gone and the protected surge-3 kept")
    assert "surge-3" in condition


# -- a drain that hangs ------------------------------------------------------------------------


class HangingDrain(VanillaFlavor):
    """The vanilla flavor, whose drain blocks until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.draining: list[str] = []

    def drain(self, properties: Any, instance: Description) -> None:
        self.draining.append(instance.id)
        self.release.wait(600)


@pytest.fixture
def hanging() -> Iterator[HangingDrain]:
    flavor = HangingDrain()
    yield flavor
    flavor.release.set()


def test_a_hung_drain_is_abandoned_after_drain_timeout_and_the_instance_destroyed(
    home: Path, hanging: HangingDrain
) -> None:
    ready = Ready(home.parent)
    spec = ready.group("v1", 2, {"DrainTimeout": "1s"})
    spec["Properties"]["Flavor"]["Plugin"] = "flavor-hanging"
    with Runtime(home=home, plugins={"flavor-hanging": hanging}) as runtime:
        runtime.commit(spec)
        runtime.wait_converged("surge")
        first = ready.all_live(2)
        recorder = Recorder(runtime)
        spec["Properties"]["Allocation"] = {"Size": 1}
        runtime.commit(spec)
        wait_for(lambda: len(ready.live()) == 1, what="the scaled-in instance to be destroyed")
        (gone,) = first - ready.live()
        said = f"drain of {gone} abandoned after 1s"

        def shown() -> bool:
            return any(said in c for c in runtime.describe("surge")["Conditions"])

        wait_for(shown, what="the group's conditions to say the drain was abandoned")
        (abandoned,) = recorder.of("drain-abandoned")
    assert hanging.draining == [gone], hanging.draining
    assert said in abandoned.line()


# -- the same with the real Docker engine ---------------------------------------------------


def test_a_surged_rollout_of_containers_keeps_every_slot_served(
    engine: Any, token: str, home: Path
) -> None:
    from infrakit.plugins.instance.docker import DockerInstancePlugin

    group = f"surge-{token}"

    def spec(version: str) -> dict[str, Any]:
        return {
            "ID": group,
            "Properties": {
                "Allocation": {"Size": 2},
                "Instance": {
                    "Plugin": "instance-docker",
                    "Properties": {
                        "Image": TEST_IMAGE,
                        "NetworkMode": "none",
                        "Labels": {TEST_LABEL: token},
                    },
                },
                "Flavor": {
                    "Plugin": "flavor-vanilla",
                    "Properties": {"Init": [f"echo {version}", "while true; do sleep 1; done"]},
                },
                "Health": {"Interval": "200ms", "GracePeriod": "10m"},
                "Update": {"MaxSurge": 1, "MaxUnavailable": 0},
            },
        }

    def running() -> set[str]:
        filters = {"label": [f"infrakit.group={group}"], "status": "running"}
        return {c.id for c in engine.containers.list(ignore_removed=True, filters=filters)}

    plugin = DockerInstancePlugin(stop_timeout=1)
    with Runtime(home=home, plugins={"instance-docker": plugin}) as runtime:
        runtime.commit(spec("v1"))
        runtime.wait_converged(group)

        def two() -> set[str] | None:
            ids = running()
            return ids if len(ids) == 2 else None

        before = wait_for(two, what="two v1 containers")
        runtime.commit(spec("v2"))
        counts: list[int] = []

        def sample_until_rolled() -> bool:
            ids = running()
            counts.append(len(ids))
            assert len(ids) >= 2, f"a slot went unserved: running containers {counts}"
            described = runtime.describe(group)
            return len(ids) == 2 and not ids & before and described["Converged"]

        wait_for(sample_until_rolled, what="the containers to be rolled")
        runtime.destroy(group)
    assert max(counts) == 3, counts
