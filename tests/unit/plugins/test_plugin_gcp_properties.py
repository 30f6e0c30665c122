"""The gcp instance plugin without Compute Engine: its properties and options checked with
paths, tags encoded as labels and back, names always valid, the instance resource it would
insert, and an operation's failure or slowness told in words."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from google.api_core.extended_operation import ExtendedOperation
from google.cloud import compute_v1
from hypothesis import given
from hypothesis import strategies as st

from infrakit.plugins import create_plugin
from infrakit.plugins.instance.gcp import (
    GcpInstancePlugin,
    Location,
    decode,
    encode,
    instance_name,
    parse_properties,
    tag_labels,
    tags_of,
    valid_name,
)
from infrakit.plugins.instance.gcp.compute import Compute
from infrakit.plugins.instance.gcp.config import from_environment
from infrakit.plugins.instance.gcp.labels import (
    METADATA_TAGS,
    label_filter,
    relabel,
    tag_label,
    tags_metadata,
    valid_label_key,
    valid_label_value,
)
from infrakit.plugins.instance.gcp.names import Naming
from infrakit.plugins.instance.gcp.resource import instance_resource
from infrakit.spec import SpecError
from infrakit.spi import PluginError, Spec
from infrakit.spi.errors import ValidationError
from infrakit.spi.instance import TAG_CONFIG_HASH, TAG_GROUP, TAG_LOGICAL_ID

IMAGE = "projects/debian-cloud/global/images/family/debian-12"
HERE = Location("my-project", "europe-west1-b")

# -- properties ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("properties", "path", "says"),
    [
        ({}, "Image", "is required"),
        ({"Image": IMAGE, "Disks": [{"Image": IMAGE}]}, "Disks", "either Image"),
        ({"Image": "Debian 12"}, "Image", "must be an image"),
        ({"Image": IMAGE, "MachineType": "E2-MEDIUM"}, "MachineType", "machine type"),
        ({"Image": IMAGE, "MachineType": "zones/a/machinetypes/x"}, "MachineType", "machine"),
        ({"Disks": [{"SizeGb": 10}]}, "Disks[0]", "needs an Image or a Source"),
        ({"Disks": [{"Image": IMAGE, "Boot": False}]}, "Disks[0].Boot", "is the boot disk"),
        ({"Disks": [{"Image": IMAGE}, {"SizeGb": 1, "Boot": True}]}, "Disks[1].Boot", "only"),
        ({"Disks": [{"Image": IMAGE}, {}]}, "Disks[1].SizeGb", "needs a size"),
        ({"Disks": [{"Image": IMAGE}, {"SizeGb": 0}]}, "Disks[1].SizeGb", ">= 1"),
        ({"Disks": [{"Source": "d1", "Image": IMAGE}]}, "Disks[0].Source", "either Image"),
        ({"Disks": [{"Source": "d1", "Type": "pd-ssd"}]}, "Disks[0].Type", "keeps its own"),
        ({"Disks": []}, "Disks", "must not be empty"),
        ({"Image": IMAGE, "Network": "My Net"}, "Network", "network name or path"),
        ({"Image": IMAGE, "Subnetwork": "a/b"}, "Subnetwork", "subnetwork"),
        ({"Image": IMAGE, "NetworkTags": ["ok", "Not OK"]}, "NetworkTags[1]", "lowercase"),
        ({"Image": IMAGE, "Metadata": {"a b": "x"}}, "Metadata.a b", "letters, digits"),
        ({"Image": IMAGE, "Metadata": {"infrakit-tags": "{}"}}, "Metadata.infrakit-tags", "plugin"),
        ({"Image": IMAGE, "Metadata": {"k": 1}}, "Metadata.k", "must be a string"),
        ({"Image": IMAGE, "Labels": {"Team": "x"}}, "Labels.Team", "label key"),
        ({"Image": IMAGE, "Labels": {"team": "Infra"}}, "Labels.team", "lowercase"),
        ({"Image": IMAGE, "Labels": {"infrakit_x": "y"}}, "Labels.infrakit_x", "plugin's"),
        ({"Image": IMAGE, "ServiceAccount": "robot"}, "ServiceAccount", "email"),
        ({"Image": IMAGE, "Scopes": ["a b"]}, "Scopes[0]", "scope"),
        ({"Image": IMAGE, "Scheduling": {"OnHostMaintenance": "LATER"}}, "Scheduling", "one of"),
        (
            {"Image": IMAGE, "Scheduling": {"Preemptible": True, "AutomaticRestart": True}},
            "Scheduling.AutomaticRestart",
            "cannot restart",
        ),
        (
            {
                "Image": IMAGE,
                "Scheduling": {"ProvisioningModel": "SPOT", "OnHostMaintenance": "MIGRATE"},
            },
            "Scheduling.OnHostMaintenance",
            "cannot migrate",
        ),
        ({"Image": IMAGE, "NamePrefix": "Web"}, "NamePrefix", "lowercase"),
        ({"Image": IMAGE, "NamePrefix": "w" * 48}, "NamePrefix", "1 to 47"),
        ({"Image": IMAGE, "Zone": "mars"}, "Zone", "zone name"),
        ({"Image": IMAGE, "Project": "P"}, "Project", "project ID"),
        ({"Image": IMAGE, "Tags": ["http-server"]}, "Tags", "NetworkTags"),
        ({"Image": IMAGE, "ExternalIP": "yes"}, "ExternalIP", "true or false"),
        ("e2-medium", "", "must be an object"),
    ],
)
def test_bad_properties_are_refused_with_their_path(properties: Any, path: str, says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_properties(properties)
    assert caught.value.path.startswith(path), caught.value.problems
    assert says in caught.value.reason, caught.value.problems


def test_every_fault_is_reported_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_properties({"Image": "?", "MachineType": "?", "Labels": {"A": "b"}, "Colour": 1})
    assert {p for p, _ in caught.value.problems} == {"Image", "MachineType", "Labels.A", "Colour"}


def test_keys_in_any_case_and_defaults() -> None:
    props = parse_properties({"image": "debian-12", "machinetype": "n2-standard-2"})
    assert props.image == "debian-12" and props.machine_type == "n2-standard-2"
    assert props.external_ip and props.metadata == {} and props.labels == {}
    assert props.account_scopes == []
    assert parse_properties({"Image": IMAGE}).machine_type == "e2-medium"
    with_account = parse_properties({"Image": IMAGE, "ServiceAccount": "default"})
    assert with_account.account_scopes == ["https://www.googleapis.com/auth/cloud-platform"]
    scoped = parse_properties({"Image": IMAGE, "Scopes": ["compute", "https://x.example/s"]})
    assert scoped.account_scopes == [
        "https://www.googleapis.com/auth/compute",
        "https://x.example/s",
    ]


def test_a_group_elsewhere_is_refused_before_any_call() -> None:
    plugin = GcpInstancePlugin(project="my-project", zone="europe-west1-b", environ={})
    plugin.validate({"Image": IMAGE, "Zone": "europe-west1-b", "Project": "my-project"})
    with pytest.raises(ValidationError) as caught:
        plugin.validate({"Image": IMAGE, "Zone": "us-east1-c", "Project": "other-project"})
    assert [p for p, _ in caught.value.problems] == ["Project", "Zone"]
    assert "works in zone 'europe-west1-b', not 'us-east1-c'" in caught.value.problems[1][1]
    assert "Options.Zone" in caught.value.problems[1][1]


def test_without_a_zone_the_plugin_says_how_to_set_one() -> None:
    plugin = GcpInstancePlugin(project="my-project", environ={})
    with pytest.raises(PluginError, match=r"Options\.Zone or \$CLOUDSDK_COMPUTE_ZONE"):
        plugin.validate({"Image": IMAGE})


# -- options and environment -----------------------------------------------------------------


def test_options_come_from_the_cluster_file(tmp_path: Path) -> None:
    plugin = create_plugin(
        "gcp",
        {"project": "my-project", "Zone": "us-central1-a", "OperationTimeout": "2m"},
        tmp_path,
    )
    assert isinstance(plugin, GcpInstancePlugin)
    assert plugin.compute.location() == Location("my-project", "us-central1-a")
    assert plugin.compute.operation_timeout == 120.0
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("options", "path"),
    [
        ({"Zone": "central"}, "Zone"),
        ({"Project": "x"}, "Project"),
        ({"Endpoint": "127.0.0.1:8400"}, "Endpoint"),
        ({"OperationTimeout": "forever"}, "OperationTimeout"),
        ({"OperationTimeout": "0s"}, "OperationTimeout"),
        ({"Region": "us-central1"}, "Region"),
    ],
)
def test_bad_options_are_refused_with_their_path(
    tmp_path: Path, options: dict[str, Any], path: str
) -> None:
    with pytest.raises(SpecError) as caught:
        create_plugin("gcp", options, tmp_path)
    assert [p for p, _ in caught.value.problems] == [path]


def test_the_environment_names_project_and_zone_as_gcloud_does() -> None:
    env = {"CLOUDSDK_CORE_PROJECT": "core-project", "CLOUDSDK_COMPUTE_ZONE": "asia-east1-b"}
    assert from_environment(env) == ("core-project", "asia-east1-b")
    env["GOOGLE_CLOUD_PROJECT"] = "cloud-project"
    assert from_environment(env) == ("cloud-project", "asia-east1-b")
    assert from_environment({}) == (None, None)
    with pytest.raises(ValueError, match=r"\$CLOUDSDK_COMPUTE_ZONE must be a zone name"):
        from_environment({"CLOUDSDK_COMPUTE_ZONE": "everywhere"})
    plugin = GcpInstancePlugin(zone="us-west1-a", environ=env)
    assert plugin.compute.location() == Location("cloud-project", "us-west1-a")


def test_a_missing_client_library_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(sys.modules):
        if name.startswith("infrakit.plugins.instance.gcp.") and name.rsplit(".", 1)[1] in (
            "plugin",
            "compute",
            "resource",
        ):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "google.cloud.compute_v1", None)  # as if not installed
    monkeypatch.delattr(sys.modules["google.cloud"], "compute_v1")
    with pytest.raises(ValueError, match=r"pip install 'infrakit\[gcp\]'"):
        create_plugin("gcp", {"Zone": "us-central1-a"}, tmp_path)


# -- tags as labels --------------------------------------------------------------------------


def test_infrakit_tags_read_well_as_labels() -> None:
    assert encode("infrakit.group") == "infrakit_2egroup"
    assert encode("infrakit.logical_id") == "infrakit_2elogical_5fid"
    assert encode("Workers") == "_57orkers"
    assert tag_label(TAG_CONFIG_HASH, "0a" * 20) == ("infrakit_2econfig_2ehash", "0a" * 20)
    assert tag_label("9lives", "x") is None  # a label key starts with a letter
    assert tag_label("k", "v" * 64) is None
    assert tag_labels({TAG_GROUP: "web", "k": "v" * 64}) == {"infrakit_2egroup": "web"}


@given(st.text())
def test_the_encoding_round_trips_in_label_characters(text: str) -> None:
    encoded = encode(text)
    assert decode(encoded) == text
    assert set(encoded) <= set("abcdefghijklmnopqrstuvwxyz0123456789_-")


@given(st.dictionaries(st.text(max_size=30), st.text(max_size=40), max_size=8))
def test_tags_become_valid_labels_and_round_trip_through_metadata(tags: dict[str, str]) -> None:
    for key, value in tag_labels(tags).items():
        assert valid_label_key(key) and valid_label_value(value)
        assert tags[decode(key)] == decode(value)
    assert tags_of({METADATA_TAGS: tags_metadata(tags)}) == tags


@pytest.mark.parametrize("text", ["_", "_4", "_zz", "A", "a.b", "_c3"])
def test_what_encode_cannot_make_does_not_decode(text: str) -> None:
    with pytest.raises(ValueError, match="not an encoded label"):
        decode(text)


def test_metadata_that_is_not_ours_has_no_tags() -> None:
    assert tags_of({}) == {}
    assert tags_of({METADATA_TAGS: "not json"}) == {}
    assert tags_of({METADATA_TAGS: '["a"]'}) == {}
    assert tags_of({METADATA_TAGS: '{"a": 1}'}) == {}


def test_the_list_filter_uses_the_tags_that_are_labels() -> None:
    wanted = {TAG_GROUP: "web", "long": "x" * 70}
    assert label_filter(wanted) == '(labels.infrakit_2egroup = "web")'
    assert label_filter({}) == ""
    both = label_filter({TAG_GROUP: "web", "role": "db"})
    assert both == '(labels.infrakit_2egroup = "web") AND (labels.role = "db")'


def test_relabelling_never_leaves_a_stale_label() -> None:
    labels = {"team": "infra", "role": "db"}
    assert relabel(labels, {"role": "web"}) == {"team": "infra", "role": "web"}
    assert relabel(labels, {"role": "W" * 63}) == {"team": "infra"}  # too long once encoded


# -- names -----------------------------------------------------------------------------------


def test_names() -> None:
    assert instance_name("db-1", None, "dbs") == Naming("db-1", reused=True)
    assert instance_name("10.0.0.5", "db", "dbs") == Naming("db-10-0-0-5", "10.0.0.5", True)
    assert instance_name("10.0.0.5", None, "DBs") == Naming("dbs-10-0-0-5", "10.0.0.5", True)
    sized = instance_name(None, None, "Workers_EU")
    assert sized.name.startswith("workers-eu-") and not sized.reused
    assert instance_name(None, "web", "g").name.startswith("web-")
    assert instance_name(None, None, None).name.startswith("instance-")
    assert instance_name("Zoo_1", None, "z").name.startswith("zoo-1-")
    assert instance_name("1", None, "z").name.startswith("i-1-")
    assert instance_name(None, None, "42").name.startswith("i-42-")
    assert instance_name(None, None, "---").name.startswith("instance-")
    assert instance_name(None, None, "g").name != instance_name(None, None, "g").name


@given(st.one_of(st.none(), st.text()), st.one_of(st.none(), st.text()))
def test_a_derived_name_is_always_valid(logical_id: str | None, group: str | None) -> None:
    naming = instance_name(logical_id, None, group)
    assert valid_name(naming.name), naming
    assert naming.reused == (naming.name == logical_id or naming.network_ip is not None)


@given(st.from_regex(r"[a-z](?:[-a-z0-9]{0,45}[a-z0-9])?", fullmatch=True))
def test_any_valid_prefix_makes_valid_names(prefix: str) -> None:
    assert parse_properties({"Image": IMAGE, "NamePrefix": prefix}).name_prefix == prefix
    assert valid_name(instance_name(None, prefix, None).name)
    assert valid_name(instance_name("255.255.255.255", prefix, None).name)


# -- the instance resource -------------------------------------------------------------------


def resource(properties: dict[str, Any], **spec: Any) -> dict[str, Any]:
    props = parse_properties(properties)
    made = instance_resource(props, Spec(properties=properties, **spec), Naming("vm-1"), HERE)
    return dict(type(made).to_dict(made))


def test_init_tags_and_labels_go_into_the_instance() -> None:
    made = resource(
        {"Image": IMAGE, "Metadata": {"startup-script": "old", "k": "v"}, "Labels": {"team": "a"}},
        tags={TAG_GROUP: "Web", TAG_LOGICAL_ID: "web-0", "team": "b"},
        init="echo hello",
        logical_id="web-0",
    )
    items = {i["key"]: i["value"] for i in made["metadata"]["items"]}
    assert items["startup-script"] == "echo hello" and items["k"] == "v"
    assert tags_of(items) == {TAG_GROUP: "Web", TAG_LOGICAL_ID: "web-0", "team": "b"}
    assert items["infrakit-logical-id"] == "web-0"
    assert made["labels"] == {
        "team": "b",
        "infrakit_2egroup": "_57eb",
        "infrakit_2elogical_5fid": "web-0",
    }
    without_init = resource({"Image": IMAGE, "Metadata": {"startup-script": "mine"}})
    items = {i["key"]: i["value"] for i in without_init["metadata"]["items"]}
    assert items["startup-script"] == "mine" and "infrakit-logical-id" not in items


def test_short_names_become_paths_in_the_plugins_zone() -> None:
    made = resource(
        {
            "MachineType": "n2-standard-4",
            "Disks": [
                {"Image": "my-image", "SizeGb": 20, "Type": "pd-ssd"},
                {"SizeGb": 100},
                {"Source": "data-1"},
            ],
            "Network": "vpc",
            "Subnetwork": "sub-a",
            "ExternalIP": False,
            "NetworkTags": ["http-server"],
        }
    )
    assert made["machine_type"] == "zones/europe-west1-b/machineTypes/n2-standard-4"
    boot, blank, data = made["disks"]
    assert boot["boot"] and boot["auto_delete"]
    assert boot["initialize_params"]["source_image"] == "projects/my-project/global/images/my-image"
    assert boot["initialize_params"]["disk_type"] == "zones/europe-west1-b/diskTypes/pd-ssd"
    assert boot["initialize_params"]["disk_size_gb"] == "20"
    assert not blank["boot"] and blank["auto_delete"]
    assert data["source"] == "zones/europe-west1-b/disks/data-1" and not data["auto_delete"]
    (interface,) = made["network_interfaces"]
    assert interface["network"] == "global/networks/vpc"
    assert interface["subnetwork"] == "regions/europe-west1/subnetworks/sub-a"
    assert interface["access_configs"] == []
    assert made["tags"]["items"] == ["http-server"]
    assert made["service_accounts"] == []


def test_scheduling_and_service_account() -> None:
    made = resource({"Image": IMAGE, "Scheduling": {"Preemptible": True}, "Scopes": ["compute"]})
    assert made["scheduling"]["preemptible"]
    assert made["scheduling"]["on_host_maintenance"] == "TERMINATE"
    assert made["scheduling"]["automatic_restart"] is False
    (account,) = made["service_accounts"]
    assert account == {"email": "default", "scopes": ["https://www.googleapis.com/auth/compute"]}
    plain = resource({"Image": IMAGE})
    assert plain["scheduling"]["on_host_maintenance"] == "MIGRATE"
    assert plain["scheduling"]["automatic_restart"] is True
    (interface,) = plain["network_interfaces"]
    assert interface["access_configs"][0]["type_"] == "ONE_TO_ONE_NAT"


def test_an_ip_logical_id_is_the_internal_ip() -> None:
    props = parse_properties({"Image": IMAGE})
    naming = instance_name("10.1.2.3", "db", None)
    made = instance_resource(props, Spec(logical_id="10.1.2.3"), naming, HERE)
    assert made.name == "db-10-1-2-3"
    assert made.network_interfaces[0].network_i_p == "10.1.2.3"


def test_too_many_labels_is_a_clear_error() -> None:
    labels = {f"l{i}": "x" for i in range(63)}
    with pytest.raises(PluginError, match="would have 65 labels"):
        resource({"Image": IMAGE, "Labels": labels}, tags={"a": "1", "b": "2"})


# -- operations ------------------------------------------------------------------------------


class _Operation(ExtendedOperation):
    """A Compute operation as google-cloud-compute wraps one (its errors in http_* fields)."""

    @property
    def error_message(self) -> str:
        return str(self._extended_operation.http_error_message)

    @property
    def error_code(self) -> int:
        return int(self._extended_operation.http_error_status_code)


def operation(**fields: Any) -> _Operation:
    current = compute_v1.Operation(name="operation-1", **fields)
    return _Operation.make(lambda: current, lambda: None, current)  # type: ignore[no-any-return]


def test_a_failed_operation_says_what_gcp_said() -> None:
    compute = Compute(project="p-1234", zone="us-central1-a", endpoint=None, operation_timeout=5)
    failed = operation(
        status=compute_v1.Operation.Status.DONE,
        http_error_status_code=404,
        http_error_message="NOT FOUND",
        error=compute_v1.Error(
            errors=[compute_v1.Errors(message="The resource 'images/nope' was not found")]
        ),
    )
    with pytest.raises(PluginError) as caught, compute.errors("create instance vm-1"):
        compute._wait(failed, "create instance vm-1")
    assert str(caught.value) == (
        "Compute Engine refused to create instance vm-1: NOT FOUND: The resource"
        " 'images/nope' was not found (HTTP 404)"
    )


def test_an_operation_past_its_deadline_is_a_plugin_error() -> None:
    compute = Compute(project="p-1234", zone="us-central1-a", endpoint=None, operation_timeout=0.1)
    running = operation(status=compute_v1.Operation.Status.RUNNING)
    with pytest.raises(PluginError, match=r"did not delete instance vm-1 within 100ms"):
        compute._wait(running, "delete instance vm-1")


def test_without_credentials_the_plugin_says_how_to_get_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over https the plugin uses Google's default credentials; a credentials file that is not
    there fails at once (before any request) with words saying what to do."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    plugin = GcpInstancePlugin(
        project="my-project", zone="us-central1-a", endpoint="https://127.0.0.1:9", environ={}
    )
    with pytest.raises(PluginError) as caught:
        plugin.describe_instances({TAG_GROUP: "web"})
    assert str(caught.value).startswith("no usable Google credentials for Compute Engine:")
    assert "missing.json" in str(caught.value) and "GOOGLE_APPLICATION_CREDENTIALS" in str(
        caught.value
    )
