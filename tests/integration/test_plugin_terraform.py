"""The Terraform instance plugin with the real Terraform 0.11 and null provider that the
`terraform` extra installs beside this Python: null_resources made and destroyed by real applies
in a temp directory, concurrent provisions batched into few applies, a failed apply leaving
nothing, resources tainted or removed from the state out of band seen as gone, and a Size 5
group that converges, heals, scales down and is destroyed by the runtime."""

from __future__ import annotations

import json
import logging
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import require, wait_for

from infrakit import Runtime
from infrakit.plugins.instance.terraform import (
    STATE_FILE,
    TAG_INIT,
    TerraformInstancePlugin,
    find_plugin_dir,
    find_terraform,
)
from infrakit.spi import PluginError, Spec
from infrakit.spi.errors import ValidationError
from infrakit.spi.instance import TAG_GROUP, TAG_LOGICAL_ID

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "terraform-cluster.json"
NULL = {"Type": "null_resource"}


def installed() -> tuple[Path, Path] | None:
    """The terraform binary and its providers' directory, if the null provider is there."""
    try:
        binary = find_terraform()
    except FileNotFoundError:
        return None
    providers = find_plugin_dir(binary)
    if providers is None or not list(providers.glob("terraform-provider-null_*")):
        return None
    return binary, providers


@pytest.fixture
def terraform() -> tuple[Path, Path]:
    found = installed()
    require("terraform", found is not None, "pip install 'infrakit[terraform]' in the venv")
    assert found is not None
    return found


@pytest.fixture
def plugin(terraform: tuple[Path, Path], tmp_path: Path) -> Iterator[TerraformInstancePlugin]:
    p = TerraformInstancePlugin(tmp_path / "terraform")
    yield p
    p.close()


def resources(directory: Path) -> dict[str, dict[str, Any]]:
    """Resource name -> `primary` of every resource in the directory's state (which terraform
    rewrites in place: a read can catch half of it, and is then made again). A resource being
    destroyed shows an empty ID for a moment: it is left out."""

    def whole() -> tuple[Any] | None:
        try:
            return (json.loads((directory / STATE_FILE).read_text()),)
        except FileNotFoundError:
            return ({"modules": []},)
        except ValueError:
            return None

    (data,) = wait_for(whole, what="a whole state")
    found = {}
    for module in data["modules"]:
        for address, entry in module["resources"].items():
            if entry["primary"]["id"]:
                found[address.split(".", 1)[1]] = entry["primary"]
    return found


def live(directory: Path) -> dict[str, dict[str, Any]]:
    return {name: p for name, p in resources(directory).items() if not p["tainted"]}


def instance_files(directory: Path) -> set[str]:
    return {p.name.removesuffix(".tf.json") for p in directory.glob("instance-*.tf.json")}


def run(plugin: TerraformInstancePlugin, *args: str) -> None:
    """A terraform command run by hand in the plugin's directory, as an operator would."""
    outcome = plugin.terraform.run(*args)
    assert outcome.ok, outcome.stderr


# -- provision, describe, label, destroy -----------------------------------------------------


def test_provision_describe_label_destroy(plugin: TerraformInstancePlugin) -> None:
    tags = {TAG_GROUP: "round", "note": "a ${literal}"}
    spec = Spec(properties=NULL, tags=tags, init="echo ${HOME}", logical_id="round-0")
    instance_id = plugin.provision(spec)
    made = resources(plugin.directory)[instance_id]
    assert not made["tainted"]
    assert made["attributes"]["triggers.note"] == "a ${literal}"
    assert made["attributes"][f"triggers.{TAG_INIT}"] == "echo ${HOME}"
    (described,) = plugin.describe_instances({TAG_GROUP: "round"})
    assert described.id == instance_id and described.logical_id == "round-0"
    assert described.tags == {**tags, TAG_LOGICAL_ID: "round-0"}
    assert described.properties["Address"] == f"null_resource.{instance_id}"
    assert plugin.describe_instances({TAG_GROUP: "other"}) == []

    plugin.label(instance_id, {"extra": "yes"})
    assert resources(plugin.directory)[instance_id]["attributes"]["triggers.extra"] == "yes"
    assert plugin.describe_instances({"extra": "yes"})[0].id == instance_id

    plugin.destroy(instance_id)
    assert instance_files(plugin.directory) == set()
    assert resources(plugin.directory) == {}
    assert plugin.describe_instances({}) == []
    plugin.destroy(instance_id)  # gone already: not an error
    with pytest.raises(PluginError, match="no such instance"):
        plugin.label(instance_id, {"extra": "no"})


