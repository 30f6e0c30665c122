"""The group floor, tried from outside (issue 10): health checks of different instances run side
by side, a hung check holds up only its own instance, questions are answered while a check is in
progress, and a rolling update whose new health command fails takes one instance out of service
and then stops.

Everything here goes through the embedded `Runtime`, the CLI, the event stream and real process
instances, so that the tests hold whatever the group's insides become."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from support import MIN_DEADLINE, cli_env, environments, run_cli, stop_session, wait_for

from infrakit import Runtime
from infrakit.events import Event
from infrakit.spi import InstancePlugin

T = TypeVar("T")

TOKEN = "FLOOR_TOKEN"  # in every instance process's environment: how the tests find them
LOGICAL = "infrakit.logical_id"
# What a health command sees of its instance's slot (every tag is INFRAKIT_TAG_<NAME>).
SLOT = "$INFRAKIT_TAG_INFRAKIT_LOGICAL_ID"


def process_group(
    group_id: str,
    size: int,
    command: str,
    token: str,
    *,
    timeout: str = "60s",
    init: str = "exec sleep 600",
    health: dict[str, Any] | None = None,
    update: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A group of `size` real processes whose vanilla health check is `command`."""
    return {
        "ID": group_id,
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": "instance-process", "Properties": {"Env": {TOKEN: token}}},
            "Flavor": {
                "Plugin": "flavor-vanilla",
                "Properties": {"Init": [init], "Health": {"Command": command, "Timeout": timeout}},
            },
            "Health": {"Interval": "200ms", **(health or {})},
            "Update": {**(update or {})},
        },
    }


def live_instances(token: str) -> dict[str, int]:
    """Instance ID -> PID of every live instance process carrying `token` (whatever any
    record says; a health check carries no token)."""
    return {
        env.get("INFRAKIT_INSTANCE_ID", "?"): pid
        for pid, env in environments().items()
        if env.get(TOKEN) == token
    }


def slots(plugin: InstancePlugin, group_id: str) -> dict[str, str]:
    """Instance ID -> logical ID of every live instance of the group, as its plugin says."""
    return {
        d.id: d.tags.get(LOGICAL, "?")
        for d in plugin.describe_instances({"infrakit.group": group_id})
    }


class Recorder:
    """Every event of one group, in order (listeners run on the runtime's threads)."""

    def __init__(self, runtime: Runtime, group_id: str) -> None:
        self.group_id = group_id
        self._events: list[Event] = []
        runtime.events.subscribe(self._take)

    def _take(self, event: Event) -> None:
        if event.group == self.group_id:
            self._events.append(event)

    def mark(self) -> int:
        return len(self._events)

    def since(self, mark: int, *kinds: str) -> list[Event]:
        return [e for e in self._events[mark:] if not kinds or e.kind in kinds]


def lines(events: list[Event]) -> str:
    return "\n".join(f"  {e.kind}: {e.line()}" for e in events)


def answered(call: Callable[[], T], what: str) -> T:
    """`call()`'s result, made on another thread; fails (rather than hangs the test) when no
    answer comes within the tests' deadline."""
    box: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            box.append(call())
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(MIN_DEADLINE)
    if errors:
        raise errors[0]
    assert box, f"{what} got no answer in {MIN_DEADLINE:g}s"
    return box[0]


# -- 1: health checks of different instances overlap in time ----------------------------------

CHECKS_EACH = 10  # checks of each instance that must show an overlap if checks run side by side


