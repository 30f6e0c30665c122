"""Nothing orphaned, nothing left: the process and file plugins find what an interrupted
provision or destroy left (by its record, or by what its processes carry), and `sweep` removes
the remains of a group's dead instances, also over the wire as `Instance.Sweep`, and a group's
destroy completes only once its sweep has succeeded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import wait_for

from actors.remote import RpcServer
from infrakit import Runtime
from infrakit.events import Event
from infrakit.plugins.flavor.vanilla import VanillaFlavor
from infrakit.plugins.instance._proc import CHILDREN, proc_stat
from infrakit.plugins.instance.file import FileInstancePlugin
from infrakit.plugins.instance.process import ProcessInstancePlugin
from infrakit.spi import PluginError, Spec
from infrakit.spi.instance import Sweepable
from infrakit.wire.plugin import connect_plugin, plugin_handlers

WaitFor = Callable[..., None]
SLEEP = "exec sleep 1000"


def running(pid: int) -> bool:
    st = proc_stat(pid)
    return st is not None and st.running


def pid_of(plugin: ProcessInstancePlugin, iid: str) -> int:
    pid = json.loads((plugin.state_dir / iid / "instance.json").read_text())["PID"]
    assert isinstance(pid, int)
    return pid


def gone_token() -> str:
    """`<pid>-<start time>` of a process that has ended: a provisioner that crashed."""
    child = subprocess.Popen(["true"])
    st = proc_stat(child.pid)
    child.wait()
    assert st is not None
    return f"{child.pid}-{st.start_time}"


def start_carrying(instance_dir: Path, *argv: str) -> subprocess.Popen[bytes]:
    """Start a process the way the plugin starts an instance's, carrying its identity."""
    env = {
        **os.environ,
        "INFRAKIT_INSTANCE_ID": instance_dir.name,
        "INFRAKIT_INSTANCE_DIR": str(instance_dir),
    }
    child = subprocess.Popen(
        list(argv or ("sleep", "1000")), env=env, start_new_session=True, cwd="/"
    )
    CHILDREN.add(child)  # reaped by the plugin once it dies, as the plugin's own would be
    # Started means exec'd: until then the child carries its parent's environment, and the
    # plugin (which finds it by what it carries) could not know it.
    marker = f"INFRAKIT_INSTANCE_DIR={instance_dir}".encode()
    wait_for(lambda: marker in environ_of(child.pid), what=f"process {child.pid} to start")
    return child


