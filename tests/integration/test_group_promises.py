"""The manager keeps its word about groups: a commit during a destroy is applied, a destroyed
or freed group stays gone across restarts and leader changes, two clusters sharing one set of
instances never touch each other's, and operators' questions are answered at once, naming what
keeps a group from acting (a plugin that does not answer, provisioning that keeps failing)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import cli_env, file_group, run_cli, wait_for

from infrakit import Runtime, SpecError
from infrakit.events import Event
from infrakit.manager.actor import GroupNotFoundError
from infrakit.plugins.instance.file import FileInstancePlugin
from infrakit.spec import parse_group
from infrakit.spi import Spec
from infrakit.spi.instance import TAG_CLUSTER, TAG_CONFIG_HASH, TAG_GROUP, TAG_LOGICAL_ID


def cluster(*groups: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"Groups": list(groups), **extra}


def sized(runtime: Runtime, group_id: str) -> int:
    return len(runtime.describe(group_id)["Instances"])


def kinds(events: list[Event], kind: str) -> list[Event]:
    return [event for event in events if event.kind == kind]


# -- item 6: a commit during a destroy ---------------------------------------------------------


def test_a_commit_during_a_destroy_supersedes_it(home: Path) -> None:
    with Runtime(home=home) as runtime:
        runtime.commit(file_group("g", size=3))
        runtime.wait_converged("g")
        runtime.start_destroy("g")
        assert runtime.commit(file_group("g", size=4)) == (
            "Adding 4 instances to increase the group size to 4"
        )
        described = runtime.wait_converged("g")
        assert len(described["Instances"]) == 4
        assert runtime.is_managed("g")
        assert [spec["Properties"]["Allocation"] for spec in runtime.inspect()] == [{"Size": 4}]
    with Runtime(home=home) as again:  # the store kept the commit, not the destroy
        assert len(again.wait_converged("g")["Instances"]) == 4


# -- item 7: a destroyed or freed cluster-file group stays gone ---------------------------------


@pytest.mark.parametrize(("how", "left"), [("destroy", 0), ("free", 2)])
def test_a_removed_cluster_file_group_stays_removed_after_a_restart(
    home: Path, how: str, left: int
) -> None:
    config = cluster(file_group("g", size=2))
    with Runtime(config, home=home) as runtime:
        runtime.wait_converged("g")
        getattr(runtime, how)("g")
    with Runtime(config, home=home) as again:
        assert again.inspect() == []
        with pytest.raises(GroupNotFoundError):
            again.describe("g")
    assert len(list((home / "instances" / "file").iterdir())) == left
    edited = cluster(file_group("g", size=1))  # editing the file's group brings it back
    with Runtime(edited, home=home) as back:
        assert len(back.wait_converged("g")["Instances"]) == 1


def test_a_destroyed_cluster_file_group_stays_gone_after_a_leader_change(home: Path) -> None:
    config = cluster(file_group("g", size=2))
    leader = Runtime(config, home=home, location="first").start()
    follower = Runtime(config, home=home, location="second").start(wait_for_leadership=0)
    try:
        assert leader.is_leader() and not follower.is_leader()
        leader.wait_converged("g")
        leader.destroy("g")
        leader.stop()
        wait_for(follower.is_leader, 30, "the follower to take over")
        assert follower.inspect() == []
    finally:
        leader.stop()
        follower.stop()
    assert list((home / "instances" / "file").iterdir()) == []


def test_a_destroyed_cluster_file_group_stays_gone_after_a_crash(
    home: Path, tmp_path: Path
) -> None:
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(cluster(file_group("g", size=2))))
    env = cli_env(home)

    def run() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "infrakit.cli.main", "run", str(path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )

    def listed() -> list[str]:
        result = run_cli(home, "group", "ls", "-q")
        return result.stdout.split() if result.returncode == 0 else ["(no answer)"]

    first = run()
    try:
        wait_for(lambda: listed() == ["g"], 60, "the cluster file's group")
        out = run_cli(home, "group", "destroy", "g", "--wait")
        assert out.returncode == 0, out.stderr
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
        second = run()
        try:
            wait_for(lambda: listed() != ["(no answer)"], 60, "the restarted runtime to answer")
            assert listed() == []
        finally:
            os.killpg(second.pid, signal.SIGTERM)
            second.wait(60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(30)


# -- item 5: two clusters on the same instances ------------------------------------------------


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    return tmp_path / "shared-instances"


def on_shared_files(shared: Path) -> dict[str, Any]:
    """A cluster whose file plugin keeps its instances in `shared`, as two clusters on one
    Docker engine or cloud account share what they make."""
    plugin = {"Name": "instance-file", "Kind": "file", "Options": {"Dir": str(shared)}}
    return cluster(file_group("cattle", size=2), Plugins=[plugin])


def test_two_clusters_sharing_instances_never_touch_each_others(
    tmp_path: Path, shared: Path
) -> None:
    one = Runtime(on_shared_files(shared), home=tmp_path / "one")
    two = Runtime(on_shared_files(shared), home=tmp_path / "two")
    seen: list[Event] = []
    one.events.subscribe(seen.append)
    two.events.subscribe(seen.append)
    with one, two:
        mine = {i["ID"] for i in one.wait_converged("cattle")["Instances"]}
        theirs = {i["ID"] for i in two.wait_converged("cattle")["Instances"]}
        assert len(mine) == len(theirs) == 2 and not mine & theirs
        files = {path.name for path in shared.iterdir()}
        assert files == mine | theirs
        assert kinds(seen, "duplicate") == [] and kinds(seen, "destroyed") == []
        # Each reports the other's once, at its first look after they appeared.
        wait_for(lambda: len(kinds(seen, "foreign")) == 2, what="each to report the other's")
        one.destroy("cattle")
        assert {path.name for path in shared.iterdir()} == theirs
        assert {i["ID"] for i in two.wait_converged("cattle")["Instances"]} == theirs


def test_an_instance_without_a_cluster_id_is_adopted_and_labelled(home: Path) -> None:
    """Instances made before cluster IDs (or by Go InfraKit) carry none: the group adopts them
    and labels them as its own."""
    spec = file_group("cattle", size=1)
    plugin = FileInstancePlugin(home / "instances" / "file")
    tags = {
        TAG_GROUP: "cattle",
        TAG_LOGICAL_ID: "cattle-0",
        TAG_CONFIG_HASH: parse_group(spec).config_hash,
    }
    old = plugin.provision(Spec(properties={"Note": "v1"}, tags=tags))
    with Runtime(home=home) as runtime:
        runtime.commit(spec)
        (member,) = runtime.wait_converged("cattle")["Instances"]
        assert member["ID"] == old
        cluster_id = member["Tags"].get(TAG_CLUSTER)
        wait_for(
            lambda: plugin.describe_instances({TAG_CLUSTER: str(cluster_id)}),
            what="the adopted instance to carry our cluster ID",
        )
        assert cluster_id, "labelled with this cluster's ID"


def test_a_cluster_keeps_its_id_across_restarts(home: Path) -> None:
    with Runtime(home=home) as runtime:
        runtime.commit(file_group("cattle", size=1))
        (before,) = runtime.wait_converged("cattle")["Instances"]
    with Runtime(home=home) as again:
        (after,) = again.wait_converged("cattle")["Instances"]
    assert after["ID"] == before["ID"]
    assert after["Tags"][TAG_CLUSTER] == before["Tags"][TAG_CLUSTER]


def test_a_named_cluster_tags_its_instances_with_its_name(home: Path) -> None:
    with Runtime(cluster(file_group("cattle", size=1), Cluster={"ID": "prod"}), home=home) as rt:
        (member,) = rt.wait_converged("cattle")["Instances"]
        assert member["Tags"][TAG_CLUSTER] == "prod"


# -- item 9: questions answered while a plugin does not answer ---------------------------------


class FilePlugins:
    """`infrakit plugin start file` serving instance-file in the home's plugins directory."""

    def __init__(self, home: Path, files: Path) -> None:
        self.home, self.files = home, files
        self.started: list[subprocess.Popen[str]] = []

    def start(self) -> subprocess.Popen[str]:
        env = cli_env(self.home)
        command = ["plugin", "start", "file", "--option", f"Dir={self.files}"]
        process = subprocess.Popen(
            [sys.executable, "-m", "infrakit.cli.main", *command],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.started.append(process)
        assert process.stdout is not None
        assert process.stdout.readline().startswith("Listening at: ")
        return process

    def stop(self) -> None:
        for process in self.started:
            os.killpg(process.pid, signal.SIGCONT)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)


