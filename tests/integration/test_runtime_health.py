"""A runtime that cannot act says so, and `infrakit run` then exits non-zero with one CRITICAL
line naming what died, instead of answering commits that nothing will ever carry out."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from support import file_group, run_cli, wait_for

from actors import default_scheduler
from actors.pooled import default_pool
from infrakit import Runtime
from infrakit.plugins.instance.file import FileInstancePlugin


def test_a_runtime_that_can_act_says_nothing_is_lost(home: Path) -> None:
    with Runtime(home=home) as runtime:
        runtime.commit(file_group(size=1))
        runtime.wait_converged("cattle", timeout=30)
        assert runtime.cannot_act() == []
    assert runtime.cannot_act() == ["the runtime is not running"]


def test_a_runtime_whose_timer_thread_died_says_it_cannot_act(home: Path) -> None:
    """The issue's case: the shared scheduler thread gone, every commit still answered."""
    with Runtime(home=home) as runtime:
        assert runtime.cannot_act() == []

        default_scheduler().shutdown()

        assert runtime.cannot_act() == ["the timer thread (actors-scheduler) died"]


def test_a_runtime_whose_actor_pool_died_says_it_cannot_act(home: Path) -> None:
    with Runtime(home=home) as runtime:
        default_pool().shutdown()

        wait_for(lambda: runtime.cannot_act() == ["the actor pool (actor-pool) died"], timeout=30)


def test_a_runtime_whose_manager_restarted_still_answers(home: Path) -> None:
    """The runtime kept the manager's first ref: after a restart every call failed with
    ActorDeadError for ever, while `infrakit run` carried on as if all were well."""
    home.mkdir(parents=True)
    (home / "configs").write_text("a file where the store's directory should be")
    with Runtime(home=home, config={"Manager": {"LeaderPoll": "100ms"}}) as runtime:
        assert not runtime.is_leader()  # its manager crashes on reading the store
        (home / "configs").unlink()  # the home is mended; the next restart succeeds

        wait_for(runtime.is_leader, timeout=60, what="a restarted manager that leads")
        assert "1 instances" in runtime.commit(file_group(size=1))
        runtime.wait_converged("cattle", timeout=30)
        assert runtime.cannot_act() == []


def test_infrakit_run_whose_manager_gives_up_exits_non_zero_with_one_critical_line(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "configs").write_text("a file where the store's directory should be")
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps({"Manager": {"LeaderPoll": "100ms"}}))
    # The timeout guards against a hang only: it exits as soon as the manager gives up.
    run = run_cli(home, "run", str(cluster), timeout=600)

    assert run.returncode == 1
    critical = [line for line in run.stderr.splitlines() if "CRITICAL" in line]
    assert len(critical) == 1, run.stderr
    assert "the runtime cannot act: the manager died" in critical[0]
    assert "NotADirectoryError" in critical[0]


@pytest.fixture(autouse=True)
def _fresh_shared_threads() -> None:
    """Tests here shut the process-wide scheduler and pool down; the next users get new ones."""
    assert default_scheduler().alive and default_pool().alive


def test_infrakit_run_that_cannot_start_says_why_in_one_line(tmp_path: Path) -> None:
    """A cluster-file group its plugin refuses stops the start: one line, no traceback."""
    broken = file_group("broken", size=1)
    broken["Properties"]["Instance"] = {
        "Plugin": "instance-process",
        "Properties": {"Cmd": "not a list"},
    }
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps({"Groups": [broken]}))
    run = run_cli(tmp_path / "home", "run", str(cluster), timeout=600)  # a hang guard only

    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        "Error: Groups[0].Properties.Instance.Properties.Cmd: must be a list of strings,"
        " got a string"
    ]


class GatedFiles(FileInstancePlugin):
    """File instances whose destroy waits for the test to open the gate."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.gate = threading.Event()

    def destroy(self, instance_id: str) -> None:
        self.gate.wait(120)
        super().destroy(instance_id)


def test_a_manager_that_crashes_while_leading_stops_leading_until_it_leads_again(
    home: Path, tmp_path: Path
) -> None:
    """A crashed manager's runtime must not go on saying it leads (nor keep the leader's
    sockets) while nothing acts: it steps down, and its restart leads again and finishes."""
    plugin = GatedFiles(tmp_path / "files")
    spec = file_group(size=1)
    spec["Properties"]["Instance"]["Plugin"] = "instance-gated"
    seen: list[str] = []
    config = {"Manager": {"LeaderPoll": "100ms"}}
    runtime = Runtime(config, home=home, plugins={"instance-gated": plugin})
    runtime.events.subscribe(
        lambda event: seen.append(event.message) if event.kind == "leadership" else None
    )
    with runtime:
        runtime.commit(spec)
        runtime.wait_converged("cattle")
        runtime.start_destroy("cattle")  # the Destroying mark is stored; the destroy waits
        configs = home / "configs"
        configs.rename(home / "configs.away")
        configs.write_text("a file where the store's directory should be")
        plugin.gate.set()  # the group is gone; forgetting it in the store fails: a crash
        wait_for(lambda: "lost leadership: stopped" in seen, what="the manager to step down")
        configs.unlink()
        (home / "configs.away").rename(configs)
        wait_for(lambda: seen[-1].startswith("gained"), what="the restarted manager to lead")
        # Leading again (its groups loaded) and the group forgotten: the destroy finished.
        wait_for(
            lambda: runtime.is_leader() and not runtime.is_managed("cattle"),
            what="the destroy to finish",
        )
        assert runtime.is_leader()
    assert [m.split(":")[0] for m in seen] == [
        "gained leadership",
        "lost leadership",
        "gained leadership",
        "lost leadership",
    ]
