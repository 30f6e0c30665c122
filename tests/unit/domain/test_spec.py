"""Group specs and cluster files: InfraKit's files are accepted unchanged, keys match in any
letter case, and every fault is refused with its JSON path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infrakit.spec import SpecError, load_json, parse_cluster, parse_group

# InfraKit's own tutorial file (docs/tutorial.md, v0.1), byte for byte in content.
CATTLE = {
    "ID": "cattle",
    "Properties": {
        "Allocation": {"Size": 5},
        "Instance": {
            "Plugin": "instance-file",
            "Properties": {"Note": "Instance properties version 1.0"},
        },
        "Flavor": {
            "Plugin": "flavor-vanilla",
            "Properties": {
                "Init": ["docker pull nginx:alpine", "docker run -d -p 80:80 nginx-alpine"],
                "Tags": {"tier": "web", "project": "infrakit"},
            },
        },
    },
}


def problems(data: Any) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as caught:
        parse_group(data)
    return caught.value.problems


def test_infrakit_tutorial_file_is_accepted_with_defaults() -> None:
    spec = parse_group(CATTLE)
    assert spec.logical_ids() == ("cattle-0", "cattle-1", "cattle-2", "cattle-3", "cattle-4")
    assert spec.properties.health.interval == 1.0
    assert spec.properties.update.max_unavailable_of(5) == 1
    assert spec.properties.update.max_surge_of(5) == 0
    assert spec.to_json() == {**CATTLE, "Properties": {**CATTLE["Properties"]}}


def test_logical_ids_group_and_keys_in_any_case() -> None:
    spec = parse_group(
        {
            "id": "zk",
            "properties": {
                "allocation": {"logicalids": ["zk1", "zk2", "zk3"]},
                "INSTANCE": {"plugin": "instance-process"},
                "Flavor": {"PLUGIN": "flavor-vanilla", "properties": {"Init": ["x"]}},
                "health": {"gracePeriod": "1m", "interval": "500ms", "maxunhealthy": 1},
            },
        }
    )
    assert spec.logical_ids() == ("zk1", "zk2", "zk3")
    assert not spec.is_sized
    assert spec.properties.health.grace_period == 60.0
    assert spec.properties.health.interval == 0.5


@pytest.mark.parametrize(
    ("allocation", "expected"),
    [
        ({}, ("Properties.Allocation", "Allocation must not be blank")),
        (
            {"Size": 1, "LogicalIDs": ["a"]},
            ("Properties.Allocation", "Only one Allocation method may be used"),
        ),
        ({"Size": -1}, ("Properties.Allocation.Size", "must be >= 0, got -1")),
        (
            {"Size": "3"},
            ("Properties.Allocation.Size", "must be a whole number, got a string '3'"),
        ),
        (
            {"LogicalIDs": ["a", "a"]},
            ("Properties.Allocation.LogicalIDs", "logical ID 'a' appears twice"),
        ),
        (
            {"LogicalIDs": ["a", 2]},
            ("Properties.Allocation.LogicalIDs[1]", "must be a string, got a number"),
        ),
        (
            {"Sise": 3},
            (
                "Properties.Allocation.Sise",
                "unknown key 'Sise' (expected one of: Size, LogicalIDs)",
            ),
        ),
    ],
)
def test_allocation_faults_name_their_path(
    allocation: dict[str, Any], expected: tuple[str, str]
) -> None:
    data = json.loads(json.dumps(CATTLE))
    data["Properties"]["Allocation"] = allocation
    assert expected in problems(data)


def test_every_fault_is_reported_at_once() -> None:
    data = json.loads(json.dumps(CATTLE))
    data["ID"] = ""
    data["Properties"]["Instance"] = {"Plugin": ""}
    data["Properties"]["Health"] = {"Interval": "2 parsecs", "MaxUnhealthy": "140%"}
    data["Properties"]["Update"] = {"OnFailure": "explode", "MaxParallel": 0}
    found = dict(problems(data))
    assert found["ID"] == "Group ID must not be blank"
    assert found["Properties.Instance.Plugin"] == "must not be blank"
    assert found["Properties.Health.Interval"].startswith("not a duration: '2 parsecs'")
    assert "140%" in found["Properties.Health.MaxUnhealthy"]
    assert found["Properties.Update.OnFailure"] == (
        "must be one of 'pause' or 'rollback', got 'explode'"
    )
    assert found["Properties.Update.MaxParallel"] == "must be >= 1, got 0"


def test_not_an_object_and_bad_json_are_clear(tmp_path: Path) -> None:
    assert problems([1, 2]) == [("", "a group spec must be an object, got a list")]
    path = tmp_path / "bad.json"
    path.write_text('{"ID": "x",\n  "Properties": }')
    with pytest.raises(SpecError, match=r"not valid JSON: .* at line 2 column 17"):
        load_json(path)


def test_group_ids_must_be_safe_names() -> None:
    data = json.loads(json.dumps(CATTLE))
    data["ID"] = "../etc"
    assert problems(data)[0][0] == "ID"


def test_a_bare_groups_list_is_a_valid_cluster_file() -> None:
    config = parse_cluster({"Groups": [CATTLE]})
    assert config.manager.leader.kind == "file"
    assert len(config.groups) == 1


def test_cluster_faults_name_their_path() -> None:
    with pytest.raises(SpecError) as caught:
        parse_cluster(
            {
                "Plugins": [
                    {"Name": "p", "Kind": "file"},
                    {"Name": "p", "Kind": "process"},
                ],
                "Groups": [CATTLE, CATTLE, {**CATTLE, "ID": "other", "Properties": {}}],
                "Manager": {"Leader": {"Kind": "zookeeper"}},
            }
        )
    found = caught.value.problems
    assert ("Manager.Leader.Kind", "must be one of 'file' or 'etcd', got 'zookeeper'") in found


def test_plugin_kinds_and_their_options_are_checked_with_the_file() -> None:
    with pytest.raises(SpecError) as caught:
        parse_cluster(
            {
                "Plugins": [
                    {"Name": "a", "Kind": "file", "Options": {"dir": "", "Colour": "red"}},
                    {"Name": "b", "Kind": "dockr"},
                    {"Name": "c", "Kind": "vanilla", "Options": {"Dir": "x"}},
                ]
            }
        )
    assert caught.value.problems == [
        ("Plugins[0].Options.Colour", "unknown key 'Colour' (expected one of: Dir)"),
        ("Plugins[0].Options.Dir", "must be a non-empty string"),
        (
            "Plugins[1].Kind",
            "unknown plugin kind 'dockr'; built-in kinds: "
            "file, process, docker, dind, vagrant, gcp, aws, terraform, vanilla, zookeeper, swarm",
        ),
        ("Plugins[2].Options.Dir", "unknown key 'Dir' (expected none)"),
    ]
    # Keys of options match in any letter case, as everywhere else.
    config = parse_cluster({"Plugins": [{"Name": "a", "Kind": "file", "Options": {"DIR": "/x"}}]})
    assert config.plugins[0].options == {"DIR": "/x"}


def test_cluster_groups_checked_against_known_plugins() -> None:
    data = json.loads(json.dumps(CATTLE))
    data["Properties"]["Instance"]["Plugin"] = "instance-aws"
    with pytest.raises(SpecError) as caught:
        parse_cluster(
            {"Plugins": [{"Name": "p", "Kind": "file"}], "Groups": [CATTLE, data, CATTLE]}
        )
    found = dict(caught.value.problems)
    assert found["Groups[1].Properties.Instance.Plugin"].startswith(
        "no plugin named 'instance-aws' (known: "
    )
    assert found["Groups[2].ID"] == "group 'cattle' is declared twice"
    # An embedding program may bring its own plugins.
    parse_cluster({"Groups": [data]}, extra_plugins=["instance-aws"])
