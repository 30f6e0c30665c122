"""Tests of the process instance plugin with real processes (every one killed at teardown)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from infrakit.plugins.instance._proc import CHILDREN, proc_stat
from infrakit.plugins.instance.process import ProcessInstancePlugin
from infrakit.spi import InstancePlugin, PluginError, Spec, ValidationError
from infrakit.spi.instance import TAG_LOGICAL_ID, Watchable

WaitFor = Callable[..., None]

SLEEP = "exec sleep 1000"


def ids(plugin: ProcessInstancePlugin, **tags: str) -> set[str]:
    return {d.id for d in plugin.describe_instances(tags)}


def record(plugin: ProcessInstancePlugin, iid: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((plugin.state_dir / iid / "instance.json").read_text())
    return data


def pid_of(plugin: ProcessInstancePlugin, iid: str) -> int:
    pid = record(plugin, iid)["PID"]
    assert isinstance(pid, int)
    return pid


def running(pid: int) -> bool:
    st = proc_stat(pid)
    return st is not None and st.running


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def test_is_a_watchable_instance_plugin(proc_plugin: ProcessInstancePlugin) -> None:
    assert isinstance(proc_plugin, InstancePlugin)
    assert isinstance(proc_plugin, Watchable)


def test_provision_runs_init_in_its_own_session(
    proc_plugin: ProcessInstancePlugin, tmp_path: Path, wait_for: WaitFor
) -> None:
    out = tmp_path / "env.txt"
    init = (
        f'echo "$INFRAKIT_INSTANCE_ID|$INFRAKIT_LOGICAL_ID|$FOO|$(pwd)" > {out}.part; '
        f"mv {out}.part {out}; echo to-the-log; {SLEEP}"
    )
    spec = Spec(properties={"Env": {"FOO": "bar"}}, tags={"g": "web"}, init=init, logical_id="a")
    iid = proc_plugin.provision(spec)

    assert iid.startswith("proc-") and len(iid) == len("proc-") + 12
    wait_for(out.exists)
    idir = proc_plugin.state_dir / iid
    assert out.read_text().strip() == f"{iid}|a|bar|{idir}"
    wait_for(lambda: "to-the-log" in (idir / "output.log").read_text())

    rec = record(proc_plugin, iid)
    pid = pid_of(proc_plugin, iid)
    assert rec["ID"] == iid and rec["LogicalID"] == "a" and rec["Tags"] == {"g": "web"}
    assert rec["Spec"] == spec.to_json()
    assert rec["StartTime"] == proc_stat(pid).start_time  # type: ignore[union-attr]
    assert os.getsid(pid) == pid and os.getpgid(pid) == pid

    [desc] = proc_plugin.describe_instances({})
    assert (desc.id, desc.logical_id, desc.tags) == (iid, "a", {"g": "web"})
    assert desc.properties == {"Env": {"FOO": "bar"}}


def test_cmd_runs_with_init_in_env_and_dir(
    proc_plugin: ProcessInstancePlugin, tmp_path: Path, wait_for: WaitFor
) -> None:
    script = (
        'printf %s "$INFRAKIT_INIT|$INFRAKIT_LOGICAL_ID" > got.part; mv got.part got; '
        "exec sleep 1000"
    )
    props = {"cmd": ["/bin/sh", "-c", script], "Dir": str(tmp_path)}  # keys case-insensitive
    iid = proc_plugin.provision(Spec(properties=props, init="line1\nline2"))
    wait_for((tmp_path / "got").exists)
    assert (tmp_path / "got").read_text() == "line1\nline2|"
    assert ids(proc_plugin) == {iid}


def test_a_size_groups_process_sees_its_slot_as_its_logical_id(
    proc_plugin: ProcessInstancePlugin, tmp_path: Path, wait_for: WaitFor
) -> None:
    """A Size group sends no LogicalID (Go's meaning: not a pet), only the slot tag; the
    process still learns which slot it fills, and the record keeps the spec as given."""
    out = tmp_path / "lid"
    init = f'printf %s "$INFRAKIT_LOGICAL_ID" > {out}.part; mv {out}.part {out}; {SLEEP}'
    iid = proc_plugin.provision(Spec(tags={TAG_LOGICAL_ID: "workers-0"}, init=init))
    wait_for(out.exists)
    assert out.read_text() == "workers-0"
    assert record(proc_plugin, iid)["LogicalID"] is None


def test_tags_are_and_matched_and_label_merges(proc_plugin: ProcessInstancePlugin) -> None:
    a = proc_plugin.provision(Spec(tags={"group": "web", "zone": "1"}, init=SLEEP))
    b = proc_plugin.provision(Spec(tags={"group": "web", "zone": "2"}, init=SLEEP))
    c = proc_plugin.provision(Spec(tags={"group": "db", "zone": "1"}, init=SLEEP))

    assert ids(proc_plugin) == {a, b, c}
    assert ids(proc_plugin, group="web") == {a, b}
    assert ids(proc_plugin, group="web", zone="1") == {a}
    assert ids(proc_plugin, nothing="x") == set()

    proc_plugin.label(b, {"zone": "1", "extra": "yes"})
    assert ids(proc_plugin, group="web", zone="1") == {a, b}
    assert ProcessInstancePlugin(proc_plugin.state_dir).describe_instances({"extra": "yes"})[
        0
    ].tags == {"group": "web", "zone": "1", "extra": "yes"}
    with pytest.raises(PluginError):
        proc_plugin.label("proc-000000000000", {"a": "b"})


def test_destroy_stops_the_whole_group_and_removes_the_dir(
    proc_plugin: ProcessInstancePlugin, tmp_path: Path, wait_for: WaitFor
) -> None:
    child_file = tmp_path / "child.pid"
    init = f"sleep 1000 & echo $! > {child_file}.part; mv {child_file}.part {child_file}; wait"
    iid = proc_plugin.provision(Spec(init=init))
    keep = proc_plugin.provision(Spec(init=SLEEP))
    wait_for(lambda: read_int(child_file) is not None)
    shell, child = pid_of(proc_plugin, iid), read_int(child_file)
    assert child is not None and running(shell) and running(child)

    proc_plugin.destroy(iid)

    assert not running(shell) and not running(child)
    assert not (proc_plugin.state_dir / iid).exists()
    assert ids(proc_plugin) == {keep}
    proc_plugin.destroy(iid)  # already gone: fine
    proc_plugin.destroy("proc-000000000000")


def test_destroy_kills_what_ignores_sigterm(
    state_dir: Path, tmp_path: Path, wait_for: WaitFor
) -> None:
    plugin = ProcessInstancePlugin(state_dir, stop_timeout=0.2)
    child_file = tmp_path / "child.pid"
    init = (
        f"trap '' TERM; sleep 1000 & echo $! > {child_file}.part; "
        f"mv {child_file}.part {child_file}; wait; wait"
    )
    iid = plugin.provision(Spec(init=init))
    wait_for(lambda: read_int(child_file) is not None)
    shell, child = pid_of(plugin, iid), read_int(child_file)
    assert child is not None

    plugin.destroy(iid)

    assert not running(shell) and not running(child)
    assert ids(plugin) == set()


def test_killed_process_is_gone_reaped_and_watch_fires(
    proc_plugin: ProcessInstancePlugin, wait_for: WaitFor
) -> None:
    a = proc_plugin.provision(Spec(init=SLEEP))
    b = proc_plugin.provision(Spec(init=SLEEP))
    fired = threading.Event()
    unsubscribe = proc_plugin.watch(fired.set)

    pid = pid_of(proc_plugin, a)
    os.kill(pid, signal.SIGKILL)
    assert fired.wait(10)
    assert ids(proc_plugin) == {b}
    wait_for(lambda: proc_stat(pid) is None)  # reaped, not a zombie
    assert (proc_plugin.state_dir / a).is_dir()  # left for inspection
    unsubscribe()

    proc_plugin.destroy(a)  # dead: not an error, and its directory goes
    assert not (proc_plugin.state_dir / a).exists()


def test_instance_whose_process_exits_is_gone(proc_plugin: ProcessInstancePlugin) -> None:
    iid = proc_plugin.provision(Spec(init="echo bye"))
    pid = pid_of(proc_plugin, iid)
    CHILDREN.wait(pid, 10)
    assert ids(proc_plugin) == set()
    assert "bye" in (proc_plugin.state_dir / iid / "output.log").read_text()


def test_long_dead_directories_are_removed(state_dir: Path, wait_for: WaitFor) -> None:
    plugin = ProcessInstancePlugin(state_dir, dead_retention=0.0)
    iid = plugin.provision(Spec(init="exit 0"))
    wait_for(lambda: (plugin.describe_instances({}), not (state_dir / iid).exists())[1])


def test_a_new_plugin_object_adopts_running_processes(
    proc_plugin: ProcessInstancePlugin, state_dir: Path
) -> None:
    iid = proc_plugin.provision(Spec(tags={"g": "x"}, init=SLEEP))
    pid = pid_of(proc_plugin, iid)
    proc_plugin.close()

    adopter = ProcessInstancePlugin(state_dir, stop_timeout=2.0)
    assert ids(adopter, g="x") == {iid}
    adopter.destroy(iid)
    assert not running(pid)
    assert ids(adopter) == set()


def test_adopts_processes_started_by_another_python_process(
    state_dir: Path, wait_for: WaitFor
) -> None:
    code = (
        "import sys\n"
        "from infrakit.plugins.instance.process import ProcessInstancePlugin\n"
        "from infrakit.spi import Spec\n"
        "plugin = ProcessInstancePlugin(sys.argv[1])\n"
        "print(plugin.provision(Spec(tags={'g': 'x'}, init='exec sleep 1000')))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(state_dir)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    iid = done.stdout.strip()

    plugin = ProcessInstancePlugin(state_dir, stop_timeout=2.0, watch_interval=0.02)
    try:
        assert ids(plugin, g="x") == {iid}
        pid = pid_of(plugin, iid)
        fired = threading.Event()
        plugin.watch(fired.set)
        os.kill(pid, signal.SIGKILL)  # not our child: whoever reaps it, it is gone
        assert fired.wait(10)
        assert ids(plugin) == set()
    finally:
        plugin.close()


def test_destroy_of_adopted_process(state_dir: Path) -> None:
    code = (
        "import sys\n"
        "from infrakit.plugins.instance.process import ProcessInstancePlugin\n"
        "from infrakit.spi import Spec\n"
        "print(ProcessInstancePlugin(sys.argv[1]).provision(Spec(init='exec sleep 1000')))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    iid = subprocess.run(
        [sys.executable, "-c", code, str(state_dir)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    plugin = ProcessInstancePlugin(state_dir, stop_timeout=2.0)
    pid = pid_of(plugin, iid)
    plugin.destroy(iid)
    assert not running(pid)
    assert not (state_dir / iid).exists()


def test_pid_reuse_guard(proc_plugin: ProcessInstancePlugin, wait_for: WaitFor) -> None:
    iid = proc_plugin.provision(Spec(init=SLEEP))
    os.killpg(pid_of(proc_plugin, iid), signal.SIGKILL)
    wait_for(lambda: ids(proc_plugin) == set())
    # Another process now holds the recorded PID (its start time differs from the record's).
    stranger = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    try:
        path = proc_plugin.state_dir / iid / "instance.json"
        data = json.loads(path.read_text())
        data["PID"] = stranger.pid
        data["StartTime"] = proc_stat(stranger.pid).start_time + 1  # type: ignore[union-attr]
        path.write_text(json.dumps(data))

        assert ids(proc_plugin) == set()
        proc_plugin.destroy(iid)  # must not signal the process now holding that PID
        assert running(stranger.pid)
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.parametrize(
    ("properties", "path", "message"),
    [
        ("a string", "", "must be an object"),
        ({"Cmd": "ls"}, "Cmd", "must be a list of strings"),
        ({"Cmd": []}, "Cmd", "must not be empty"),
        ({"Cmd": ["ls", 1]}, "Cmd[1]", "must be a string"),
        ({"Dir": 3}, "Dir", "must be a non-empty string"),
        ({"Env": ["A=1"]}, "Env", "must be an object of strings"),
        ({"Env": {"A": 1}}, "Env.A", "must be a string"),
        ({"Env": {"A=B": "1"}}, "Env.A=B", "not a valid environment variable"),
        ({"Foo": 1}, "Foo", "unknown key 'Foo'"),
        ({"Cmd": ["a"], "CMD": ["b"]}, "Cmd", "'Cmd' and 'CMD' are the same key"),
    ],
)
def test_validate_reports_the_path(
    proc_plugin: ProcessInstancePlugin, properties: object, path: str, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        proc_plugin.validate(properties)
    assert caught.value.path == path
    assert message in caught.value.reason
    with pytest.raises(ValidationError):
        proc_plugin.provision(Spec(properties=properties, init=SLEEP))
    assert list(proc_plugin.state_dir.iterdir()) == []


def test_validate_accepts_good_properties(proc_plugin: ProcessInstancePlugin) -> None:
    proc_plugin.validate(None)
    proc_plugin.validate({})
    proc_plugin.validate({"Cmd": ["sleep", "1"], "Dir": "/tmp", "Env": {"A": "1"}})


def test_provision_that_cannot_start_fails_cleanly(proc_plugin: ProcessInstancePlugin) -> None:
    with pytest.raises(PluginError, match="cannot start"):
        proc_plugin.provision(Spec(properties={"Cmd": ["/no/such/program"]}))
    with pytest.raises(PluginError, match="cannot start"):
        proc_plugin.provision(Spec(properties={"Dir": "/no/such/dir"}, init=SLEEP))
    assert list(proc_plugin.state_dir.iterdir()) == []