def check_log(path: Path) -> list[tuple[str, str]]:
    """("start" | "end", instance ID) for each line the health command wrote."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        what, _, instance = line.partition(" ")
        if what in ("start", "end") and instance:
            found.append((what, instance))
    return found


def first_overlap(entries: list[tuple[str, str]]) -> tuple[str, str] | None:
    """(running, started): the first check of one instance that started while a check of
    another had started and had not yet ended (a check that never ends proves nothing)."""
    for i, (what, instance) in enumerate(entries):
        if what != "start":
            continue
        rest = entries[i + 1 :]
        own = next((k for k, (_, who) in enumerate(rest) if who == instance), None)
        if own is None or rest[own][0] != "end":
            continue  # still running, or never ended (killed)
        started = [who for w, who in rest[:own] if w == "start"]
        if started:
            return (instance, started[0])
    return None


def test_health_checks_of_two_instances_run_side_by_side(home: Path, tmp_path: Path) -> None:
    log = shlex.quote(str(tmp_path / "checks.log"))
    command = (
        f'echo "start $INFRAKIT_INSTANCE_ID" >> {log}; sleep 1;'
        f' echo "end $INFRAKIT_INSTANCE_ID" >> {log}'
    )
    token = secrets.token_hex(6)
    with Runtime(home=home) as runtime:
        runtime.commit(process_group("side", 2, command, token))

        def overlap_or_enough() -> tuple[str, str] | str | None:
            entries = check_log(tmp_path / "checks.log")
            overlap = first_overlap(entries)
            if overlap is not None:
                return overlap
            ended = Counter(instance for what, instance in entries if what == "end")
            enough = len(ended) >= 2 and min(ended.values()) >= CHECKS_EACH
            return "sequential" if enough else None

        verdict = wait_for(overlap_or_enough, what="two health checks to overlap in time")
    assert verdict != "sequential", (
        f"in {CHECKS_EACH} checks of each instance, no check of one instance started while the"
        " other's was running: the group checks its instances one after the other.\n"
        + "\n".join((tmp_path / "checks.log").read_text().splitlines()[-8:])
    )


# -- 2 and 3: a hung health check ------------------------------------------------------------


class Hang:
    """A health command that hangs (sleeps for the longest Timeout the flavor allows) for the
    slots the test names, after saying so in a file that holds its PID. Only a SIGKILL (the
    check's timeout, or the test) ends it: it ignores SIGTERM, and carries no
    INFRAKIT_INSTANCE_ID, so that nothing that stops an instance's processes takes it along."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir()

    def command(self) -> str:
        d = shlex.quote(str(self.dir))
        return (
            f'if [ -e {d}/hang-"{SLOT}" ]; then echo $$ > {d}/pid-"{SLOT}";'
            f' mv {d}/pid-"{SLOT}" {d}/hanging-"{SLOT}"; trap \'\' TERM;'
            " exec env -u INFRAKIT_INSTANCE_ID sleep 600; fi"
        )

    def start(self, slot: str) -> None:
        """Make `slot`'s next health check hang, and wait until one does."""
        (self.dir / f"hang-{slot}").touch()
        wait_for(
            lambda: (self.dir / f"hanging-{slot}").exists(), what=f"{slot}'s health check to hang"
        )

    def release(self) -> None:
        """Hang no more; kill the checks that hang (their process groups)."""
        for marker in self.dir.glob("hang-*"):
            marker.unlink()
        for hanging in self.dir.glob("hanging-*"):
            with contextlib.suppress(OSError, ValueError):
                pid = int(hanging.read_text())
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep"):
                    os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def hang(tmp_path: Path) -> Iterator[Hang]:
    hanging = Hang(tmp_path / "hang")
    yield hanging
    hanging.release()


def test_a_hung_health_check_does_not_delay_another_instances_replacement(
    home: Path, hang: Hang
) -> None:
    token = secrets.token_hex(6)
    with Runtime(home=home) as runtime:
        seen = Recorder(runtime, "hung")
        runtime.commit(process_group("hung", 2, hang.command(), token, timeout="10m"))
        runtime.wait_converged("hung")
        plugin = runtime.plugins["instance-process"]
        assert isinstance(plugin, InstancePlugin)
        try:
            hang.start("hung-0")
            (victim,) = [i for i, slot in slots(plugin, "hung").items() if slot == "hung-1"]
            mark = seen.mark()
            os.killpg(live_instances(token)[victim], signal.SIGKILL)

            def replaced() -> bool:
                healthy = seen.since(mark, "healthy")
                return any(
                    e.logical_id == "hung-1"
                    and e.instance not in (None, victim)
                    and e.instance in live_instances(token)
                    for e in healthy
                )

            wait_for(
                replaced,
                what="hung-1, killed, to have a new, live and healthy instance while hung-0's"
                " health check hangs (a look that waits for every check never gets there)",
            )
        finally:
            hang.release()


def test_describe_is_answered_while_a_health_check_hangs(home: Path, hang: Hang) -> None:
    token = secrets.token_hex(6)
    with Runtime(home=home) as runtime:
        runtime.commit(process_group("hung", 2, hang.command(), token, timeout="10m"))
        before = sorted(i["ID"] for i in runtime.wait_converged("hung")["Instances"])
        try:
            hang.start("hung-0")
            described = answered(lambda: runtime.describe("hung"), "Runtime.describe")
            assert sorted(i["ID"] for i in described["Instances"]) == before
            status = answered(runtime.status, "Runtime.status")
            assert [g["ID"] for g in status["Groups"]] == ["hung"]
        finally:
            hang.release()


def test_the_cli_describes_a_group_while_its_health_check_hangs(
    home: Path, hang: Hang, tmp_path: Path
) -> None:
    token = secrets.token_hex(6)
    cluster = tmp_path / "cluster.json"
    spec = process_group("hung", 2, hang.command(), token, timeout="10m")
    cluster.write_text(json.dumps({"Groups": [spec]}))
    with open(tmp_path / "run.log", "ab") as log:
        run = subprocess.Popen(
            [sys.executable, "-m", "infrakit.cli.main", "run", str(cluster)],
            env=cli_env(home),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def converged() -> list[str] | None:
            out = run_cli(home, "group", "describe", "hung", "--json")
            if out.returncode != 0:
                return None
            description = json.loads(out.stdout)
            ids = sorted(i["ID"] for i in description["Instances"])
            return ids if description["Converged"] and len(ids) == 2 else None

        before = wait_for(converged, what="infrakit run to converge its group")
        hang.start("hung-0")
        described = run_cli(home, "group", "describe", "hung", "-q")
        assert described.returncode == 0, f"describe while a check hangs: {described.stderr}"
        assert sorted(described.stdout.split()) == before
        status = run_cli(home, "manager", "status")
        assert status.returncode == 0, f"manager status while a check hangs: {status.stderr}"
        assert "hung" in status.stdout
    finally:
        hang.release()
        stop_session(run, grace=120)


# -- 4: a rolling update whose new health command fails -------------------------------------

OUT_OF_SERVICE = ("replacing", "gone", "unhealthy", "destroyed")
MORE_CHECKS = 10  # checks of the broken instance, after the pause, in which nothing may happen


def out_of_service(events: list[Event]) -> list[tuple[str, ...]]:
    """Each set of slots out of service at once, as the events tell it: a slot goes out on
    `replacing`, `gone`, `unhealthy` or `destroyed`, and comes back on `healthy`."""
    out: set[str] = set()
    seen: list[tuple[str, ...]] = []
    for event in events:
        if event.logical_id is None:
            continue
        if event.kind in OUT_OF_SERVICE:
            out.add(event.logical_id)
        elif event.kind == "healthy":
            out.discard(event.logical_id)
        seen.append(tuple(sorted(out)))
    return seen


def logged(path: Path) -> Counter[str]:
    """How many times each instance's health command ran, from its log."""
    return Counter(path.read_text().split()) if path.exists() else Counter()


def test_a_rolling_update_with_a_broken_health_command_replaces_one_and_stops(
    home: Path, tmp_path: Path
) -> None:
    v1_log, v2_log = tmp_path / "v1-checks.log", tmp_path / "v2-checks.log"
    healthy = f'echo "$INFRAKIT_INSTANCE_ID" >> {shlex.quote(str(v1_log))}'
    broken = f'echo "$INFRAKIT_INSTANCE_ID" >> {shlex.quote(str(v2_log))}; exit 1'
    token = secrets.token_hex(6)
    # A long grace period: the broken instance is never replaced for ill health during the
    # test, so that whatever replaces something here does it for the update.
    settings = {
        "health": {"MaxUnhealthy": "100%", "GracePeriod": "10m"},
        "update": {"MaxParallel": 1, "HealthyTimeout": "3s"},
    }
    with Runtime(home=home) as runtime:
        seen = Recorder(runtime, "roll")
        runtime.commit(process_group("roll", 4, healthy, token, **settings))
        old = {i["ID"]: i["Tags"][LOGICAL] for i in runtime.wait_converged("roll")["Instances"]}
        assert len(old) == 4
        mark = seen.mark()
        answer = runtime.commit(process_group("roll", 4, broken, token, **settings))
        assert answer == "Performing a rolling update on 4 instances"

        def check(after_pause: int | None = None) -> None:
            """Fail at once, saying why, if the update has done more than it may."""
            events = seen.since(mark)
            worst = max(out_of_service(events), key=len, default=())
            assert len(worst) <= 1, (
                f"{len(worst)} instances out of service at once ({', '.join(worst)}) in a"
                f" rolling update with MaxParallel 1:\n{lines(events)}"
            )
            replacing = seen.since(mark, "replacing")
            assert len(replacing) <= 1, f"more than one instance replaced:\n{lines(events)}"
            if after_pause is not None:
                late = seen.since(after_pause, "replacing", "destroyed", "provisioned")
                assert not late, f"the update paused, then went on:\n{lines(events)}"

        def paused() -> int | None:
            check()
            found = seen.since(mark, "update-paused")
            return mark + seen.since(mark).index(found[0]) + 1 if found else None

        after = wait_for(paused, what="the update to pause")
        check(after)
        provisioned = seen.since(mark, "provisioned")
        assert len(provisioned) == 1, lines(seen.since(mark))
        broken_id = provisioned[0].instance
        assert broken_id is not None
        plugin = runtime.plugins["instance-process"]
        assert isinstance(plugin, InstancePlugin)
        members = slots(plugin, "roll")
        kept = {i: s for i, s in old.items() if i in members}
        assert len(kept) == 3, f"the three old instances are not all there: {members}"
        assert set(members) == set(kept) | {broken_id}, members
        checks_v1, checks_v2 = logged(v1_log), logged(v2_log)

        def nothing_happens() -> bool:
            check(after)
            v1, v2 = logged(v1_log), logged(v2_log)
            return v2[broken_id] >= checks_v2[broken_id] + MORE_CHECKS and all(
                v1[i] > checks_v1[i] for i in kept
            )

        wait_for(
            nothing_happens,
            what=f"the broken instance's health command to run {MORE_CHECKS} more times, and each"
            " old instance's to run again",
        )
        assert slots(plugin, "roll") == members, "instances changed while the update was paused"
        checked = set(logged(v2_log)) & set(old)
        assert not checked, (
            f"old instances {sorted(checked)} were checked with the new, broken health command"
            " instead of the one they were made with"
        )
        assert set(live_instances(token)) == set(members)
        conditions = runtime.describe("roll")["Conditions"]
        assert any("paused" in c for c in conditions), conditions