def test_ten_provisions_at_once_share_a_few_applies_then_refreshes_run(
    terraform: tuple[Path, Path], tmp_path: Path
) -> None:
    binary, providers = terraform
    calls = tmp_path / "calls"
    wrapper = tmp_path / "terraform-counting"
    wrapper.write_text(f'#!/bin/sh\necho "$1" >> "{calls}"\nexec "{binary}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    plugin = TerraformInstancePlugin(
        tmp_path / "tf", terraform=wrapper, plugin_dir=providers, refresh=0.2
    )
    made: list[str] = []
    failed: list[BaseException] = []
    start = threading.Barrier(10)

    def provision(n: int) -> None:
        start.wait()
        try:
            made.append(plugin.provision(Spec(properties=NULL, tags={TAG_GROUP: f"b{n % 2}"})))
        except BaseException as error:
            failed.append(error)

    threads = [threading.Thread(target=provision, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert failed == [] and len(set(made)) == 10
    assert set(live(plugin.directory)) == set(made)
    applies = calls.read_text().split().count("apply")
    assert 1 <= applies < 10, f"{applies} applies for 10 provisions"
    # Left alone, the plugin refreshes the state (which a refresh of null_resources keeps).
    wait_for(lambda: "refresh" in calls.read_text().split(), what="a terraform refresh")
    plugin.close()
    assert calls.read_text().split().count("apply") == applies
    assert set(live(plugin.directory)) == set(made)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"provisioner": [{"local-exec": {"command": "exit 3"}}]}, "exit status 3"),
        ({"bogus": "attribute"}, "invalid or unknown key: bogus"),
    ],
    ids=["provisioner-fails", "invalid-attribute"],
)
def test_a_failed_apply_is_a_clear_error_and_leaves_nothing(
    plugin: TerraformInstancePlugin, value: dict[str, Any], says: str
) -> None:
    with pytest.raises(PluginError) as caught:
        plugin.provision(Spec(properties={"Type": "null_resource", "Value": value}))
    message = str(caught.value)
    assert message.startswith("terraform could not create null_resource.instance-")
    assert says in message
    assert instance_files(plugin.directory) == set()
    assert plugin.describe_instances({}) == []
    # What was made of it (a tainted resource) is destroyed by the apply that follows.
    wait_for(lambda: resources(plugin.directory) == {}, what="an empty state")
    # The next provision is not held back by the failed one.
    good = plugin.provision(Spec(properties=NULL))
    assert set(live(plugin.directory)) == {good}


def test_an_apply_that_hangs_is_stopped_at_its_timeout(
    terraform: tuple[Path, Path], tmp_path: Path
) -> None:
    binary, providers = terraform
    hanging = tmp_path / "terraform-hanging"
    hanging.write_text(f'#!/bin/sh\n[ "$1" = apply ] && exec sleep 600\nexec "{binary}" "$@"\n')
    hanging.chmod(hanging.stat().st_mode | stat.S_IXUSR)
    plugin = TerraformInstancePlugin(
        tmp_path / "tf", terraform=hanging, plugin_dir=providers, apply_timeout=1.0
    )
    with pytest.raises(PluginError) as caught:
        plugin.provision(Spec(properties=NULL))
    plugin.close()
    assert "terraform apply did not finish in time and was stopped" in str(caught.value)
    assert instance_files(plugin.directory) == set()


def test_a_missing_provider_is_refused_before_anything_runs(
    plugin: TerraformInstancePlugin,
) -> None:
    properties = {"Type": "aws_instance", "Value": {"ami": "ami-1"}}
    with pytest.raises(ValidationError) as caught:
        plugin.validate(properties)
    assert caught.value.path == "Type"
    assert "no Terraform provider 'aws'" in caught.value.reason
    with pytest.raises(ValidationError, match=r"Value\.count"):
        plugin.provision(Spec(properties={"Type": "null_resource", "Value": {"count": 2}}))
    with pytest.raises(ValidationError, match="no Terraform provider 'aws'"):
        plugin.provision(Spec(properties=properties))
    assert instance_files(plugin.directory) == set()
    assert plugin.applies == 0 and not (plugin.directory / STATE_FILE).exists()


