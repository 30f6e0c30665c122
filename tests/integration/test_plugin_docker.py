"""The Docker and docker-in-docker instance plugins against the real engine: real containers
(network none, the local test image, never pulled), tags as labels, Init as the command, loss
seen through the event stream, what a killed provision leaves (found, or removed soon), sweep
leaving nothing of a group, validation with paths, and a Size 3 group healed by the runtime.
Names are in test_docker_names.py. Every container made here carries a per-test label and is
removed after the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import TEST_IMAGE, TEST_LABEL, wait_for

from infrakit import Runtime, SpecError
from infrakit.plugins.instance.dind import DindInstancePlugin
from infrakit.plugins.instance.docker import DockerInstancePlugin, parse_memory, parse_options
from infrakit.spi import PluginError, Spec
from infrakit.spi.errors import ValidationError
from infrakit.spi.instance import TAG_GROUP, TAG_LOGICAL_ID

LOOP = "while true; do sleep 1; done"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "docker-cluster.json"


@pytest.fixture
def plugin(engine: Any) -> Iterator[DockerInstancePlugin]:
    p = DockerInstancePlugin(stop_timeout=1)
    yield p
    p.close()


def props(token: str, **extra: Any) -> dict[str, Any]:
    """Instance properties for the test image, labelled for cleanup."""
    return {"Image": TEST_IMAGE, "Labels": {TEST_LABEL: token}, **extra}


def group_tags(group: str, **extra: str) -> dict[str, str]:
    return {TAG_GROUP: group, **extra}


def exec_out(engine: Any, container_id: str, *argv: str) -> str:
    code, output = engine.containers.get(container_id).exec_run(list(argv), user="0")
    return output.decode() if code == 0 else ""


def running_ids(engine: Any, **labels: str) -> set[str]:
    filters = {"label": [f"{k}={v}" for k, v in labels.items()], "status": "running"}
    return {c.id for c in engine.containers.list(ignore_removed=True, filters=filters)}


def create_only(engine: Any, token: str, group: str) -> str:
    """What a provision killed between `create` and `start` leaves: a container carrying the
    group's labels that never ran."""
    container = engine.containers.create(
        TEST_IMAGE,
        ["sh", "-c", LOOP],
        labels={TAG_GROUP: group, TEST_LABEL: token},
        network_mode="none",
    )
    return str(container.id)


def group_containers(engine: Any, group: str) -> list[Any]:
    return engine.containers.list(
        ignore_removed=True, all=True, filters={"label": f"{TAG_GROUP}={group}"}
    )


# -- provision, describe, destroy ----------------------------------------------------------


def test_provision_describe_destroy_with_tags_as_labels(
    engine: Any, token: str, plugin: DockerInstancePlugin
) -> None:
    group = f"g-{token}"
    a = plugin.provision(Spec(properties=props(token), tags=group_tags(group, role="a"), init=LOOP))
    b = plugin.provision(Spec(properties=props(token), tags=group_tags(group, role="b"), init=LOOP))
    assert len(a) == 64 and a == engine.containers.get(a).id  # the full ID
    info = engine.api.inspect_container(a)
    assert info["Config"]["Labels"] == {TAG_GROUP: group, "role": "a", TEST_LABEL: token}
    assert info["HostConfig"]["NetworkMode"] == "none"

    assert {d.id for d in plugin.describe_instances({TAG_GROUP: group})} == {a, b}
    (only_a,) = plugin.describe_instances({TAG_GROUP: group, "role": "a"})
    assert only_a.id == a
    assert only_a.tags == {TAG_GROUP: group, "role": "a", TEST_LABEL: token}
    assert only_a.properties["Image"] == TEST_IMAGE
    assert plugin.describe_instances({TAG_GROUP: group, "role": "c"}) == []
    assert plugin.describe_instances({TAG_GROUP: "other-" + token, "role": "a"}) == []

    plugin.destroy(a)
    assert [d.id for d in plugin.describe_instances({TAG_GROUP: group})] == [b]
    assert engine.containers.list(ignore_removed=True, all=True, filters={"id": a}) == []
    plugin.destroy(a)  # already gone: not an error
    plugin.destroy("0" * 64)  # never existed: not an error
    plugin.destroy(b)
    assert plugin.describe_instances({TAG_GROUP: group}) == []


