"""The swarm flavor against a real Docker engine in a real single-node swarm on 127.0.0.1, and a
second real dockerd on this machine that runs a prepared Init to join that swarm as a worker.

The engine is made a swarm manager (`docker swarm init --advertise-addr 127.0.0.1`) if it is not
one; a swarm this module made is left at the end, one it found is reused and never left.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from support import docker_available, require, wait_for

from infrakit.plugins.flavor.swarm import ASSOCIATION_TAG, SwarmFlavor
from infrakit.spi.errors import PluginError, ValidationError
from infrakit.spi.flavor import AllocationMethod, Health
from infrakit.spi.instance import Description, Spec

WORKER = {"Type": "worker"}
MANAGER = {"Type": "manager"}
SIZED = AllocationMethod(size=3)
QUORUM = AllocationMethod(logical_ids=("m1", "m2", "m3"))


# -- validation (no engine needed) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("properties", "allocation", "path", "words"),
    [
        (None, SIZED, "Type", "required"),
        ({}, SIZED, "Type", "required"),
        ({"Type": "boss"}, SIZED, "Type", "manager, worker"),
        ({"Type": 1}, SIZED, "Type", "manager, worker"),
        ({"Type": "worker", "Size": 3}, SIZED, "Size", "unknown key"),
        ({"type": "worker", "dockerRestartCommand": ""}, SIZED, "DockerRestartCommand", "empty"),
        ({"Type": "worker", "DaemonConfig": 7}, SIZED, "DaemonConfig", "string"),
        ({"Type": "worker", "InitScript": ["ok", 2]}, SIZED, "InitScript[1]", "string"),
        ({"Type": "worker", "InitScript": "{{.NOPE}}"}, SIZED, "InitScript", "{{.NOPE}}"),
        ({"Type": "manager"}, SIZED, "Allocation.LogicalIDs", "not a Size"),
        (MANAGER, AllocationMethod(logical_ids=("a", "b")), "Allocation.LogicalIDs", "odd"),
        (MANAGER, AllocationMethod(logical_ids=()), "Allocation.LogicalIDs", "not 0"),
        ("worker", SIZED, "", "object"),
    ],
)
def test_validate_refuses_with_the_path(
    properties: Any, allocation: AllocationMethod, path: str, words: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        SwarmFlavor().validate(properties, allocation)
    assert caught.value.path == path
    assert words in caught.value.reason


@pytest.mark.parametrize(
    ("properties", "allocation"),
    [
        (WORKER, SIZED),
        (WORKER, QUORUM),
        ({"type": "manager", "dockerrestartcommand": "systemctl restart docker"}, QUORUM),
        (MANAGER, AllocationMethod(logical_ids=("only",))),
        ({"Type": "worker", "InitScript": "docker info --format '{{json .Labels}}'"}, SIZED),
    ],
)
def test_validate_accepts(properties: Any, allocation: AllocationMethod) -> None:
    SwarmFlavor().validate(properties, allocation)


def test_an_instance_without_association_tag_is_unhealthy_and_has_nothing_to_drain() -> None:
    flavor = SwarmFlavor()  # no engine is asked: there is nothing to look up
    stranger = Description(id="i-1", tags={"infrakit.group": "workers"})
    assert flavor.healthy(WORKER, stranger) is Health.UNHEALTHY
    flavor.drain(WORKER, stranger)


def test_an_engine_that_does_not_answer_is_a_plugin_error(tmp_path: Path) -> None:
    client = docker.DockerClient(base_url=f"unix://{tmp_path}/no.sock", version="1.41")
    with pytest.raises(PluginError, match="asking the engine about its swarm"):
        SwarmFlavor(client).prepare(WORKER, Spec(), SIZED)


# -- the real swarm -------------------------------------------------------------------------


# The engine's swarm is one for the whole machine: a second test run at the same time (another
# checkout's `make test`) would find it half made, or see it left under its feet, and two second
# engines would join it at once. Runs take turns at this module.
SWARM_LOCK = Path(tempfile.gettempdir()) / "infrakit-test-swarm.lock"


@pytest.fixture(scope="module")
def swarm() -> Iterator[docker.DockerClient]:
    """A client of this machine's engine, a swarm manager for the module's duration."""
    require("docker", docker_available())
    with open(SWARM_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        client = docker.from_env(timeout=60)
        created = _make_manager(client)
        try:
            yield client
        finally:
            if created:
                client.swarm.leave(force=True)
            client.close()


def _make_manager(client: docker.DockerClient) -> bool:
    """Make the engine a swarm manager if it is in no swarm; True if this call made the swarm."""
    state = client.info()["Swarm"]
    if state.get("LocalNodeState") == "inactive":
        try:
            client.swarm.init(advertise_addr="127.0.0.1")
            return True
        except docker.errors.APIError:
            state = client.info()["Swarm"]  # someone else made it meanwhile: reuse it
    manager = state.get("LocalNodeState") == "active" and state.get("ControlAvailable")
    require("a swarm manager", bool(manager), f"the engine's swarm state is {state}")
    return False


def cli_join_command(kind: str) -> list[str]:
    """What `docker swarm join-token <kind>` tells an operator to run, split into words."""
    out = subprocess.run(
        ["docker", "swarm", "join-token", kind], check=True, capture_output=True, text=True
    ).stdout
    line = next(line for line in out.splitlines() if "docker swarm join" in line)
    return line.split()


@pytest.mark.parametrize("kind", ["worker", "manager"])
def test_prepare_writes_the_real_join_of_this_swarm(swarm: docker.DockerClient, kind: str) -> None:
    flavor = SwarmFlavor(swarm)
    spec = Spec(tags={"infrakit.group": "g"}, init="echo after join", logical_id="m1")
    prepared = flavor.prepare({"Type": kind}, spec, QUORUM)

    association = prepared.tags[ASSOCIATION_TAG]
    assert uuid.UUID(association)
    assert prepared.tags["infrakit.group"] == "g"
    assert prepared.logical_id == "m1"
    # The same token and manager address the docker CLI gives for this swarm.
    expected = cli_join_command(kind)
    assert expected[:3] == ["docker", "swarm", "join"]
    token, addr = expected[expected.index("--token") + 1], expected[-1]
    assert f"docker swarm join --token {token} {addr}" in prepared.init.splitlines()
    # The engine gets labelled with the association before it joins, then restarted.
    init = prepared.init
    lines = init.splitlines()
    label = f"{ASSOCIATION_TAG}={association}"
    writes = next(i for i, line in enumerate(lines) if ">/etc/docker/daemon.json" in line)
    assert label in lines[writes]
    restart = lines.index("service docker restart || systemctl restart docker || true")
    waits = next(i for i, line in enumerate(lines) if line.startswith("n=0; until docker info"))
    assert writes < restart < waits < lines.index(f"docker swarm join --token {token} {addr}")
    assert init.rstrip().endswith("echo after join")
    subprocess.run(["sh", "-n", "-c", init], check=True)  # it parses
    # Every instance gets its own association.
    again = flavor.prepare({"Type": kind}, spec, QUORUM)
    assert again.tags[ASSOCIATION_TAG] != association


def test_prepare_renders_an_init_script_template(swarm: docker.DockerClient) -> None:
    properties = {
        "Type": "worker",
        "DockerRestartCommand": "rc-service docker restart",
        "InitScript": [
            "echo {{.LABEL}} {{ .TYPE }} {{.RESTART_DOCKER}}",
            "docker info --format '{{json .Labels}}'",
            "{{.JOIN_COMMAND}}",
        ],
    }
    prepared = SwarmFlavor(swarm).prepare(properties, Spec(), SIZED)
    token = cli_join_command("worker")[4]
    lines = prepared.init.splitlines()
    assert lines[0] == (
        f"echo {ASSOCIATION_TAG}={prepared.tags[ASSOCIATION_TAG]} worker rc-service docker restart"
    )
    assert lines[1] == "docker info --format '{{json .Labels}}'"  # not a placeholder: kept
    assert lines[2].startswith(f"docker swarm join --token {token} ")


def test_healthy_is_unknown_for_an_association_no_node_has(swarm: docker.DockerClient) -> None:
    flavor = SwarmFlavor(swarm)
    nobody = Description(id="i-2", tags={ASSOCIATION_TAG: uuid.uuid4().hex})
    assert flavor.healthy(WORKER, nobody) is Health.UNKNOWN
    assert flavor.healthy(MANAGER, nobody) is Health.UNKNOWN
    flavor.drain(WORKER, nobody)  # not in the swarm: nothing to drain, not an error


def set_node_label(client: docker.DockerClient, node_id: str, value: str | None) -> None:
    """Set (or with None remove) this module's association label among the node's swarm labels.

    Retried on a version conflict: another user of the engine may update the node meanwhile.
    """

    def attempt() -> bool:
        node = client.nodes.get(node_id)
        spec = dict(node.attrs["Spec"])
        labels = dict(spec.get("Labels") or {})
        if value is None:
            labels.pop(ASSOCIATION_TAG, None)
        else:
            labels[ASSOCIATION_TAG] = value
        spec["Labels"] = labels
        try:
            node.update(spec)
        except docker.errors.APIError as error:
            if error.status_code == 404:
                raise
            return False
        return True

    wait_for(attempt, 20, f"label update of node {node_id}")


def test_healthy_when_a_ready_manager_node_carries_the_association(
    swarm: docker.DockerClient,
) -> None:
    # This engine cannot take an engine label without a restart (too disruptive here), so the
    # association is put among its node's swarm labels, which the flavor also looks at.
    flavor = SwarmFlavor(swarm)
    node_id = swarm.info()["Swarm"]["NodeID"]
    me = Description(id="this-engine", tags={ASSOCIATION_TAG: uuid.uuid4().hex})
    assert flavor.healthy(MANAGER, me) is Health.UNKNOWN
    set_node_label(swarm, node_id, me.tags[ASSOCIATION_TAG])
    try:
        assert flavor.healthy(MANAGER, me) is Health.HEALTHY  # ready, reachable leader
        assert flavor.healthy(WORKER, me) is Health.HEALTHY  # ready
    finally:
        set_node_label(swarm, node_id, None)
    assert flavor.healthy(MANAGER, me) is Health.UNKNOWN


# -- a second real engine on this machine ------------------------------------------------------


@dataclass
class SecondEngine:
    """A second dockerd with its own state, answering on a unix socket in `home`."""

    home: Path
    process: subprocess.Popen[bytes]
    client: docker.DockerClient

    @property
    def url(self) -> str:
        return f"unix://{self.home}/docker.sock"

    @property
    def daemon_json(self) -> Path:
        return self.home / "daemon.json"

    def log_tail(self) -> str:
        return _tail(self.home)


@pytest.fixture
def second_engine() -> Iterator[SecondEngine]:
    """Start a second dockerd in this network namespace: no bridge, no iptables, own containerd.

    It leaves any swarm and is stopped afterwards; its node is removed from the swarm if left.
    """
    require("docker", docker_available())
    require("root", os.geteuid() == 0, "a second dockerd needs root")
    dockerd = shutil.which("dockerd")
    require("dockerd", dockerd is not None)
    assert dockerd is not None
    home = Path(tempfile.mkdtemp(prefix="iks-", dir="/tmp"))  # unix socket paths are short
    (home / "daemon.json").write_text('{"log-level": "info"}\n')
    command = [
        dockerd,
        f"--config-file={home}/daemon.json",
        f"--data-root={home}/data",
        f"--exec-root={home}/exec",
        f"--pidfile={home}/docker.pid",
        f"--host=unix://{home}/docker.sock",
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-masq=false",
        "--ip-forward=false",
        "--containerd-namespace=iks-moby",
        "--containerd-plugins-namespace=iks-plugins",
    ]
    with open(home / "dockerd.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    node_ids: list[str] = []
    engine: SecondEngine | None = None
    try:

        def answers() -> docker.DockerClient | None:
            assert process.poll() is None, f"second dockerd exited: {_tail(home)}"
            try:
                client = docker.DockerClient(base_url=f"unix://{home}/docker.sock", timeout=60)
                client.ping()
            except (docker.errors.DockerException, OSError):
                return None
            return client

        engine = SecondEngine(home, process, wait_for(answers, 60, "the second dockerd"))
        yield engine
    finally:
        if engine is not None:
            with contextlib.suppress(docker.errors.DockerException, OSError):
                state = engine.client.info()["Swarm"]
                if state.get("NodeID"):
                    node_ids.append(state["NodeID"])
                if state.get("LocalNodeState") != "inactive":
                    engine.client.swarm.leave(force=True)
            engine.client.close()
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        _remove_nodes(node_ids)
        _unmount_under(home)
        shutil.rmtree(home, ignore_errors=True)


def _tail(home: Path) -> str:
    return (home / "dockerd.log").read_text(errors="replace")[-3000:]


def _remove_nodes(node_ids: list[str]) -> None:
    """Remove from this engine's swarm the nodes a failed test may have left behind."""
    if not node_ids:
        return
    client = docker.from_env(timeout=60)
    try:
        for node_id in node_ids:
            with contextlib.suppress(docker.errors.APIError):
                client.nodes.get(node_id).remove(force=True)
    finally:
        client.close()


