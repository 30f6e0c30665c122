"""The vagrant instance plugin with real Vagrant and its docker provider: real machines (containers
of the local test image, network none, never pulled, no SSH), Init run from the synced folder,
tags in the instance directory, a failed `vagrant up` cleaned up, validation with paths, two
concurrent provisions, and a Size 2 group healed by the runtime after a `docker kill`. Every
machine is destroyed with Vagrant after its test, and every container carrying the test's label
is removed too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import TEST_IMAGE, TEST_LABEL, require, wait_for

from infrakit import Runtime
from infrakit.plugins.instance.vagrant import (
    BOOT_STATUS,
    INSTANCE_LABEL,
    TAGS,
    VagrantInstancePlugin,
    parse_options,
    render_vagrantfile,
)
from infrakit.spi import PluginError, Spec
from infrakit.spi.errors import ValidationError
from infrakit.spi.instance import TAG_GROUP, TAG_LOGICAL_ID

WEIRD = 'it\'s #{1 + 1} \\ "quoted" $HOME\n'  # Ruby interpolation and quotes must not bite


@pytest.fixture
def engine(engine: Any) -> Any:
    """The Docker engine (conftest's), once Vagrant is known to be here too."""
    require("vagrant", shutil.which("vagrant") is not None)
    return engine


def destroy_all(plugin: VagrantInstancePlugin) -> None:
    """`vagrant destroy` every machine left under the plugin's state directory."""
    for idir in plugin.state_dir.iterdir():
        if idir.is_dir() and not idir.name.startswith("."):
            try:
                plugin.destroy(idir.name)
            except PluginError as exc:  # the token fixture removes the container anyway
                print(f"teardown: {exc}")


@pytest.fixture
def plugin(tmp_path: Path, token: str) -> Iterator[VagrantInstancePlugin]:
    p = VagrantInstancePlugin(tmp_path / "vagrant")
    yield p
    destroy_all(p)


def props(token: str, **docker: Any) -> dict[str, Any]:
    """Docker-provider properties for the test image, labelled for cleanup."""
    return {
        "Provider": "docker",
        "Docker": {
            "Image": TEST_IMAGE,
            "NetworkMode": "none",
            "CreateArgs": ["--label", f"{TEST_LABEL}={token}"],
            **docker,
        },
    }


def container_of(engine: Any, instance_id: str) -> Any:
    """The machine's container (found by the label the plugin puts on it)."""
    found = engine.containers.list(
        ignore_removed=True, all=True, filters={"label": f"{INSTANCE_LABEL}={instance_id}"}
    )
    assert len(found) == 1, found
    return found[0]


def read_when_there(path: Path, what: str) -> str:
    """The file's content once it has some (the machine writes it through the synced folder)."""

    def read() -> str:
        return path.read_text() if path.exists() else ""

    return wait_for(read, timeout=10, what=what)


# -- provision, describe, label, destroy ---------------------------------------------------


def test_provision_runs_init_and_describe_shows_tags(
    engine: Any, token: str, plugin: VagrantInstancePlugin
) -> None:
    init = "\n".join(
        [
            'echo "hello from $INFRAKIT_INSTANCE_ID as $INFRAKIT_LOGICAL_ID" > /vagrant/hello',
            'printf %s "$WEIRD" > /vagrant/weird',
            "echo booted",
        ]
    )
    spec = Spec(
        properties=props(token, Env={"WEIRD": WEIRD}, Name="vgtest"),
        tags={TAG_GROUP: "web", "tier": "front"},
        init=init,
        logical_id="web-1",
    )
    instance_id = plugin.provision(spec)
    idir = plugin.state_dir / instance_id
    assert {p.name for p in idir.iterdir()} >= {"Vagrantfile", "boot.sh", TAGS, ".vagrant"}
    assert (idir / "boot.sh").read_text() == init
    assert json.loads((idir / TAGS).read_text()) == {TAG_GROUP: "web", "tier": "front"}

    (found,) = plugin.describe_instances({TAG_GROUP: "web"})
    assert (found.id, found.logical_id) == (instance_id, "web-1")
    assert found.tags == {TAG_GROUP: "web", "tier": "front"}
    assert plugin.describe_instances({TAG_GROUP: "web", "tier": "back"}) == []

    container = container_of(engine, instance_id)
    assert container.status == "running"
    assert container.name == f"vgtest-{instance_id}"
    assert container.attrs["HostConfig"]["NetworkMode"] == "none"
    # The Init ran in the machine, from the synced folder, and the machine stays up after it.
    hello = read_when_there(idir / "hello", "the Init's file in the synced folder")
    assert hello == f"hello from {instance_id} as web-1\n"
    assert read_when_there(idir / "weird", "the odd variable") == WEIRD
    assert read_when_there(idir / BOOT_STATUS, "boot.sh to finish").strip() == "0"
    assert "booted" in container.logs().decode()
    container.reload()
    assert container.status == "running"

    plugin.label(instance_id, {"tier": "back", "extra": "1"})
    (found,) = plugin.describe_instances({"tier": "back"})
    assert found.tags == {TAG_GROUP: "web", "tier": "back", "extra": "1"}

    plugin.destroy(instance_id)
    assert not idir.exists()
    assert [p for p in plugin.state_dir.iterdir() if not p.name.startswith(".")] == []
    assert (
        engine.containers.list(
            ignore_removed=True, all=True, filters={"label": f"{TEST_LABEL}={token}"}
        )
        == []
    )
    assert plugin.describe_instances({}) == []
    plugin.destroy(instance_id)  # gone already: not an error
    plugin.destroy("vagrant-000000000000")
    with pytest.raises(PluginError, match="no such instance"):
        plugin.label(instance_id, {"a": "b"})


def test_a_stopped_machine_is_not_described(
    engine: Any, token: str, plugin: VagrantInstancePlugin
) -> None:
    instance_id = plugin.provision(Spec(properties=props(token), tags={"t": "1"}, init="true"))
    assert [d.id for d in plugin.describe_instances({"t": "1"})] == [instance_id]
    container_of(engine, instance_id).kill()
    wait_for(lambda: plugin.describe_instances({}) == [], timeout=10, what="the killed machine")
    plugin.destroy(instance_id)
    assert (
        engine.containers.list(
            ignore_removed=True, all=True, filters={"label": f"{TEST_LABEL}={token}"}
        )
        == []
    )


def test_a_failed_up_reports_vagrants_output_and_leaves_nothing(
    engine: Any, token: str, plugin: VagrantInstancePlugin
) -> None:
    spec = Spec(properties=props(token, Cmd=["/no/such/program"]), tags={"t": "1"})
    with pytest.raises(PluginError) as failure:
        plugin.provision(spec)
    message = str(failure.value)
    assert "vagrant up of vagrant-" in message and "/no/such/program" in message
    # Docker made the container before failing to start it, and Vagrant never recorded it.
    assert list(plugin.state_dir.iterdir()) == []
    assert (
        engine.containers.list(
            ignore_removed=True, all=True, filters={"label": f"{TEST_LABEL}={token}"}
        )
        == []
    )


def test_two_concurrent_provisions_both_succeed(
    engine: Any, token: str, plugin: VagrantInstancePlugin
) -> None:
    results: dict[int, str | BaseException] = {}

    def provision(n: int) -> None:
        spec = Spec(
            properties=props(token),
            tags={TAG_GROUP: "pair", TAG_LOGICAL_ID: f"pair-{n}"},
            init=f"echo {n} > /vagrant/n",
        )
        try:
            results[n] = plugin.provision(spec)
        except BaseException as exc:
            results[n] = exc

    threads = [threading.Thread(target=provision, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(isinstance(r, str) for r in results.values()), results
    ids = {str(r) for r in results.values()}
    assert len(ids) == 2
    assert {d.id for d in plugin.describe_instances({TAG_GROUP: "pair"})} == ids
    for n, instance_id in results.items():
        path = plugin.state_dir / str(instance_id) / "n"
        assert read_when_there(path, f"machine {n}'s Init").strip() == str(n)

    threads = [threading.Thread(target=plugin.destroy, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert plugin.describe_instances({}) == []
    assert (
        engine.containers.list(
            ignore_removed=True, all=True, filters={"label": f"{TEST_LABEL}={token}"}
        )
        == []
    )


# -- interrupted, and nothing left ---------------------------------------------------------


def index_entries(state_dir: Path) -> list[str]:
    """The machines of `state_dir` that `vagrant global-status` (Vagrant's machine index) lists."""
    out = subprocess.run(
        ["vagrant", "global-status", "--machine-readable"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1"},
    ).stdout
    homes = [line.split(",", 3)[3] for line in out.splitlines() if ",machine-home," in line]
    return [home for home in homes if Path(home).parent == state_dir]


def test_a_machine_whose_provision_was_killed_mid_up_is_described(
    engine: Any, token: str, plugin: VagrantInstancePlugin
) -> None:
    code = (
        "import json, sys\n"
        "from infrakit.plugins.instance.vagrant import VagrantInstancePlugin\n"
        "from infrakit.spi import Spec\n"
        "spec = Spec.from_json(json.loads(sys.argv[2]))\n"
        "VagrantInstancePlugin(sys.argv[1]).provision(spec)\n"
    )
    spec = Spec(properties=props(token), tags={TAG_GROUP: f"g-{token}"}, init="true")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    provisioner = subprocess.Popen(
        [sys.executable, "-c", code, str(plugin.state_dir), json.dumps(spec.to_json())], env=env
    )
    try:
        # `vagrant up` has begun once it writes to the instance's log.
        log = wait_for(
            lambda: next(plugin.state_dir.glob("vagrant-*/vagrant.log"), None), 60, "vagrant up"
        )
        provisioner.kill()  # kill -9 of the provisioner alone: `vagrant up` carries on
        provisioner.wait(10)
    finally:
        if provisioner.poll() is None:
            provisioner.kill()
    instance_id = log.parent.name

    (found,) = plugin.describe_instances({TAG_GROUP: f"g-{token}"})
    assert found.id == instance_id
    plugin.destroy(instance_id)  # stops the orphaned `vagrant up` first
    assert_nothing_left(engine, plugin, f"g-{token}", token)


def assert_nothing_left(engine: Any, plugin: VagrantInstancePlugin, group: str, token: str) -> None:
    """Nothing of the group is left: nothing to sweep, no directory, no container (of this
    test), no entry in Vagrant's machine index."""
    assert plugin.sweep({TAG_GROUP: group}) == []
    assert list(plugin.state_dir.iterdir()) == []
    labelled = {"label": f"{TEST_LABEL}={token}"}
    assert engine.containers.list(ignore_removed=True, all=True, filters=labelled) == []
    assert index_entries(plugin.state_dir) == []


def test_sweep_destroys_the_groups_dead_machines_and_leaves_nothing(
    engine: Any, token: str, plugin: VagrantInstancePlugin
) -> None:
    group = f"g-{token}"
    spec = Spec(properties=props(token), tags={TAG_GROUP: group}, init="true")
    live, dead, unknown = (plugin.provision(spec) for _ in range(3))
    container_of(engine, dead).kill()
    container_of(engine, unknown).kill()
    # A machine Vagrant cannot destroy (its Vagrantfile is lost): its container is removed by
    # label, and Vagrant's machine index entry pruned.
    (plugin.state_dir / unknown / "Vagrantfile").unlink()
    wait_for(
        lambda: {d.id for d in plugin.describe_instances({TAG_GROUP: group})} == {live},
        timeout=30,
        what="the killed machines to be seen dead",
    )

    assert plugin.sweep({TAG_GROUP: group}) == sorted([dead, unknown])

    assert {p.name for p in plugin.state_dir.iterdir()} == {live}
    assert index_entries(plugin.state_dir) == [str(plugin.state_dir / live)]
    assert container_of(engine, live).status == "running"
    plugin.destroy(live)
    assert_nothing_left(engine, plugin, group, token)


# -- validation and rendering (no Vagrant run) ---------------------------------------------


@pytest.mark.parametrize(
    ("properties", "path"),
    [
        (None, "Docker.Image"),
        ({}, "Docker.Image"),
        ({"Docker": {}}, "Docker.Image"),
        ({"Docker": {"Image": ""}}, "Docker.Image"),
        ({"Docker": {"Image": "x", "Cmd": []}}, "Docker.Cmd"),
        ({"Docker": {"Image": "x", "Cmd": ["a", 1]}}, "Docker.Cmd[1]"),
        ({"Docker": {"Image": "x", "Name": "no spaces"}}, "Docker.Name"),
        ({"Docker": {"Image": "x", "Env": {"A": 1}}}, "Docker.Env.A"),
        ({"Docker": {"Image": "x", "Privileged": "yes"}}, "Docker.Privileged"),
        ({"Docker": {"Image": "x", "Bogus": 1}}, "Docker.Bogus"),
        ({"Provider": "virtualbox"}, "Box"),
        ({"Provider": "virtualbox", "Box": "b", "Docker": {"Image": "x"}}, "Docker"),
        ({"Provider": "Not A Provider", "Box": "b"}, "Provider"),
        ({"Provider": "libvirt", "Box": "b", "CPUs": 0}, "CPUs"),
        ({"Provider": "libvirt", "Box": "b", "Memory": "512"}, "Memory"),
        ({"Provider": "libvirt", "Box": "b", "Template": 3}, "Template"),
        ({"Provider": "libvirt", "Box": "b", "Template": "/no/such/template"}, "Template"),
        ({"Box": "b", "Surprise": True}, "Surprise"),
        ([], ""),
    ],
)
def test_validation_errors_name_the_path(tmp_path: Path, properties: Any, path: str) -> None:
    plugin = VagrantInstancePlugin(tmp_path)
    with pytest.raises(ValidationError) as failure:
        plugin.validate(properties)
    assert failure.value.path == path


def test_keys_are_case_insensitive_and_defaults_apply() -> None:
    options = parse_options({"provider": "virtualbox", "box": "debian/bookworm64"})
    assert (options.box, options.cpus, options.memory) == ("debian/bookworm64", None, None)
    text = render_vagrantfile(options, "vagrant-abc", "10.1.2.3")
    assert "config.vm.box = 'debian/bookworm64'" in text
    assert "vb.cpus = 2" in text and "vb.memory = 512" in text
    assert "config.vm.network \"private_network\", ip: '10.1.2.3'" in text
    assert 'config.vm.provision "shell", path: "boot.sh"' in text
    assert ", type: 'dhcp'" in render_vagrantfile(options, "vagrant-abc", "zk1")


def test_a_size_groups_machine_sees_its_slot_as_its_logical_id(
    engine: Any, token: str, plugin: VagrantInstancePlugin
) -> None:
    """A Size group sends no LogicalID, only the slot tag: the machine gets the slot in its
    environment (the example prints it in its `()`); the network stays DHCP."""
    spec = Spec(
        properties=props(token),
        tags={TAG_GROUP: "machines", TAG_LOGICAL_ID: "machines-0"},
        init='echo "($INFRAKIT_LOGICAL_ID)" > /vagrant/slot',
    )
    instance_id = plugin.provision(spec)
    idir = plugin.state_dir / instance_id
    assert "'INFRAKIT_LOGICAL_ID' => 'machines-0'" in (idir / "Vagrantfile").read_text()
    assert read_when_there(idir / "slot", "the Init's file") == "(machines-0)\n"
    (found,) = plugin.describe_instances({TAG_GROUP: "machines"})
    assert found.logical_id is None  # the plugin's description keeps the spec as given


def test_a_template_of_your_own(tmp_path: Path) -> None:
    template = tmp_path / "Vagrantfile.tmpl"
    template.write_text(
        'Vagrant.configure("2") do |config|\n'
        "  config.vm.box = $Box  # ${InstanceID} $$HOME\n"
        "  config.vm.provider 'virtualbox' do |vb| vb.memory = $Memory end\n"
        "  x = { 'a' => 1 }\n"
        "end\n"
    )
    properties = {
        "Provider": "virtualbox",
        "Box": "b'ox",
        "Memory": 2048,
        "Template": str(template),
    }
    plugin = VagrantInstancePlugin(tmp_path / "state")
    plugin.validate(properties)
    text = render_vagrantfile(parse_options(properties), "vagrant-abc")
    assert "config.vm.box = 'b\\'ox'  # 'vagrant-abc' $HOME" in text
    assert "vb.memory = 2048 end" in text and "x = { 'a' => 1 }" in text
    if shutil.which("ruby"):
        (tmp_path / "Vagrantfile").write_text(text)
        subprocess.run(["ruby", "-c", str(tmp_path / "Vagrantfile")], check=True, timeout=30)
    template.write_text("config.vm.box = $Boxx\n")
    with pytest.raises(ValidationError, match=r"unknown placeholder \$Boxx") as failure:
        plugin.validate(properties)
    assert failure.value.path == "Template"


# -- the runtime ---------------------------------------------------------------------------


def vagrant_group(token: str, size: int = 2) -> dict[str, Any]:
    return {
        "ID": "machines",
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": "instance-vagrant", "Properties": props(token)},
            "Flavor": {
                "Plugin": "flavor-vanilla",
                "Properties": {
                    "Init": ['echo "machine $INFRAKIT_INSTANCE_ID" > /vagrant/init-ran'],
                    "Tags": {"role": "machine"},
                },
            },
            "Health": {"Interval": "200ms", "GracePeriod": "2s", "UnhealthyAfter": 2},
        },
    }


def test_a_group_of_machines_converges_and_heals(home: Path, engine: Any, token: str) -> None:
    plugin = VagrantInstancePlugin(home.parent / "vagrant", dead_retention=0)
    try:
        with Runtime(home=home, plugins={"instance-vagrant": plugin}) as runtime:
            assert runtime.commit(vagrant_group(token)) == "Managing 2 instances"
            first = runtime.wait_converged("machines")["Instances"]
            assert len(first) == 2
            for member in first:
                assert member["Tags"]["role"] == "machine"
                assert container_of(engine, member["ID"]).status == "running"
                ran = plugin.state_dir / member["ID"] / "init-ran"
                assert read_when_there(ran, "the Init") == f"machine {member['ID']}\n"

            victim = first[0]["ID"]
            container_of(engine, victim).kill()

            def replaced() -> bool:
                now = {i["ID"] for i in runtime.describe("machines")["Instances"]}
                return len(now) == 2 and victim not in now

            wait_for(replaced, timeout=60, what="a machine replacing the killed one")
            done = runtime.wait_converged("machines")["Instances"]
            logical = sorted(i["Tags"][TAG_LOGICAL_ID] for i in done)
            assert logical == ["machines-0", "machines-1"]
            # The dead machine is destroyed (at once, as dead_retention is 0), directory and all.
            wait_for(
                lambda: not (plugin.state_dir / victim).exists(),
                timeout=30,
                what="the dead machine's directory to go",
            )
            running = engine.containers.list(
                ignore_removed=True, filters={"label": f"{TEST_LABEL}={token}", "status": "running"}
            )
            assert len(running) == 2
    finally:
        destroy_all(plugin)