def test_init_runs_as_the_command(engine: Any, token: str, plugin: DockerInstancePlugin) -> None:
    init = 'echo "hello $INFRAKIT_LOGICAL_ID" > /tmp/out\n' + LOOP
    cid = plugin.provision(
        Spec(
            properties=props(token),
            tags=group_tags(f"g-{token}", **{TAG_LOGICAL_ID: "g-0"}),
            init=init,
        )
    )
    wait_for(lambda: exec_out(engine, cid, "cat", "/tmp/out") == "hello g-0\n", 20, "Init output")
    assert engine.api.inspect_container(cid)["Config"]["Cmd"] == ["/bin/sh", "-c", init]


def test_cmd_runs_and_init_is_in_the_environment(
    engine: Any, token: str, plugin: DockerInstancePlugin
) -> None:
    cmd = ["/bin/sh", "-c", 'echo "$INFRAKIT_INIT" > /tmp/init; exec sleep 600']
    cid = plugin.provision(
        Spec(properties=props(token, Cmd=cmd), tags=group_tags(f"g-{token}"), init="echo hi")
    )
    wait_for(lambda: exec_out(engine, cid, "cat", "/tmp/init") == "echo hi\n", 20, "the Init")
    assert engine.api.inspect_container(cid)["Config"]["Cmd"] == cmd