def _unmount_under(home: Path) -> None:
    """Lazily unmount anything the second dockerd left mounted in its own directories."""
    prefix = f"{home}/"
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix):
            mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def test_an_engine_in_no_swarm_cannot_prepare(second_engine: SecondEngine) -> None:
    with pytest.raises(PluginError, match=r"not a swarm manager: run `docker swarm init` first"):
        SwarmFlavor(second_engine.client).prepare(WORKER, Spec(), SIZED)


@pytest.mark.parametrize("run", ["script", "line by line"])
def test_a_second_engine_runs_the_init_joins_is_healthy_and_drain_removes_it(
    swarm: docker.DockerClient, second_engine: SecondEngine, run: str
) -> None:
    flavor = SwarmFlavor(swarm)
    # The "restart" reloads the second engine's daemon.json (labels reload on SIGHUP), so that
    # this machine's own engine is never restarted.
    worker = {
        "Type": "worker",
        "DockerRestartCommand": f"kill -HUP {second_engine.process.pid}",
        "DaemonConfig": str(second_engine.daemon_json),
    }
    spec = flavor.prepare(worker, Spec(tags={"infrakit.group": "workers"}), SIZED)
    instance = Description(id="second-engine", tags=spec.tags)
    association = spec.tags[ASSOCIATION_TAG]
    assert flavor.healthy(worker, instance) is Health.UNKNOWN  # not joined yet

    # Run the Init as the new machine would, its docker CLI talking to the second engine: as a
    # script (process, docker, vagrant instances), or each line in a shell of its own (dind).
    scripts = [spec.init] if run == "script" else [x for x in spec.init.splitlines() if x.strip()]
    for script in scripts:
        ran = subprocess.run(
            ["/bin/sh", "-c", script],
            env={**os.environ, "DOCKER_HOST": second_engine.url},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert ran.returncode == 0, (
            f"{script}\n{ran.stdout}\n{ran.stderr}\n{second_engine.log_tail()}"
        )
    config = json.loads(second_engine.daemon_json.read_text())
    assert config == {"log-level": "info", "labels": [f"{ASSOCIATION_TAG}={association}"]}
    node_id = second_engine.client.info()["Swarm"]["NodeID"]
    node = swarm.nodes.get(node_id)
    assert node.attrs["Spec"]["Role"] == "worker"
    assert node.attrs["Description"]["Engine"]["Labels"][ASSOCIATION_TAG] == association

    wait_for(lambda: flavor.healthy(worker, instance) is Health.HEALTHY, 60, "a healthy worker")
    # A manager group's drain only drains: the node stays a member, with no tasks.
    flavor.drain({**worker, "Type": "manager"}, instance)
    node.reload()
    assert node.attrs["Spec"]["Availability"] == "drain"
    # Once its engine is gone from the swarm, the node is down: unhealthy.
    second_engine.client.swarm.leave(force=True)
    wait_for(lambda: flavor.healthy(worker, instance) is Health.UNHEALTHY, 60, "a down worker")
    # A worker group's drain removes the node.
    flavor.drain(worker, instance)
    assert node_id not in [n.id for n in swarm.nodes.list()]
    assert flavor.healthy(worker, instance) is Health.UNKNOWN
    flavor.drain(worker, instance)  # again: nothing left, not an error
