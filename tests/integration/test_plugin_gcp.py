"""The gcp instance plugin against gcplocal, a Compute Engine emulator, on a free 127.0.0.1 port:
instances made with their tags as metadata and labels and the Init as startup-script, a group's
instances told from others' client side (gcplocal ignores list filters), logical IDs as names,
what a terminated instance means, API and transport failures as plugin errors, and a Size 3
group converging, healing, rolling out a new machine type and going away. Each test works in a
project of its own, so tests (and test runs) never see each other's instances."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import secrets
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support import free_port, require, wait_for

from infrakit import Runtime
from infrakit.spi import PluginError, Spec
from infrakit.spi.errors import ValidationError
from infrakit.spi.instance import TAG_GROUP, TAG_LOGICAL_ID

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "gcp-cluster.json"
SERVER = ROOT / "examples" / "gcplocal-server.py"
ZONE = "us-central1-a"
IMAGE = "projects/debian-cloud/global/images/family/debian-12"


def available() -> bool:
    return all(
        importlib.util.find_spec(name) is not None for name in ("gcplocal", "google.cloud.compute")
    )


@dataclass
class Emulator:
    """gcplocal serving on `url`; `store` is its state, where a test plays the cloud's part
    (GCP preempting a VM, say)."""

    url: str
    store: Any


def _server_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gcplocal_server", SERVER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            return b"healthy" in answer.read()
    except OSError:
        return False


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """gcplocal (with examples/gcplocal-server.py's fix) in a thread of this process."""
    require("gcplocal", available(), "pip install gcplocal google-cloud-compute")
    from gcplocal.server import create_app
    from gcplocal.state import StateStore
    from werkzeug.serving import make_server

    store = StateStore()
    _server_module().fix_operation_ids(store)
    server = make_server("127.0.0.1", 0, create_app(store), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="gcplocal", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        wait_for(lambda: answers(url), what="gcplocal to answer")
        yield Emulator(url, store)
    finally:
        server.shutdown()
        thread.join(timeout=30)


@pytest.fixture
def project() -> str:
    """A project of this test's own."""
    return f"ik-{secrets.token_hex(6)}"


def make_plugin(emulator: Emulator, project: str) -> Any:
    from infrakit.plugins.instance.gcp import GcpInstancePlugin

    return GcpInstancePlugin(project=project, zone=ZONE, endpoint=emulator.url, environ={})


@pytest.fixture
def plugin(emulator: Emulator, project: str) -> Any:
    return make_plugin(emulator, project)


@pytest.fixture
def client(emulator: Emulator) -> Any:
    """A Compute client of the test's own, acting out of band."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import compute_v1

    return compute_v1.InstancesClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options={"api_endpoint": emulator.url},
    )


def instances(client: Any, project: str) -> dict[str, Any]:
    """Name -> instance, of every instance in the test's project and zone."""
    return {i.name: i for i in client.list(project=project, zone=ZONE)}


def metadata(instance: Any) -> dict[str, str]:
    return {item.key: item.value for item in instance.metadata.items}


def terminate(emulator: Emulator, project: str, name: str) -> None:
    """Do what GCP does to a preempted VM: stop it, leaving it TERMINATED."""
    kind = f"instances/{ZONE}"
    instance = emulator.store.get("compute", project, kind, name)
    emulator.store.put("compute", project, kind, name, {**instance, "status": "TERMINATED"})


def spec(group: str, init: str = "", **properties: Any) -> Spec:
    return Spec(
        properties={"Image": IMAGE, **properties},
        tags={TAG_GROUP: group, "role": "worker"},
        init=init,
    )


# -- provision, describe, destroy ----------------------------------------------------------


def test_provision_describe_destroy_with_tags_and_init(
    plugin: Any, client: Any, project: str
) -> None:
    name = plugin.provision(
        Spec(
            properties={"Image": IMAGE, "MachineType": "e2-small", "Labels": {"team": "infra"}},
            tags={TAG_GROUP: "Web.Servers", TAG_LOGICAL_ID: "web-0", "role": "front end"},
            init="#!/bin/sh\necho hello",
        )
    )
    assert name.startswith("web-servers-")
    made = instances(client, project)[name]
    assert made.machine_type.endswith("/machineTypes/e2-small")
    items = metadata(made)
    assert items["startup-script"] == "#!/bin/sh\necho hello"
    assert json.loads(items["infrakit-tags"]) == {
        TAG_GROUP: "Web.Servers",
        TAG_LOGICAL_ID: "web-0",
        "role": "front end",
    }
    assert dict(made.labels) == {
        "team": "infra",
        "infrakit_2egroup": "_57eb_2e_53ervers",
        "infrakit_2elogical_5fid": "web-0",
        "role": "front_20end",
    }
    (described,) = plugin.describe_instances({TAG_GROUP: "Web.Servers"})
    assert described.id == name and described.logical_id is None
    assert described.tags == {
        TAG_GROUP: "Web.Servers",
        TAG_LOGICAL_ID: "web-0",
        "role": "front end",
    }
    assert described.properties["MachineType"] == "e2-small"
    assert described.properties["Status"] == "RUNNING"
    plugin.destroy(name)
    assert name not in instances(client, project)
    assert plugin.describe_instances({TAG_GROUP: "Web.Servers"}) == []
    plugin.destroy(name)  # already gone: not an error


def test_describe_matches_tags_client_side(plugin: Any, client: Any, project: str) -> None:
    """gcplocal ignores list filters, so every instance of the zone comes back from the API:
    the plugin must still return only those whose tags match."""
    from google.cloud import compute_v1

    ours = {plugin.provision(spec("alpha")) for _ in range(2)}
    theirs = plugin.provision(spec("beta"))
    client.insert(
        project=project, zone=ZONE, instance_resource=compute_v1.Instance(name="stranger")
    ).result(timeout=60)
    assert len(instances(client, project)) == 4
    assert {d.id for d in plugin.describe_instances({TAG_GROUP: "alpha"})} == ours
    assert {d.id for d in plugin.describe_instances({TAG_GROUP: "beta"})} == {theirs}
    assert plugin.describe_instances({TAG_GROUP: "alpha", "role": "db"}) == []
    everything = {d.id: d.tags for d in plugin.describe_instances({})}
    assert everything.keys() == {*ours, theirs, "stranger"} and everything["stranger"] == {}


def test_a_terminated_instance_is_gone_and_swept(
    emulator: Emulator, plugin: Any, client: Any, project: str
) -> None:
    kept, preempted = plugin.provision(spec("spot")), plugin.provision(spec("spot"))
    other = plugin.provision(spec("other"))
    terminate(emulator, project, preempted)
    terminate(emulator, project, other)
    assert [d.id for d in plugin.describe_instances({TAG_GROUP: "spot"})] == [kept]
    assert plugin.sweep({TAG_GROUP: "spot"}) == [preempted]
    assert instances(client, project).keys() == {kept, other}
    assert plugin.sweep({TAG_GROUP: "spot"}) == []


# -- logical IDs ---------------------------------------------------------------------------


def test_a_logical_id_names_the_instance(
    emulator: Emulator, plugin: Any, client: Any, project: str
) -> None:
    pet = Spec(properties={"Image": IMAGE}, tags={TAG_GROUP: "pets"}, logical_id="db-1")
    assert plugin.provision(pet) == "db-1"
    (described,) = plugin.describe_instances({TAG_GROUP: "pets"})
    assert (described.id, described.logical_id) == ("db-1", "db-1")
    with pytest.raises(PluginError, match="an instance named 'db-1' already exists"):
        plugin.provision(pet)
    # Once terminated, it is gone: the next provision deletes it and makes it anew.
    terminate(emulator, project, "db-1")
    assert plugin.provision(pet) == "db-1"
    assert instances(client, project)["db-1"].status == "RUNNING"

    by_ip = Spec(properties={"Image": IMAGE}, tags={TAG_GROUP: "pets"}, logical_id="10.0.0.7")
    assert plugin.provision(by_ip) == "pets-10-0-0-7"
    described = {d.id: d for d in plugin.describe_instances({TAG_GROUP: "pets"})}
    assert described["pets-10-0-0-7"].logical_id == "10.0.0.7"
    assert described["pets-10-0-0-7"].properties["NetworkIP"] == "10.0.0.7"


def test_a_name_taken_by_someone_else_is_left_alone(
    emulator: Emulator, plugin: Any, client: Any, project: str
) -> None:
    from google.cloud import compute_v1

    client.insert(
        project=project, zone=ZONE, instance_resource=compute_v1.Instance(name="db-2")
    ).result(timeout=60)
    terminate(emulator, project, "db-2")
    pet = Spec(properties={"Image": IMAGE}, tags={TAG_GROUP: "pets"}, logical_id="db-2")
    with pytest.raises(PluginError, match="was not made by infrakit for logical ID 'db-2'"):
        plugin.provision(pet)
    assert instances(client, project)["db-2"].status == "TERMINATED"


# -- labels, failures ----------------------------------------------------------------------


def test_label_is_a_no_op_when_present_and_a_plugin_error_otherwise(plugin: Any) -> None:
    name = plugin.provision(spec("labelled"))
    plugin.label(name, {TAG_GROUP: "labelled", "role": "worker"})  # nothing to change
    with pytest.raises(PluginError, match="no such instance: nobody"):
        plugin.label("nobody", {"a": "b"})
    # gcplocal has no setMetadata: what the API says reaches the caller as a plugin error.
    with pytest.raises(PluginError) as caught:
        plugin.label(name, {"infrakit.cluster.id": "c1"})
    assert str(caught.value).startswith(
        f"Compute Engine refused to set the metadata of instance {name}:"
    )
    assert "(HTTP 404)" in str(caught.value)


def test_bad_properties_are_refused_before_any_call(plugin: Any, client: Any, project: str) -> None:
    with pytest.raises(ValidationError) as caught:
        plugin.provision(spec("bad", MachineType="huge machine", Labels={"A": "b"}))
    assert [p for p, _ in caught.value.problems] == ["MachineType", "Labels.A"]
    with pytest.raises(ValidationError, match="Zone: this gcp plugin works in zone"):
        plugin.provision(spec("bad", Zone="europe-west1-b"))
    assert instances(client, project) == {}


def test_an_unreachable_endpoint_is_a_plugin_error(project: str) -> None:
    from infrakit.plugins.instance.gcp import GcpInstancePlugin

    url = f"http://127.0.0.1:{free_port()}"
    plugin = GcpInstancePlugin(project=project, zone=ZONE, endpoint=url, environ={})
    with pytest.raises(PluginError, match=f"cannot reach Compute Engine at {url} to list"):
        plugin.describe_instances({TAG_GROUP: "x"})
    with pytest.raises(PluginError, match=f"cannot reach Compute Engine at {url} to create"):
        plugin.provision(spec("x"))


# -- groups --------------------------------------------------------------------------------


def gcp_group(group: str, machine_type: str = "e2-small", size: int = 3) -> dict[str, Any]:
    return {
        "ID": group,
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {
                "Plugin": "instance-gcp",
                "Properties": {"Image": IMAGE, "MachineType": machine_type},
            },
            "Flavor": {"Plugin": "flavor-vanilla", "Properties": {"Init": ["echo booted"]}},
            "Health": {"Interval": "200ms", "GracePeriod": "1s"},
        },
    }


def group_instances(client: Any, project: str, group: str) -> dict[str, Any]:
    return {
        name: instance
        for name, instance in instances(client, project).items()
        if json.loads(metadata(instance).get("infrakit-tags", "{}")).get(TAG_GROUP) == group
    }


def test_a_group_converges_heals_rolls_and_goes(
    plugin: Any, client: Any, project: str, home: Path
) -> None:
    group = "workers"
    with Runtime(home=home, plugins={"instance-gcp": plugin}) as runtime:
        assert runtime.commit(gcp_group(group)) == "Managing 3 instances"
        before = runtime.wait_converged(group)["Instances"]
        made = group_instances(client, project, group)
        assert {i["ID"] for i in before} == made.keys() and len(made) == 3
        assert all(metadata(i)["startup-script"] == "echo booted" for i in made.values())
        slots = sorted(
            json.loads(metadata(i)["infrakit-tags"])[TAG_LOGICAL_ID] for i in made.values()
        )
        assert slots == ["workers-0", "workers-1", "workers-2"]

        # Deleted behind the group's back: replaced.
        victim = sorted(made)[1]
        client.delete(project=project, zone=ZONE, instance=victim).result(timeout=60)

        def replaced() -> dict[str, Any] | None:
            now = group_instances(client, project, group)
            return now if len(now) == 3 and victim not in now else None

        after = wait_for(replaced, what="the deleted instance to be replaced")
        assert len(after.keys() - made.keys()) == 1
        runtime.wait_converged(group)

        # A new machine type: every instance replaced by one of that type.
        assert runtime.commit(gcp_group(group, "e2-standard-2")) == (
            "Performing a rolling update on 3 instances"
        )

        def rolled() -> dict[str, Any] | None:
            now = group_instances(client, project, group)
            new = all(i.machine_type.endswith("/e2-standard-2") for i in now.values())
            return now if len(now) == 3 and new and not now.keys() & after.keys() else None

        wait_for(rolled, what="every instance on the new machine type")
        done = runtime.wait_converged(group)["Instances"]
        assert {i["Properties"]["MachineType"] for i in done} == {"e2-standard-2"}

        runtime.destroy(group)
        assert group_instances(client, project, group) == {}


def test_the_example_cluster_file_runs(
    client: Any, project: str, home: Path, tmp_path: Path
) -> None:
    """The example as its doc says to run it: gcplocal started by examples/gcplocal-server.py,
    and the plugin made from the cluster file's options."""
    require("gcplocal", available(), "pip install gcplocal google-cloud-compute")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (
        open(tmp_path / "gcplocal.log", "wb") as log,
        subprocess.Popen(
            [sys.executable, str(SERVER), "--port", str(port)], stdout=log, stderr=log
        ) as server,
    ):
        try:
            wait_for(lambda: answers(url) or server.poll() is not None, what="gcplocal")
            assert server.poll() is None, (tmp_path / "gcplocal.log").read_text()
            cluster = json.loads(EXAMPLE.read_text())
            options = cluster["Plugins"][0]["Options"]
            assert options["Endpoint"] == "http://127.0.0.1:8400"
            options.update(Endpoint=url, Project=project)
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import compute_v1

            theirs = compute_v1.InstancesClient(
                credentials=AnonymousCredentials(),
                transport="rest",
                client_options={"api_endpoint": url},
            )
            with Runtime(cluster, home=home) as runtime:
                described = runtime.wait_converged("web")["Instances"]
                assert len(described) == 3
                made = instances(theirs, project)
                assert made.keys() == {i["ID"] for i in described}
                for instance in made.values():
                    assert instance.labels["example"] == "gcp-cluster"
                    assert instance.labels["role"] == "web"
                    assert "nginx" in metadata(instance)["startup-script"]
                    assert instance.scheduling.provisioning_model == "SPOT"
                runtime.destroy("web")
                assert instances(theirs, project) == {}
        finally:
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=30)
            if server.poll() is None:
                server.kill()