def test_properties_reach_the_container(
    engine: Any, token: str, plugin: DockerInstancePlugin, tmp_path: Path
) -> None:
    (tmp_path / "hello").write_text("from the host\n")
    properties = props(
        token,
        cmd="sh -c 'id -u > /scratch/uid; pwd > /scratch/pwd; exec sleep 600'",
        env=["A=1", "B=two words"],
        hostname="node-1",
        memory="64m",
        cpus=0.5,
        user="1234",
        workingdir="/tmp",
        mounts=[
            {"Source": str(tmp_path), "Target": "/host", "ReadOnly": True},
            {"Target": "/scratch", "Type": "tmpfs"},
        ],
    )
    plugin.validate(properties)
    cid = plugin.provision(Spec(properties=properties, tags=group_tags(f"g-{token}")))
    info = engine.api.inspect_container(cid)
    assert "A=1" in info["Config"]["Env"] and "B=two words" in info["Config"]["Env"]
    assert info["Config"]["Hostname"] == "node-1"
    assert info["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert info["HostConfig"]["NanoCpus"] == 500_000_000
    assert info["HostConfig"]["Privileged"] is False
    wait_for(lambda: exec_out(engine, cid, "cat", "/scratch/uid") == "1234\n", 20, "the user")
    assert exec_out(engine, cid, "cat", "/scratch/pwd") == "/tmp\n"
    assert exec_out(engine, cid, "cat", "/host/hello") == "from the host\n"
    code, _ = engine.containers.get(cid).exec_run(["touch", "/host/nope"], user="0")
    assert code != 0  # read-only bind mount
    assert "/scratch" in exec_out(engine, cid, "cat", "/proc/mounts")


# -- loss ----------------------------------------------------------------------------------


def test_a_killed_container_is_gone_and_the_watch_fires(
    engine: Any, token: str, plugin: DockerInstancePlugin
) -> None:
    group = f"g-{token}"
    cid = plugin.provision(Spec(properties=props(token), tags=group_tags(group), init=LOOP))
    fired = threading.Event()

    def broken() -> None:
        raise RuntimeError("a failing callback is logged and ignored")

    unwatch_broken = plugin.watch(broken)
    unwatch = plugin.watch(fired.set)
    engine.containers.get(cid).kill()
    assert fired.wait(20), "the watch callback did not fire"
    assert plugin.describe_instances({TAG_GROUP: group}) == []

    unwatch_broken()
    unwatch()
    wait_for(lambda: not plugin._watcher.running, 10, "the event thread to stop")


def test_an_event_counts_once_the_container_has_stopped(
    engine: Any, token: str, plugin: DockerInstancePlugin
) -> None:
    cid = plugin.provision(Spec(properties=props(token), tags=group_tags(f"g-{token}"), init=LOOP))
    engine.containers.get(cid).kill(signal="SIGHUP")  # PID 1 ignores it: still running
    assert not plugin._lost({"Type": "container", "Action": "kill", "id": cid})
    engine.containers.get(cid).kill()
    assert plugin._lost({"Type": "container", "Action": "die", "id": cid})
    assert plugin._lost({"Type": "container", "Action": "destroy", "id": cid})
    assert plugin._lost({"Type": "container", "Action": "die", "id": "0" * 64})


def test_stopped_and_never_started_containers_are_gone(
    engine: Any, token: str, plugin: DockerInstancePlugin
) -> None:
    group = f"g-{token}"
    cid = plugin.provision(Spec(properties=props(token), tags=group_tags(group), init=LOOP))
    assert [d.id for d in plugin.describe_instances({TAG_GROUP: group})] == [cid]
    engine.containers.get(cid).stop(timeout=0)
    assert plugin.describe_instances({TAG_GROUP: group}) == []
    engine.containers.create(
        TEST_IMAGE,
        ["sleep", "600"],
        labels={TAG_GROUP: group, TEST_LABEL: token},
        network_mode="none",
    )
    assert plugin.describe_instances({TAG_GROUP: group}) == []


@pytest.mark.parametrize("state", ["exited", "created"])
def test_dead_group_containers_are_removed_after_their_retention(
    engine: Any, token: str, state: str
) -> None:
    """Exited ones after `gone_retention` (0 here); one a crash left created, never started,
    after `created_retention` (0.2 s here), though `gone_retention` is its default 10 min."""
    group = f"g-{token}"
    plugin = DockerInstancePlugin(
        gone_retention=0.0 if state == "exited" else 600.0, created_retention=0.2
    )
    try:
        if state == "exited":
            cid = plugin.provision(Spec(properties=props(token), tags=group_tags(group), init=LOOP))
            engine.containers.get(cid).kill()
        else:
            cid = create_only(engine, token, group)

        def removed() -> bool:
            assert plugin.describe_instances({TAG_GROUP: group}) == []  # first sight, then removal
            return engine.containers.list(ignore_removed=True, all=True, filters={"id": cid}) == []

        wait_for(removed, 30, f"the {state} container to be removed")
    finally:
        plugin.close()


def test_the_watch_follows_a_restarted_subscription(
    engine: Any, token: str, plugin: DockerInstancePlugin
) -> None:
    group = f"g-{token}"
    plugin.watch(lambda: None)()  # start and stop the thread once
    fired = threading.Event()
    plugin.watch(fired.set)
    cid = plugin.provision(Spec(properties=props(token), tags=group_tags(group), init=LOOP))
    plugin.destroy(cid)
    assert fired.wait(20), "no event after re-subscribing"
    plugin.close()
    assert not plugin._watcher.running


def test_label_is_a_no_op_when_present_and_an_honest_error_otherwise(
    engine: Any, token: str, plugin: DockerInstancePlugin
) -> None:
    cid = plugin.provision(
        Spec(properties=props(token), tags=group_tags(f"g-{token}", role="a"), init=LOOP)
    )
    plugin.label(cid, {"role": "a"})
    with pytest.raises(PluginError, match="Docker cannot change the labels"):
        plugin.label(cid, {"role": "b"})
    with pytest.raises(PluginError, match="no such instance"):
        plugin.label("0" * 64, {"role": "a"})


# -- interrupted, and nothing left ---------------------------------------------------------


def test_a_dind_node_whose_provision_was_killed_after_its_start_is_described(
    engine: Any, token: str, tmp_path: Path
) -> None:
    group = f"d-{token}"
    code = (
        "import json, sys\n"
        "from infrakit.plugins.instance.dind import DindInstancePlugin\n"
        "from infrakit.spi import Spec\n"
        "spec = Spec.from_json(json.loads(sys.argv[1]))\n"
        "DindInstancePlugin(privileged=False).provision(spec)\n"
    )
    spec = Spec(
        properties=props(token, Cmd=["sh", "-c", "exec sleep 600"]),
        tags=group_tags(group),
        init="touch /tmp/first-line-ran\nsleep 600",  # the second line outlives the provision
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    provisioner = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(spec.to_json())], env=env
    )
    try:

        def first_line_ran() -> str | None:
            # Only a running container can be asked (one just created is not started yet).
            for container_id in running_ids(engine, **{TAG_GROUP: group}):
                if exec_out(engine, container_id, "ls", "/tmp/first-line-ran"):
                    return str(container_id)
            return None

        cid = wait_for(first_line_ran, 60, "the first Init line")
        provisioner.kill()  # kill -9 in the middle of the Init
        provisioner.wait(10)
    finally:
        if provisioner.poll() is None:
            provisioner.kill()
    plugin = DockerInstancePlugin(stop_timeout=1)
    try:
        assert [d.id for d in plugin.describe_instances({TAG_GROUP: group})] == [cid]
        plugin.destroy(cid)
        assert plugin.sweep({TAG_GROUP: group}) == []
        assert group_containers(engine, group) == []
    finally:
        plugin.close()