def test_resources_tainted_or_removed_out_of_band_are_gone(
    plugin: TerraformInstancePlugin, caplog: pytest.LogCaptureFixture
) -> None:
    tags = {TAG_GROUP: "oob"}
    tainted, removed, kept = (plugin.provision(Spec(properties=NULL, tags=tags)) for _ in "abc")
    run(plugin, "taint", "-no-color", "-lock-timeout=60s", f"null_resource.{tainted}")
    run(plugin, "state", "rm", f"null_resource.{removed}")
    with caplog.at_level(logging.WARNING):
        assert [d.id for d in plugin.describe_instances(tags)] == [kept]
        assert [d.id for d in plugin.describe_instances(tags)] == [kept]
    gone = [r.getMessage() for r in caplog.records if "is gone" in r.getMessage()]
    assert len(gone) == 2, gone  # once each
    assert instance_files(plugin.directory) == {kept}
    wait_for(lambda: set(resources(plugin.directory)) == {kept}, what="the tainted one destroyed")


def test_sweep_removes_what_a_crash_left(plugin: TerraformInstancePlugin) -> None:
    tags = {TAG_GROUP: "swept"}
    kept = plugin.provision(Spec(properties=NULL, tags=tags))
    # A provision killed before its apply leaves a file whose resource was never made.
    left = "instance-0123456789abcdef"
    document = json.loads((plugin.directory / f"{kept}.tf.json").read_text())
    text = json.dumps(document).replace(kept, left)
    (plugin.directory / f"{left}.tf.json").write_text(text)
    assert plugin.sweep({TAG_GROUP: "other"}) == []
    assert plugin.sweep(tags) == [left]
    assert plugin.sweep(tags) == []
    assert instance_files(plugin.directory) == {kept}
    assert set(live(plugin.directory)) == {kept}


# -- groups ----------------------------------------------------------------------------------


def terraform_group(group_id: str, size: int) -> dict[str, Any]:
    return {
        "ID": group_id,
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": "instance-terraform", "Properties": NULL},
            "Flavor": {"Plugin": "flavor-vanilla", "Properties": {"Init": ["echo hello"]}},
            "Health": {"Interval": "200ms"},
        },
    }


def slots(directory: Path) -> list[str]:
    """The logical IDs of the live resources in the state, sorted."""
    return sorted(p["attributes"][f"triggers.{TAG_LOGICAL_ID}"] for p in live(directory).values())


def test_a_group_converges_heals_scales_down_and_is_destroyed(
    plugin: TerraformInstancePlugin, home: Path
) -> None:
    directory = plugin.directory
    group = "nulls"
    with Runtime(home=home, plugins={"instance-terraform": plugin}) as runtime:
        assert runtime.commit(terraform_group(group, 5)) == "Managing 5 instances"
        five = [f"{group}-{n}" for n in range(5)]
        wait_for(lambda: slots(directory) == five, what="5 resources in the state")
        runtime.wait_converged(group)

        removed, tainted = sorted(live(directory))[:2]
        run(plugin, "state", "rm", f"null_resource.{removed}")
        run(plugin, "taint", "-no-color", "-lock-timeout=60s", f"null_resource.{tainted}")

        def healed() -> bool:
            names = set(resources(directory))
            return slots(directory) == five and not names & {removed, tainted}

        wait_for(healed, what="both lost resources replaced")
        runtime.wait_converged(group)
        assert instance_files(directory) == set(live(directory))

        assert runtime.commit(terraform_group(group, 2)).startswith("Terminating 3 instances")
        wait_for(lambda: slots(directory) == five[:2], what="2 resources in the state")
        runtime.wait_converged(group)
        assert instance_files(directory) == set(resources(directory))

        runtime.destroy(group)
        assert resources(directory) == {}
        assert instance_files(directory) == set()


def test_the_example_cluster_file_runs_as_written(terraform: tuple[Path, Path], home: Path) -> None:
    cluster = json.loads(EXAMPLE.read_text())
    (group,) = cluster["Groups"]
    directory = home / "instances" / "terraform"
    with Runtime(cluster, home=home) as runtime:
        wait_for(lambda: len(live(directory)) == 3, what="the example's 3 resources")
        described = runtime.wait_converged(group["ID"])
        assert len(described["Instances"]) == 3
        for made in live(directory).values():
            attributes = made["attributes"]
            assert attributes["triggers.example"] == "terraform-cluster"
            assert attributes["triggers.role"] == "worker"
            assert attributes[f"triggers.{TAG_INIT}"] == "echo hello from a null_resource"
        runtime.destroy(group["ID"])
        assert resources(directory) == {}