def environ_of(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def unrecorded_instance(state_dir: Path, iid: str, provisioner: str, **tags: str) -> Path:
    """The directory a provision makes before it starts the process: a record without PID."""
    idir = state_dir / iid
    idir.mkdir(parents=True)
    record = {
        "ID": iid,
        "LogicalID": None,
        "Tags": tags,
        "Spec": Spec(tags=tags, init=SLEEP).to_json(),
        "Provisioner": provisioner,
    }
    (idir / "instance.json").write_text(json.dumps(record))
    return idir


# -- the process plugin --------------------------------------------------------------------


def test_every_built_in_instance_plugin_is_sweepable(
    proc_plugin: ProcessInstancePlugin, file_plugin: FileInstancePlugin
) -> None:
    assert isinstance(proc_plugin, Sweepable)
    assert isinstance(file_plugin, Sweepable)


def test_sweep_removes_dead_instances_of_the_tags_and_nothing_else(
    proc_plugin: ProcessInstancePlugin,
) -> None:
    live = proc_plugin.provision(Spec(tags={"g": "x"}, init=SLEEP))
    dead = proc_plugin.provision(Spec(tags={"g": "x"}, init="exit 0"))
    other = proc_plugin.provision(Spec(tags={"g": "y"}, init="exit 0"))
    CHILDREN.wait(pid_of(proc_plugin, dead), 10)
    CHILDREN.wait(pid_of(proc_plugin, other), 10)
    assert {d.id for d in proc_plugin.describe_instances({})} == {live}

    assert proc_plugin.sweep({"g": "x"}) == [dead]

    names = {p.name for p in proc_plugin.state_dir.iterdir()}
    assert names == {live, other}
    assert running(pid_of(proc_plugin, live))
    assert proc_plugin.sweep({"g": "x"}) == []  # idempotent
    assert proc_plugin.sweep({"g": "y"}) == [other]


@pytest.mark.parametrize("look_first", [True, False], ids=["described", "not-looked-at"])
def test_an_instance_started_but_never_recorded_is_found_by_what_it_carries(
    state_dir: Path, look_first: bool
) -> None:
    idir = unrecorded_instance(state_dir, "proc-0123456789ab", gone_token(), g="x")
    child = start_carrying(idir)
    plugin = ProcessInstancePlugin(state_dir, stop_timeout=2.0)

    if look_first:
        (found,) = plugin.describe_instances({"g": "x"})
        assert found.id == idir.name and found.tags == {"g": "x"}
        assert pid_of(plugin, idir.name) == child.pid  # adopted: its record now has the PID

    plugin.destroy(idir.name)  # not looked at: the record still has no PID
    assert not running(child.pid)
    assert not idir.exists()


def test_an_unrecorded_instance_whose_provisioner_died_before_starting_it_is_dead(
    state_dir: Path,
) -> None:
    idir = unrecorded_instance(state_dir, "proc-00000000bbbb", gone_token(), g="x")
    plugin = ProcessInstancePlugin(state_dir)

    assert plugin.describe_instances({}) == []
    assert plugin.sweep({"g": "x"}) == [idir.name]
    assert list(state_dir.iterdir()) == []


def test_a_live_provisioners_unrecorded_instance_is_left_alone(state_dir: Path) -> None:
    me = proc_stat(os.getpid())
    assert me is not None
    helper = subprocess.Popen(["sleep", "1000"])  # another live process provisioning
    st = proc_stat(helper.pid)
    assert st is not None
    try:
        idir = unrecorded_instance(state_dir, "proc-00000000cccc", f"{helper.pid}-{st.start_time}")
        plugin = ProcessInstancePlugin(state_dir)
        assert plugin.describe_instances({}) == []
        assert plugin.sweep({}) == []
        assert idir.is_dir()
    finally:
        helper.kill()
        helper.wait()


def test_sweep_kills_processes_whose_instance_directory_is_gone(
    proc_plugin: ProcessInstancePlugin,
) -> None:
    orphan = start_carrying(proc_plugin.state_dir / "proc-00000000dddd")
    keep = proc_plugin.provision(Spec(tags={"g": "x"}, init=SLEEP))

    assert proc_plugin.sweep({"g": "other"}) == ["proc-00000000dddd"]

    wait_for(lambda: not running(orphan.pid), what="the orphan to die")
    assert running(pid_of(proc_plugin, keep))


def test_the_rest_of_a_dead_instances_process_group_is_killed(
    proc_plugin: ProcessInstancePlugin, tmp_path: Path
) -> None:
    child_file = tmp_path / "child.pid"
    init = f"sleep 1000 & echo $! > {child_file}.part; mv {child_file}.part {child_file}; wait"
    iid = proc_plugin.provision(Spec(init=init))
    wait_for(child_file.exists)
    leader, child = pid_of(proc_plugin, iid), int(child_file.read_text())
    os.kill(leader, signal.SIGKILL)  # the instance dies; its child would live on

    wait_for(lambda: proc_plugin.describe_instances({}) == [], what="the instance to be gone")
    wait_for(lambda: not running(child), what="the dead instance's child to be killed")


def test_stale_temp_entries_are_cleaned(proc_plugin: ProcessInstancePlugin) -> None:
    state = proc_plugin.state_dir
    me = proc_stat(os.getpid())
    assert me is not None
    stale = state / f".new-proc-00000000eeee.{gone_token()}"
    stale.mkdir()
    (stale / "instance.json").write_text("{")
    in_flight = state / f".new-proc-00000000ffff.{os.getpid()}-{me.start_time}"
    in_flight.mkdir()
    removed = state / ".destroyed-proc-000000001111-abcd"
    removed.mkdir()
    (removed / "output.log").write_text("bye")

    assert proc_plugin.describe_instances({}) == []
    assert not stale.exists()  # its provisioner is gone
    assert in_flight.exists()  # ours, and we live

    proc_plugin.sweep({})
    assert not removed.exists()
    assert in_flight.exists()


# -- the file plugin -----------------------------------------------------------------------


def test_file_temp_files_of_interrupted_writes_are_removed(
    file_plugin: FileInstancePlugin,
) -> None:
    directory = file_plugin.directory
    iid = file_plugin.provision(Spec(tags={"g": "x"}))
    stale = directory / f".instance-0123456789ab.{gone_token()}.k3x9q2zz.tmp"
    stale.write_text('{"ID": ')
    legacy = directory / ".instance-00000000aaaa.k3x9q2zz.tmp"  # an older version's name
    legacy.write_text("{")
    os.utime(legacy, (0, 0))
    young = directory / ".instance-00000000bbbb.a1b2c3d4.tmp"
    young.write_text("{")

    assert file_plugin.sweep({"g": "x"}) == []
    assert sorted(p.name for p in directory.iterdir()) == sorted([iid, young.name])


# -- on the wire ---------------------------------------------------------------------------


@pytest.fixture
def ipc(tmp_path: Path) -> str:
    return f"ipc://{tmp_path}/plugin.sock"


def test_instance_sweep_goes_over_the_wire(proc_plugin: ProcessInstancePlugin, ipc: str) -> None:
    dead = proc_plugin.provision(Spec(tags={"g": "x"}, init="exit 0"))
    CHILDREN.wait(pid_of(proc_plugin, dead), 10)
    with RpcServer(ipc, plugin_handlers(proc_plugin)).start():
        remote = connect_plugin("instance-process", ipc, timeout=10)
        try:
            assert isinstance(remote, Sweepable)
            assert remote.sweep({"g": "x"}) == [dead]
            assert remote.sweep({"g": "x"}) == []
        finally:
            remote.close()
    assert not (proc_plugin.state_dir / dead).exists()


def test_a_remote_plugin_without_sweep_has_nothing_to_sweep(ipc: str) -> None:
    with RpcServer(ipc, plugin_handlers(VanillaFlavor())).start():
        remote = connect_plugin("flavor-vanilla", ipc, timeout=10)
        try:
            assert remote.sweep({"g": "x"}) == []
        finally:
            remote.close()


# -- the group -----------------------------------------------------------------------------


class SweepBlocked(FileInstancePlugin):
    """A real file plugin whose sweep fails while a `.blocked` file is in its directory (say a
    cloud API refusing to delete a volume for a while)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.sweeps: list[dict[str, str]] = []

    def sweep(self, tags: Any) -> list[str]:
        self.sweeps.append(dict(tags))
        if (self.directory / ".blocked").exists():
            raise PluginError("the API refuses to delete it just now")
        return super().sweep(tags)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[tuple[Runtime, SweepBlocked]]:
    plugin = SweepBlocked(tmp_path / "files")
    with Runtime(home=tmp_path / "home", plugins={"instance-blocked": plugin}) as rt:
        yield rt, plugin


def test_a_group_is_forgotten_only_once_its_sweep_succeeded(
    runtime: tuple[Runtime, SweepBlocked],
) -> None:
    rt, plugin = runtime
    seen: list[Event] = []
    rt.events.subscribe(seen.append)
    rt.commit(
        {
            "ID": "swept",
            "Properties": {
                "Allocation": {"Size": 2},
                "Instance": {"Plugin": "instance-blocked"},
                "Flavor": {"Plugin": "flavor-vanilla"},
                "Health": {"Interval": "100ms"},
            },
        }
    )
    rt.wait_converged("swept")
    (plugin.directory / ".blocked").write_text("")

    rt.start_destroy("swept")
    wait_for(lambda: len(plugin.sweeps) >= 2, what="the failed sweep to be tried again")
    failed = [e for e in seen if e.kind == "destroy-failed" and "sweep" in e.message]
    assert len(failed) == 1  # said once, not at every try
    # The group's instances of this cluster only (another cluster's are left alone).
    assert plugin.sweeps[0].keys() == {"infrakit.group", "infrakit.cluster.id"}
    assert [s["infrakit.group"] for s in plugin.sweeps] == ["swept"] * len(plugin.sweeps)
    assert [spec["ID"] for spec in rt.inspect()] == ["swept"]  # not forgotten yet

    (plugin.directory / ".blocked").unlink()
    rt.destroy("swept", timeout=60)
    assert rt.inspect() == []