def test_sweep_removes_every_dead_container_of_the_group_and_nothing_else(
    engine: Any, token: str, plugin: DockerInstancePlugin
) -> None:
    group, other = f"g-{token}", f"o-{token}"
    live = plugin.provision(Spec(properties=props(token), tags=group_tags(group), init=LOOP))
    exited = plugin.provision(Spec(properties=props(token), tags=group_tags(group), init=LOOP))
    engine.containers.get(exited).kill()
    created = create_only(engine, token, group)
    elsewhere = create_only(engine, token, other)

    assert sorted(plugin.sweep({TAG_GROUP: group})) == sorted([exited, created])

    assert {c.id for c in group_containers(engine, group)} == {live}
    assert {c.id for c in group_containers(engine, other)} == {elsewhere}
    assert plugin.sweep({TAG_GROUP: group}) == []  # idempotent
    plugin.destroy(live)
    plugin.sweep({TAG_GROUP: group})
    assert group_containers(engine, group) == []


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("properties", "path"),
    [
        (None, "Image"),
        ({}, "Image"),
        ({"Image": ""}, "Image"),
        ({"Image": "x", "Bogus": 1}, "Bogus"),
        ({"Image": "x", "Cmd": []}, "Cmd"),
        ({"Image": "x", "Cmd": ["sh", 1]}, "Cmd[1]"),
        ({"Image": "x", "Cmd": "sh -c 'unbalanced"}, "Cmd"),
        ({"Image": "x", "Entrypoint": 3}, "Entrypoint"),
        ({"Image": "x", "Env": ["NOEQUALS"]}, "Env[0]"),
        ({"Image": "x", "Env": {"A": 1}}, "Env.A"),
        ({"Image": "x", "Labels": {"k": 2}}, "Labels.k"),
        (
            {"Image": "x", "Labels": {"infrakit.docker.logical_id": "x"}},
            "Labels.infrakit.docker.logical_id",
        ),
        ({"Image": "x", "NetworkMode": ""}, "NetworkMode"),
        ({"Image": "x", "Mounts": {}}, "Mounts"),
        ({"Image": "x", "Mounts": [{"Source": "/a"}]}, "Mounts[0].Target"),
        ({"Image": "x", "Mounts": [{"Target": "/a", "Type": "nfs"}]}, "Mounts[0].Type"),
        ({"Image": "x", "Mounts": [{"Target": "/a", "Type": "bind"}]}, "Mounts[0].Source"),
        (
            {"Image": "x", "Mounts": [{"Target": "/a", "Source": "v", "Type": "tmpfs"}]},
            "Mounts[0].Source",
        ),
        ({"Image": "x", "Mounts": [{"Target": "rel"}]}, "Mounts[0].Target"),
        ({"Image": "x", "Mounts": [{"Target": "/a", "Oops": 1}]}, "Mounts[0].Oops"),
        ({"Image": "x", "Mounts": [{"Target": "/a", "ReadOnly": "yes"}]}, "Mounts[0].ReadOnly"),
        ({"Image": "x", "Privileged": "true"}, "Privileged"),
        ({"Image": "x", "Memory": "lots"}, "Memory"),
        ({"Image": "x", "Memory": 1024}, "Memory"),
        ({"Image": "x", "Memory": True}, "Memory"),
        ({"Image": "x", "CPUs": 0}, "CPUs"),
        ({"Image": "x", "CPUs": "2"}, "CPUs"),
        ({"Image": "x", "WorkingDir": "relative"}, "WorkingDir"),
        ({"Image": "x", "User": 0}, "User"),
        ({"Image": "x", "Hostname": None, "hostname": "a"}, "Hostname"),
    ],
)
def test_validation_errors_name_the_path(properties: Any, path: str) -> None:
    plugin = DockerInstancePlugin()  # shape errors are found before the engine is asked
    with pytest.raises(ValidationError) as caught:
        plugin.validate(properties)
    assert caught.value.path == path
    plugin.close()