@pytest.fixture
def file_plugins(home: Path, tmp_path: Path) -> Iterator[FilePlugins]:
    plugins = FilePlugins(home, tmp_path / "remote-files")
    yield plugins
    plugins.stop()


@pytest.fixture
def file_plugin_process(file_plugins: FilePlugins) -> subprocess.Popen[str]:
    return file_plugins.start()


def test_questions_are_answered_while_a_plugin_does_not_answer(
    home: Path, file_plugin_process: subprocess.Popen[str]
) -> None:
    endpoint = f"ipc://{home / 'plugins' / 'instance-file'}"
    config = {"Plugins": [{"Name": "instance-file", "Endpoint": endpoint}]}
    with Runtime(config, home=home) as runtime:
        runtime.commit(file_group("cattle", size=2))
        instances = {i["ID"] for i in runtime.wait_converged("cattle")["Instances"]}
        os.killpg(file_plugin_process.pid, signal.SIGSTOP)  # there, but answering nothing

        def describe_names_the_plugin() -> str:
            result = run_cli(home, "group", "describe", "cattle")
            assert result.returncode == 0, result.stderr
            assert {line.split()[0] for line in result.stdout.splitlines()[1:]} == instances
            return "instance plugin 'instance-file' does not answer" in result.stderr

        wait_for(describe_names_the_plugin, 60, "describe to name the plugin that does not answer")
        status = run_cli(home, "manager", "status")
        assert status.returncode == 0, status.stderr
        assert "instance plugin 'instance-file' does not answer" in status.stdout
        rows = [line.split() for line in status.stdout.splitlines()]
        assert ["Up:", "no"] in rows
        listed = run_cli(home, "group", "ls")
        assert listed.returncode == 0, listed.stderr
        assert "does not answer" in listed.stdout.splitlines()[1]
        os.killpg(file_plugin_process.pid, signal.SIGCONT)


