"""The Terraform instance plugin's properties and options, without terraform: faults named by
their JSON paths, keys in any letter case, and where an instance's file puts its tags, logical
ID and Init (and reads them back)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from infrakit import jsonmodel
from infrakit.plugins.instance.terraform import (
    TAG_INIT,
    TerraformOptions,
    find_terraform,
    parse_properties,
    render,
)
from infrakit.plugins.instance.terraform.resource import read, relabel
from infrakit.spec import SpecError
from infrakit.spi import Spec
from infrakit.spi.errors import ValidationError
from infrakit.spi.instance import TAG_GROUP, TAG_LOGICAL_ID


@pytest.mark.parametrize(
    ("properties", "path", "says"),
    [
        ({}, "Type", "is required"),
        ({"Type": ""}, "Type", "must be a Terraform name"),
        ({"Type": "null resource"}, "Type", "must be a Terraform name"),
        ({"Type": 3}, "Type", "must be a Terraform name"),
        ({"Type": "null_resource", "Value": "x"}, "Value", "must be an object"),
        ({"Type": "null_resource", "Value": {"count": 2}}, "Value.count", "one resource"),
        ({"Type": "aws_instance", "Value": {"for_each": {}}}, "Value.for_each", "one resource"),
        ({"Type": "null_resource", "Value": {"triggers": ["a"]}}, "Value.triggers", "object"),
        ({"Type": "aws_instance", "Value": {"tags": "a"}}, "Value.tags", "object"),
        ({"Type": "aws_instance", "Value": {"user_data": 5}}, "Value.user_data", "a string"),
        ({"Type": "x_y", "TagsAttribute": "count"}, "TagsAttribute", "meta-argument"),
        ({"Type": "x_y", "TagsAttribute": "a.b"}, "TagsAttribute", "Terraform name"),
        ({"Type": "x_y", "InitAttribute": "lifecycle"}, "InitAttribute", "meta-argument"),
        ({"Type": "x_y", "Bogus": 1}, "Bogus", "unknown key"),
    ],
)
def test_faults_name_their_path(properties: dict[str, Any], path: str, says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_properties(properties)
    assert caught.value.path == path
    assert says in caught.value.reason


def test_every_fault_is_reported_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_properties({"Type": "aws_instance", "Value": {"count": 1, "tags": 1}, "X": 1})
    assert sorted(path for path, _ in caught.value.problems) == ["Value.count", "Value.tags", "X"]


def test_keys_match_in_any_letter_case_and_defaults_follow_the_type() -> None:
    parsed = parse_properties({"type": "null_resource", "VALUE": {"triggers": {"a": "b"}}})
    assert (parsed.type, parsed.value) == ("null_resource", {"triggers": {"a": "b"}})
    assert (parsed.tags_attribute, parsed.init_attribute) == ("triggers", "triggers")
    aws = parse_properties({"Type": "aws_instance", "tagsattribute": "labels"})
    assert (aws.tags_attribute, aws.init_attribute, aws.provider) == ("labels", "user_data", "aws")
    other = parse_properties({"Type": "azurerm_thing", "Value": {"provider": "azurerm.west"}})
    assert (other.tags_attribute, other.init_attribute, other.provider) == ("tags", "", "azurerm")


def spec(**extra: Any) -> Spec:
    tags = {TAG_GROUP: "workers", "role": "a ${b}"}
    return Spec(tags=tags, logical_id="workers-1", **extra)


def test_a_null_resource_keeps_tags_logical_id_and_init_in_its_triggers() -> None:
    properties = parse_properties({"Type": "null_resource", "Value": {"triggers": {"own": "x"}}})
    document = render(properties, spec(init="echo ${HOME}"), "instance-1")
    assert document["resource"] == {
        "null_resource": {
            "instance-1": {
                "triggers": {
                    "own": "x",
                    TAG_GROUP: "workers",
                    "role": "a $${b}",  # literal for Terraform 0.11, not an interpolation
                    TAG_LOGICAL_ID: "workers-1",
                    TAG_INIT: "echo $${HOME}",
                }
            }
        }
    }
    declared = read(document, "instance-1")
    assert declared.type == "null_resource"
    assert declared.logical_id == "workers-1"
    assert declared.tags == {
        "own": "x",
        TAG_GROUP: "workers",
        "role": "a ${b}",
        TAG_LOGICAL_ID: "workers-1",
    }


def test_a_machine_gets_its_tags_in_tags_and_its_init_after_its_user_data() -> None:
    value = {"ami": "ami-1", "tags": {"Name": "web", "role": "old"}, "user_data": "#!/bin/sh"}
    properties = parse_properties({"Type": "aws_instance", "Value": value})
    document = render(properties, spec(init="echo hi"), "instance-2")
    body = document["resource"]["aws_instance"]["instance-2"]
    assert body["ami"] == "ami-1"
    assert body["user_data"] == "#!/bin/sh\necho hi"
    assert body["tags"] == {
        "Name": "web",
        "role": "a $${b}",  # the spec's tags win
        TAG_GROUP: "workers",
        TAG_LOGICAL_ID: "workers-1",
    }
    assert value["tags"] == {"Name": "web", "role": "old"}  # the properties are not changed
    assert read(document, "instance-2").tags["role"] == "a ${b}"


def test_a_named_tags_attribute_is_read_back_from_the_file() -> None:
    properties = parse_properties({"Type": "google_thing", "TagsAttribute": "labels"})
    document = render(properties, spec(), "instance-3")
    assert document["resource"]["google_thing"]["instance-3"]["labels"][TAG_GROUP] == "workers"
    relabelled = relabel(document, "instance-3", {"more": "${x}"})
    assert relabelled["resource"]["google_thing"]["instance-3"]["labels"]["more"] == "$${x}"
    assert read(relabelled, "instance-3").tags["more"] == "${x}"
    assert "more" not in read(document, "instance-3").tags


def test_an_init_with_no_place_is_refused_unless_dropped_on_purpose() -> None:
    properties = parse_properties({"Type": "aws_s3_bucket"})
    render(properties, spec(), "instance-4")  # no Init: nothing to place
    with pytest.raises(ValidationError) as caught:
        render(properties, spec(init="echo hi"), "instance-4")
    assert caught.value.path == "InitAttribute"
    assert "no known attribute for the Init" in caught.value.reason
    dropped = parse_properties({"Type": "aws_s3_bucket", "InitAttribute": ""})
    body = render(dropped, spec(init="echo hi"), "instance-4")["resource"]["aws_s3_bucket"]
    assert "echo hi" not in str(body)


def test_plugin_options_parse_with_paths() -> None:
    options = jsonmodel.parse(
        TerraformOptions,
        {"dir": "~/tf", "ApplyTimeout": "90s", "PluginDir": "/opt/p", "refresh": 0},
    )
    assert options.dir == Path("~/tf").expanduser()
    assert (options.apply_timeout, options.plugin_dir, options.terraform, options.refresh) == (
        90.0,
        Path("/opt/p"),
        None,
        0.0,
    )
    assert jsonmodel.parse(TerraformOptions, {}).refresh == 60.0
    with pytest.raises(SpecError) as caught:
        jsonmodel.parse(
            TerraformOptions, {"ApplyTimeout": "0s", "Terraform": "", "Refresh": "1ms", "X": 1}
        )
    assert sorted(path for path, _ in caught.value.problems) == [
        "ApplyTimeout",
        "Refresh",
        "Terraform",
        "X",
    ]


def test_no_terraform_anywhere_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError) as caught:
        find_terraform()
    assert "pip install 'infrakit[terraform]'" in str(caught.value)
    with pytest.raises(FileNotFoundError) as given:
        find_terraform(tmp_path / "nowhere")
    assert str(given.value).startswith("Terraform option: no executable file at")