def test_keys_are_case_insensitive_and_sizes_parse() -> None:
    options = parse_options(
        {"image": "x", "CMD": "sh -c 'echo a b'", "networkmode": "host", "MEMORY": "1.5g"}
    )
    assert options.cmd == ["sh", "-c", "echo a b"]
    assert options.network_mode == "host"
    assert options.memory == 1536 * 1024 * 1024
    assert parse_options({"Image": "x"}).network_mode == "none"
    assert parse_memory("256m") == parse_memory("256MiB") == parse_memory("256 MB") == 256 << 20
    assert parse_memory(1 << 30) == 1 << 30


def test_a_missing_image_is_a_clear_error(
    engine: Any, token: str, plugin: DockerInstancePlugin
) -> None:
    missing = f"infrakit-test/no-such-image-{token}:latest"
    with pytest.raises(ValidationError) as caught:
        plugin.validate({"Image": missing})
    assert caught.value.path == "Image"
    assert f"image '{missing}' is not on this Docker engine" in str(caught.value)
    assert "build" in str(caught.value)
    with pytest.raises(PluginError, match=f"image '{missing}' is not on this Docker engine"):
        plugin.provision(Spec(properties=props(token, Image=missing), tags=group_tags("g")))
    assert engine.images.list(name=missing) == []  # never pulled


def test_too_many_cpus_is_refused(engine: Any, plugin: DockerInstancePlugin) -> None:
    with pytest.raises(ValidationError) as caught:
        plugin.validate({"Image": TEST_IMAGE, "CPUs": 100000})
    assert caught.value.path == "CPUs"


def test_an_unreachable_engine_is_a_plugin_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    plugin = DockerInstancePlugin()  # made lazily: building it does not need the engine
    with pytest.raises(PluginError, match="cannot reach the Docker engine"):
        plugin.validate({"Image": TEST_IMAGE})
    with pytest.raises(PluginError, match="cannot reach the Docker engine"):
        plugin.describe_instances({TAG_GROUP: "g"})
    with pytest.raises(PluginError, match="cannot reach the Docker engine"):
        plugin.provision(Spec(properties={"Image": TEST_IMAGE}, tags=group_tags("g")))
    unwatch = plugin.watch(lambda: None)  # keeps retrying in the background; no crash
    unwatch()
    plugin.close()

    import docker

    client = docker.DockerClient(base_url=f"unix://{tmp_path}/no-engine.sock", version="1.41")
    plugin = DockerInstancePlugin(client)
    with pytest.raises(PluginError, match="cannot reach the Docker engine"):
        plugin.describe_instances({})
    with pytest.raises(PluginError, match="cannot reach the Docker engine"):
        plugin.destroy("0" * 64)
    plugin.close()
    client.close()  # a client given to the plugin is the caller's to close


# -- docker-in-docker ----------------------------------------------------------------------


def privileged_containers_run(engine: Any, token: str) -> bool:
    """Whether this engine can start a privileged container (not when it runs, itself, in a
    container lacking some capability: runc then fails with "unable to apply caps")."""
    import docker

    probe = engine.containers.create(
        TEST_IMAGE, ["true"], privileged=True, network_mode="none", labels={TEST_LABEL: token}
    )
    try:
        probe.start()
    except docker.errors.APIError:
        return False
    finally:
        probe.remove(force=True)
    return True