# -- item 13: a group that cannot act says so ---------------------------------------------------


def test_a_group_that_cannot_provision_shows_it_everywhere(home: Path) -> None:
    spec = file_group("broken", size=1)
    spec["Properties"]["Instance"] = {
        "Plugin": "instance-process",
        "Properties": {"Cmd": ["/nonexistent/program"]},
    }
    with Runtime(home=home) as runtime:
        runtime.commit(spec)
        wait_for(
            lambda: any("cannot be provisioned" in c for c in runtime.info("broken")["Conditions"]),
            30,
            "the condition",
        )
        described = run_cli(home, "group", "describe", "broken")
        assert "cannot be provisioned" in described.stderr
        assert "/nonexistent/program" in described.stderr
        listed = run_cli(home, "group", "ls")
        assert "cannot be provisioned" in listed.stdout
        status = run_cli(home, "manager", "status")
        assert "cannot be provisioned" in status.stdout


def test_a_stored_group_whose_plugin_is_gone_shows_why(home: Path, tmp_path: Path) -> None:
    extra = FileInstancePlugin(tmp_path / "extra")
    spec = file_group("g", size=1)
    spec["Properties"]["Instance"]["Plugin"] = "instance-extra"
    with Runtime(home=home, plugins={"instance-extra": extra}) as runtime:
        runtime.commit(spec)
        runtime.wait_converged("g")
    with Runtime(home=home) as without:  # the embedding program no longer supplies it
        (condition,) = without.info("g")["Conditions"]
        assert "no instance plugin named 'instance-extra'" in condition
        assert without.describe("g")["Conditions"] == [condition]
        assert [s["ID"] for s in without.inspect()] == ["g"]
        listed = run_cli(home, "group", "ls")
        assert "no instance plugin named 'instance-extra'" in listed.stdout


def test_a_cluster_id_other_than_the_stores_is_refused_before_anything_starts(
    home: Path,
) -> None:
    with Runtime(cluster(Cluster={"ID": "prod"}), home=home):
        pass
    store = home / "configs" / "global.config"
    before = store.read_text()
    renamed = Runtime(cluster(Cluster={"ID": "test"}), home=home)
    with pytest.raises(SpecError, match=r"Cluster\.ID: the store belongs to cluster 'prod'"):
        renamed.start()
    assert not renamed.running
    assert store.read_text() == before
    with Runtime(cluster(file_group("cattle", size=1)), home=home) as unnamed:
        (member,) = unnamed.wait_converged("cattle")["Instances"]
        assert member["Tags"][TAG_CLUSTER] == "prod", "an unnamed cluster keeps the stored ID"


def test_a_cluster_file_group_its_plugins_refuse_stops_the_start_and_changes_nothing(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    broken = file_group("broken", size=1)
    broken["Properties"]["Instance"] = {
        "Plugin": "instance-process",
        "Properties": {"Cmd": "not a list", "Env": {"A=B": "x"}},
    }
    runtime = Runtime(cluster(file_group("fine", size=1), broken), home=home)
    with pytest.raises(SpecError) as refused:
        runtime.start()
    assert refused.value.problems == [
        ("Groups[1].Properties.Instance.Properties.Cmd", "must be a list of strings, got a string"),
        ("Groups[1].Properties.Instance.Properties.Env.A=B", "not a valid environment variable"),
    ]
    assert not runtime.running
    assert not (home / "configs").exists() and not (home / "plugins").exists()


def test_a_cluster_file_group_whose_plugin_is_not_up_yet_is_committed_once_it_is(
    home: Path, file_plugins: FilePlugins
) -> None:
    endpoint = f"ipc://{home / 'plugins' / 'instance-file'}"
    config = cluster(
        file_group("cattle", size=2), Plugins=[{"Name": "instance-file", "Endpoint": endpoint}]
    )
    with Runtime(config, home=home) as runtime:
        conditions = runtime.info("cattle")["Conditions"]
        assert conditions[0].startswith("waiting to commit it: plugin 'instance-file'")
        assert conditions[1].startswith("instance plugin 'instance-file' does not answer")
        file_plugins.start()
        assert len(runtime.wait_converged("cattle")["Instances"]) == 2
