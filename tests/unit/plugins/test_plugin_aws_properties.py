"""The EC2 plugin's properties and options, checked before any call: every fault with its JSON
path, Go infrakit.aws's shape read too, RunInstances' own parameters the plugin sets refused
with the reason, and all of it found with EC2 out of reach (a closed port). Also the region
rules and the memory of new instances EC2's listing may not show yet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from support import free_port

from infrakit.plugins import create_plugin, offline
from infrakit.plugins.instance.aws import AwsInstancePlugin, parse_options
from infrakit.plugins.instance.aws.errors import plugin_error
from infrakit.plugins.instance.aws.recent import RecentlyMade
from infrakit.spec import SpecError
from infrakit.spi import Description, PluginError, Spec
from infrakit.spi.errors import ValidationError
from infrakit.spi.instance import TAG_GROUP

AMI = "ami-0123456789abcdef0"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials and no AWS setting of the machine's user (region, profile, files)."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


@pytest.fixture
def offline_plugin() -> Any:
    """A plugin whose EC2 endpoint is a closed port: any API call fails at once."""
    plugin = AwsInstancePlugin(
        region="us-east-1",
        endpoint=f"http://127.0.0.1:{free_port()}",
        max_attempts=1,
        connect_timeout=1,
    )
    yield plugin
    plugin.close()


@pytest.mark.parametrize(
    ("properties", "path"),
    [
        ({}, "ImageId"),
        ({"ImageId": 3}, "ImageId"),
        ({"ImageId": "ubuntu"}, "ImageId"),
        ({"ImageId": AMI, "InstanceType": "huge"}, "InstanceType"),
        ({"ImageId": AMI, "SubnetId": "net-1"}, "SubnetId"),
        ({"ImageId": AMI, "SecurityGroupIds": "sg-12345678"}, "SecurityGroupIds"),
        ({"ImageId": AMI, "SecurityGroupIds": ["sg-12345678", "web"]}, "SecurityGroupIds[1]"),
        ({"ImageId": AMI, "PrivateIpAddress": "10.0.0.256"}, "PrivateIpAddress"),
        ({"ImageId": AMI, "BlockDeviceMappings": {}}, "BlockDeviceMappings"),
        ({"ImageId": AMI, "BlockDeviceMappings": [{}]}, "BlockDeviceMappings[0].DeviceName"),
        (
            {"ImageId": AMI, "BlockDeviceMappings": [{"DeviceName": "/dev/sdb", "Ebs": []}]},
            "BlockDeviceMappings[0].Ebs",
        ),
        (
            {
                "ImageId": AMI,
                "BlockDeviceMappings": [{"DeviceName": "/dev/sdb", "Ebs": {"VolumeSize": "8"}}],
            },
            "BlockDeviceMappings[0].Ebs.VolumeSize",
        ),
        (
            {
                "ImageId": AMI,
                "BlockDeviceMappings": [{"DeviceName": "/dev/sdb", "Ebs": {"VolumeSize": 0}}],
            },
            "BlockDeviceMappings[0].Ebs.VolumeSize",
        ),
        (
            {
                "ImageId": AMI,
                "BlockDeviceMappings": [{"DeviceName": "/dev/sdb", "Ebs": {"VolumeType": "ssd"}}],
            },
            "BlockDeviceMappings[0].Ebs.VolumeType",
        ),
        (
            {
                "ImageId": AMI,
                "BlockDeviceMappings": [{"DeviceName": "/dev/sdb", "Ebs": {"VolumeType": "io2"}}],
            },
            "BlockDeviceMappings[0].Ebs.Iops",
        ),
        (
            {
                "ImageId": AMI,
                "BlockDeviceMappings": [
                    {"DeviceName": "/dev/sdb", "Ebs": {"VolumeType": "gp2", "Throughput": 200}}
                ],
            },
            "BlockDeviceMappings[0].Ebs.Throughput",
        ),
        (
            {
                "ImageId": AMI,
                "BlockDeviceMappings": [
                    {"DeviceName": "/dev/sdb", "Ebs": {"VolumeSize": 8}, "NoDevice": ""}
                ],
            },
            "BlockDeviceMappings[0].NoDevice",
        ),
        (
            {"ImageId": AMI, "BlockDeviceMappings": [{"DeviceName": "/dev/sdb", "Size": 8}]},
            "BlockDeviceMappings[0].Size",
        ),
        ({"ImageId": AMI, "IamInstanceProfile": {}}, "IamInstanceProfile"),
        ({"ImageId": AMI, "IamInstanceProfile": {"Arn": "role/x"}}, "IamInstanceProfile.Arn"),
        ({"ImageId": AMI, "Placement": {"Tenancy": "shared"}}, "Placement.Tenancy"),
        (
            {"ImageId": AMI, "NetworkInterfaces": [{"SubnetId": "x"}]},
            "NetworkInterfaces[0].DeviceIndex",
        ),
        (
            {
                "ImageId": AMI,
                "SubnetId": "subnet-12345678",
                "NetworkInterfaces": [{"DeviceIndex": 0}],
            },
            "SubnetId",
        ),
        ({"ImageId": AMI, "Monitoring": {"Enabled": "yes"}}, "Monitoring.Enabled"),
        ({"ImageId": AMI, "MetadataOptions": {"HttpTokens": "v2"}}, "MetadataOptions.HttpTokens"),
        ({"ImageId": AMI, "EbsOptimized": 1}, "EbsOptimized"),
        ({"ImageId": AMI, "LaunchTemplate": {"Version": "1"}}, "LaunchTemplate"),
        ({"ImageId": AMI, "Tags": {"aws:owner": "me"}}, "Tags.aws:owner"),
        ({"ImageId": AMI, "Tags": {"k": 1}}, "Tags.k"),
        ({"ImageId": AMI, "Tags": {"k": "v" * 257}}, "Tags.k"),
        ({"ImageId": AMI, "Colour": "red"}, "Colour"),
        ({"ImageId": AMI, "UserData": "echo hi"}, "UserData"),
        ({"ImageId": AMI, "MinCount": 2}, "MinCount"),
        ({"ImageId": AMI, "maxcount": 2}, "maxcount"),
        ({"ImageId": AMI, "TagSpecifications": []}, "TagSpecifications"),
        ({"ImageId": AMI, "ClientToken": "abc"}, "ClientToken"),
        ({"ImageId": AMI, "DisableApiTermination": True}, "DisableApiTermination"),
        ({"ImageId": AMI, "Region": "us-east-1"}, "Region"),
        ({"ImageId": AMI, "Endpoint": "http://127.0.0.1:5000"}, "Endpoint"),
        ({"RunInstancesInput": {"ImageId": "x"}}, "RunInstancesInput.ImageId"),
        ({"RunInstancesInput": {"ImageId": AMI}, "AttachVolumeInputs": []}, "AttachVolumeInputs"),
        ({"RunInstancesInput": {"ImageId": AMI}, "Tags": []}, "Tags"),
        ([], ""),
    ],
)
def test_validation_errors_name_the_path_before_any_call(
    offline_plugin: AwsInstancePlugin, properties: Any, path: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        offline_plugin.validate(properties)
    assert path in {p for p, _ in caught.value.problems}, caught.value.problems
    spec = Spec(properties=properties, tags={TAG_GROUP: "g"})
    with pytest.raises(ValidationError) as again:
        offline_plugin.provision(spec)
    assert again.value.problems == caught.value.problems
    # The same faults, offline (`infrakit validate`), without any plugin.
    assert offline.check("aws", properties).problems == caught.value.problems


def test_every_fault_is_reported_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_options(
            {
                "ImageId": "nope",
                "MinCount": 3,
                "Colour": "red",
                "Placement": {"Tenancy": "shared"},
                "Tags": {"aws:x": "y"},
            }
        )
    paths = {path for path, _ in caught.value.problems}
    assert paths == {"ImageId", "MinCount", "Colour", "Placement.Tenancy", "Tags.aws:x"}
    reasons = dict(caught.value.problems)
    assert "one instance per provision" in reasons["MinCount"]
    assert "MinCount" not in reasons["Colour"]  # refused keys are not offered as known ones


def test_keys_in_any_case_and_go_infrakit_shape_read_alike() -> None:
    flat = parse_options(
        {
            "imageid": AMI,
            "INSTANCETYPE": "t3.micro",
            "blockdevicemappings": [{"devicename": "/dev/xvda", "ebs": {"volumesize": 20}}],
            "Tags": {"team": "ops"},
        }
    )
    go = parse_options(
        {
            "Tags": {"team": "ops"},
            "RunInstancesInput": {
                "ImageId": AMI,
                "InstanceType": "t3.micro",
                "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 20}}],
            },
        }
    )
    assert flat == go
    assert flat.run_instances_kwargs() == {
        "ImageId": AMI,
        "InstanceType": "t3.micro",
        "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 20}}],
    }
    assert flat.tags == {"team": "ops"}
    # A launch template may give the AMI.
    template = parse_options({"LaunchTemplate": {"LaunchTemplateName": "workers"}})
    assert template.run_instances_kwargs() == {"LaunchTemplate": {"LaunchTemplateName": "workers"}}


def test_a_too_long_init_or_a_bad_tag_is_refused_before_any_call(
    offline_plugin: AwsInstancePlugin,
) -> None:
    properties = {"ImageId": AMI}
    with pytest.raises(ValidationError) as caught:
        offline_plugin.provision(Spec(properties=properties, init="x" * (16 * 1024 + 1)))
    assert caught.value.path == "Init"
    assert "16 KiB" in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        offline_plugin.provision(Spec(properties=properties, tags={"aws:cloudformation": "x"}))
    assert caught.value.path == "Tags.aws:cloudformation"
    many = {f"tag{i}": "v" for i in range(49)}  # and a Name: 50 is EC2's most
    with pytest.raises(ValidationError, match="at most 50 tags"):
        offline_plugin.provision(Spec(properties=properties, tags=many, logical_id="a"))
    # Valid input does reach EC2: the port is really closed.
    with pytest.raises(PluginError, match=r"cannot reach EC2 at http://127\.0\.0\.1:"):
        offline_plugin.provision(Spec(properties=properties, init="x" * 16 * 1024))
    with pytest.raises(PluginError, match="cannot reach EC2"):
        offline_plugin.describe_instances({TAG_GROUP: "g"})
    with pytest.raises(PluginError, match="not an EC2 instance ID"):
        offline_plugin.destroy("../etc")


def test_region_and_endpoint_come_from_options_or_boto3s_chain(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="no AWS region") as caught:
        create_plugin("aws", {}, tmp_path)
    assert "Region" in str(caught.value) and "AWS_REGION" in str(caught.value)
    plugin = create_plugin(
        "aws", {"region": "eu-west-3", "Endpoint": "http://127.0.0.1:1"}, tmp_path
    )
    assert isinstance(plugin, AwsInstancePlugin)
    assert (plugin.region, plugin.endpoint) == ("eu-west-3", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    plugin = create_plugin("aws", {}, tmp_path)
    assert isinstance(plugin, AwsInstancePlugin) and plugin.region == "ap-south-1"
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:2")
    assert plugin.client().meta.endpoint_url == "http://127.0.0.1:2"
    plugin.close()
    # `infrakit plugin start aws --option MaxAttempts=3` gives strings.
    assert isinstance(create_plugin("aws", {"MaxAttempts": "3"}, tmp_path), AwsInstancePlugin)
    with pytest.raises(ValueError, match="profile 'nobody' is not in the AWS config files"):
        create_plugin("aws", {"Profile": "nobody"}, tmp_path)


@pytest.mark.parametrize(
    ("options", "path"),
    [
        ({"Region": "Virginia"}, "Region"),
        ({"Region": ""}, "Region"),
        ({"Endpoint": "127.0.0.1:5000"}, "Endpoint"),
        ({"MaxAttempts": 0}, "MaxAttempts"),
        ({"MaxAttempts": "many"}, "MaxAttempts"),
        ({"MaxAttempts": 2.5}, "MaxAttempts"),
        ({"Credentials": {"Key": "x"}}, "Credentials"),
    ],
)
def test_bad_plugin_options_are_refused_with_their_path(
    tmp_path: Path, options: dict[str, Any], path: str
) -> None:
    with pytest.raises(SpecError) as caught:
        create_plugin("aws", options, tmp_path)
    assert [p for p, _ in caught.value.problems] == [path]


def test_api_errors_are_worded_for_an_operator() -> None:
    def client_error(code: str, message: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": message}}, "RunInstances")

    said = str(plugin_error(client_error("InvalidAMIID.NotFound", "no ami"), "run", "E"))
    assert said.startswith("EC2 refused to run: no ami (InvalidAMIID.NotFound)")
    assert "not shared with this account" in said
    said = str(plugin_error(client_error("UnauthorizedOperation", "no"), "run", "E"))
    assert "IAM policy" in said
    said = str(plugin_error(client_error("InsufficientInstanceCapacity", "full"), "run", "E"))
    assert "another availability zone or instance type" in said
    said = str(plugin_error(client_error("InvalidSomething.NotFound", "gone"), "run", "E"))
    assert "does not exist in this region" in said
    said = str(plugin_error(client_error("Odd", "strange"), "run", "E"))
    assert said == "EC2 refused to run: strange (Odd)"


def test_new_instances_are_remembered_until_listed_or_their_window_ends() -> None:
    now = [0.0]
    recent = RecentlyMade(60.0, clock=lambda: now[0])
    mine = Description(id="i-00000001", tags={TAG_GROUP: "g", "k": "v"})
    other = Description(id="i-00000002", tags={TAG_GROUP: "h"})
    recent.add(mine)
    recent.add(other)
    assert recent.unlisted({TAG_GROUP: "g"}, listed=set()) == [mine]
    assert recent.unlisted({TAG_GROUP: "g", "k": "other"}, listed=set()) == []
    # Listed once: the listing shows it now.
    assert recent.unlisted({TAG_GROUP: "g"}, listed={"i-00000001"}) == []
    assert len(recent) == 1
    now[0] = 61.0
    assert recent.unlisted({TAG_GROUP: "h"}, listed=set()) == []
    assert len(recent) == 0