@pytest.mark.parametrize("privileged", [True, False])
def test_dind_runs_privileged_and_execs_each_init_line(
    engine: Any, token: str, privileged: bool
) -> None:
    if privileged and not privileged_containers_run(engine, token):
        # Not something scripts/services.sh can provide: the engine's own sandbox forbids it.
        pytest.skip(
            "this Docker engine cannot run privileged containers (runc: unable to apply caps)"
        )
    plugin = DindInstancePlugin(stop_timeout=1, privileged=privileged)
    try:
        properties = props(token, Cmd=["sh", "-c", "exec sleep 600"])
        plugin.validate(properties)
        init = 'echo one > /tmp/lines\n\necho two >> /tmp/lines\ntest -n "$HOSTNAME"'
        cid = plugin.provision(
            Spec(properties=properties, tags=group_tags(f"d-{token}"), init=init)
        )
        info = engine.api.inspect_container(cid)
        assert info["HostConfig"]["Privileged"] is privileged
        assert info["HostConfig"]["NetworkMode"] == "none"
        assert info["Config"]["Cmd"] == ["sh", "-c", "exec sleep 600"]
        # Init lines ran before provision returned, in order.
        assert exec_out(engine, cid, "cat", "/tmp/lines") == "one\ntwo\n"
        assert [d.id for d in plugin.describe_instances({TAG_GROUP: f"d-{token}"})] == [cid]
        engine.containers.get(cid).kill()
        wait_for(lambda: plugin.describe_instances({TAG_GROUP: f"d-{token}"}) == [], 20, "gone")
    finally:
        plugin.close()


def test_dind_a_failing_init_line_fails_the_provision_and_leaves_nothing(
    engine: Any, token: str
) -> None:
    plugin = DindInstancePlugin(stop_timeout=1, privileged=False)
    try:
        properties = props(token, Cmd=["sh", "-c", "exec sleep 600"])
        with pytest.raises(PluginError, match=r"Init line 2 \('echo oops; exit 3'\) exited with 3"):
            plugin.provision(
                Spec(
                    properties=properties,
                    tags=group_tags(f"d-{token}"),
                    init="true\necho oops; exit 3",
                )
            )
        assert (
            engine.containers.list(
                ignore_removed=True, all=True, filters={"label": f"{TEST_LABEL}={token}"}
            )
            == []
        )
    finally:
        plugin.close()


def test_dind_properties(engine: Any) -> None:
    plugin = DindInstancePlugin()
    try:
        with pytest.raises(ValidationError) as caught:
            plugin.validate({"Privileged": False})
        assert caught.value.path == "Privileged"
        with pytest.raises(ValidationError, match="'docker:dind' is not on this Docker engine"):
            plugin.validate({})  # the default image, not available here (never pulled)
    finally:
        plugin.close()


# -- the runtime, end to end ---------------------------------------------------------------


def docker_group(group: str, token: str, size: int = 3) -> dict[str, Any]:
    return {
        "ID": group,
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {
                "Plugin": "instance-docker",
                "Properties": props(token, NetworkMode="none"),
            },
            "Flavor": {"Plugin": "flavor-vanilla", "Properties": {"Init": [LOOP]}},
            "Health": {"Interval": "1s", "GracePeriod": "5s"},
        },
    }


def test_a_group_of_containers_converges_and_heals(engine: Any, token: str, home: Path) -> None:
    group = f"workers-{token}"
    plugin = DockerInstancePlugin(stop_timeout=1)
    with Runtime(home=home, plugins={"instance-docker": plugin}) as runtime:
        assert runtime.commit(docker_group(group, token)) == "Managing 3 instances"

        def three_running() -> set[str] | None:
            ids = running_ids(engine, **{TAG_GROUP: group})
            return ids if len(ids) == 3 else None

        before = wait_for(three_running, 60, "3 running containers")
        runtime.wait_converged(group)
        victim = sorted(before)[1]
        engine.containers.get(victim).kill()

        def replaced() -> set[str] | None:
            ids = running_ids(engine, **{TAG_GROUP: group})
            return ids if len(ids) == 3 and victim not in ids else None

        after = wait_for(replaced, 60, "the killed container to be replaced")
        assert len(after - before) == 1
        runtime.wait_converged(group)
        # No duplicates: one running container per logical ID, named after it; the killed
        # one made way for its replacement's name.
        running = engine.containers.list(
            ignore_removed=True, filters={"label": f"{TAG_GROUP}={group}"}
        )
        slots = sorted(c.labels[TAG_LOGICAL_ID] for c in running)
        assert slots == [f"{group}-0", f"{group}-1", f"{group}-2"]
        assert sorted(c.name for c in running) == slots
        assert engine.containers.list(ignore_removed=True, all=True, filters={"id": victim}) == []
        runtime.destroy(group)
        assert running_ids(engine, **{TAG_GROUP: group}) == set()


def test_the_example_cluster_file_runs(engine: Any, token: str, home: Path) -> None:
    cluster = json.loads(EXAMPLE.read_text())
    assert cluster["Plugins"] == [{"Name": "instance-docker", "Kind": "docker"}]
    del cluster["Plugins"]  # the kind is registered by the runtime; here the plugin is given
    (group,) = cluster["Groups"]
    group["ID"] = f"example-{token}"
    group["Properties"]["Instance"]["Properties"]["Labels"][TEST_LABEL] = token
    plugin = DockerInstancePlugin(stop_timeout=1)
    with Runtime(cluster, home=home, plugins={"instance-docker": plugin}) as runtime:
        wait_for(
            lambda: len(running_ids(engine, **{TAG_GROUP: group["ID"], "role": "worker"})) == 3,
            60,
            "the example's 3 containers",
        )
        expected = {f"container {group['ID']}-{i} started\n" for i in range(3)}

        def logs() -> set[str]:
            listed = engine.containers.list(
                ignore_removed=True, filters={"label": f"{TEST_LABEL}={token}"}
            )
            return {c.logs().decode() for c in listed}

        wait_for(lambda: logs() == expected, 20, "each container's Init output")
        runtime.destroy(group["ID"])


def test_two_clusters_on_one_engine_never_touch_each_others_containers(
    engine: Any, token: str, tmp_path: Path
) -> None:
    """The example cluster file run from two homes against one engine: each keeps its own
    containers; neither adopts nor destroys the other's."""
    cluster = json.loads(EXAMPLE.read_text())
    del cluster["Plugins"]
    (group,) = cluster["Groups"]
    group["ID"] = f"example-{token}"
    group["Properties"]["Instance"]["Properties"]["Labels"][TEST_LABEL] = token
    seen: list[Any] = []
    one = Runtime(
        cluster, home=tmp_path / "one", plugins={"instance-docker": DockerInstancePlugin()}
    )
    two = Runtime(
        cluster, home=tmp_path / "two", plugins={"instance-docker": DockerInstancePlugin()}
    )
    one.events.subscribe(seen.append)
    two.events.subscribe(seen.append)
    with one, two:
        mine = {i["ID"] for i in one.wait_converged(group["ID"], 120)["Instances"]}
        theirs = {i["ID"] for i in two.wait_converged(group["ID"], 120)["Instances"]}
        assert len(mine) == len(theirs) == 3 and not mine & theirs
        assert running_ids(engine, **{TAG_GROUP: group["ID"]}) == mine | theirs
        assert [e for e in seen if e.kind in ("duplicate", "destroyed")] == []
        # Each reports the other's once, at its first look after they appeared.
        wait_for(lambda: len([e for e in seen if e.kind == "foreign"]) == 2, what="2 reports")
        one.destroy(group["ID"])
        assert running_ids(engine, **{TAG_GROUP: group["ID"]}) == theirs
        two.destroy(group["ID"])


def test_a_cluster_file_group_with_a_missing_image_is_refused_at_start(
    engine: Any, token: str, tmp_path: Path
) -> None:
    cluster = json.loads(EXAMPLE.read_text())
    (group,) = cluster["Groups"]
    group["Properties"]["Instance"]["Properties"]["Image"] = f"infrakit-test/missing-{token}"
    runtime = Runtime(cluster, home=tmp_path / "home")
    with pytest.raises(SpecError) as refused:
        runtime.start()
    ((path, fault),) = refused.value.problems
    assert path == "Groups[0].Properties.Instance.Properties.Image"
    assert "is not on this Docker engine" in fault
    assert not runtime.running and not (tmp_path / "home" / "configs").exists()
