"""The EC2 instance plugin's properties: RunInstances' own parameters, PascalCase as in the EC2
API (keys in any letter case), checked before any call:

    {"ImageId": "ami-0abcdef1234567890",       required unless LaunchTemplate gives it
     "InstanceType": "t3.micro",
     "SubnetId": "subnet-...", "SecurityGroupIds": ["sg-..."], "SecurityGroups": ["default"],
     "KeyName": "ops", "PrivateIpAddress": "10.0.1.10",
     "BlockDeviceMappings": [{"DeviceName": "/dev/xvda",
                              "Ebs": {"VolumeSize": 20, "VolumeType": "gp3"}}],
     "IamInstanceProfile": {"Name": "worker"} or {"Arn": "arn:aws:iam::...:instance-profile/w"},
     "Placement": {"AvailabilityZone": "us-east-1a"},
     "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": "subnet-...", "Groups": ["sg-..."]}],
     "Monitoring": {"Enabled": true}, "EbsOptimized": true,
     "MetadataOptions": {"HttpTokens": "required"},
     "CreditSpecification": {"CpuCredits": "unlimited"},
     "InstanceInitiatedShutdownBehavior": "terminate",
     "LaunchTemplate": {"LaunchTemplateName": "workers", "Version": "$Latest"},
     "Tags": {"team": "ops"}}                   extra EC2 tags (the spec's tags win)

Go InfraKit's infrakit.aws shape, `{"Tags": {...}, "RunInstancesInput": {...}}`, is read too.
What the plugin decides itself is refused by name: MinCount and MaxCount (one instance per
provision), UserData (the flavor's Init), TagSpecifications (use `Tags`), ClientToken (each
provision has its own), DryRun, DisableApiTermination, and Region or Endpoint (plugin options).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidatorFunctionWrapHandler, model_validator
from pydantic import ValidationError as PydanticError

from infrakit.jsonmodel import Faults, problems, shown
from infrakit.plugins._props import PropertiesModel, StringMap, Text, parse

MAX_TAGS = 50  # EC2's limit per resource
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
GO_SHAPE_KEY = "RunInstancesInput"

# RunInstances parameters the plugin sets itself, or that have no place in a group: refused,
# saying why (they are no fields, so an unknown key's fault does not offer them).
_REFUSED = {
    "MinCount": "the plugin makes one instance per provision (MinCount = MaxCount = 1)",
    "MaxCount": "the plugin makes one instance per provision (MinCount = MaxCount = 1)",
    "UserData": "the flavor's Init is the instance's UserData; give it there",
    "TagSpecifications": "give extra EC2 tags as Tags (an object); the plugin tags the "
    "instance with them and the group's tags when it is made",
    "ClientToken": "the plugin gives each provision its own idempotency token",
    "DryRun": "not for a group; `infrakit validate` checks properties without making anything",
    "DisableApiTermination": "a group must be able to terminate its instances",
    "Region": "the region is a plugin option (Plugins[].Options.Region) or boto3's "
    "AWS_REGION, never a property",
    "Endpoint": "the endpoint is a plugin option (Plugins[].Options.Endpoint) or boto3's "
    "AWS_ENDPOINT_URL_EC2, never a property",
    "AttachVolumeInputs": "attaching existing volumes is not supported; use "
    "BlockDeviceMappings to make volumes with the instance",
}
_REFUSED_KEYS = {key.lower(): key for key in _REFUSED}


class _RefusesKeys(PropertiesModel):
    """A model that refuses `_REFUSED`'s keys (in any letter case), each with its reason, along
    with every other fault of the document."""

    @model_validator(mode="wrap")
    @classmethod
    def _refuse(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if not isinstance(data, Mapping):
            return handler(data)
        refused = [key for key in data if str(key).lower() in _REFUSED_KEYS]
        if not refused:
            return handler(data)
        faults = Faults()
        for key in refused:
            faults.add(f"not accepted: {_REFUSED[_REFUSED_KEYS[str(key).lower()]]}", str(key))
        try:
            handler({key: value for key, value in data.items() if key not in refused})
        except PydanticError as error:
            items = error.errors(include_url=False)
            for item, (_, reason) in zip(items, problems(error), strict=False):
                faults.add(reason, *item["loc"], value=item["input"])
        faults.check()
        return None  # not reached: faults.check() raised


def _resource_id(prefix: str) -> AfterValidator:
    pattern = re.compile(rf"{prefix}-[0-9a-f]{{8,17}}\Z")

    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(
                f"must be an ID such as '{prefix}-0123456789abcdef0', got {shown(value)}"
            )
        return value

    return AfterValidator(check)


def _image(value: str) -> str:
    if value.startswith("resolve:ssm:") and len(value) > len("resolve:ssm:"):
        return value
    if not re.match(r"ami-[0-9a-f]{8,17}\Z", value):
        raise ValueError(
            "must be an AMI ID such as 'ami-0123456789abcdef0' (or 'resolve:ssm:<parameter>'),"
            f" got {shown(value)}"
        )
    return value


def _instance_type(value: str) -> str:
    if not re.match(r"[a-z0-9-]+\.[a-z0-9-]+\Z", value):
        raise ValueError(f"must be an instance type such as 't3.micro', got {shown(value)}")
    return value


def _ipv4(value: str) -> str:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(
            f"must be an IPv4 address such as '10.0.1.10', got {shown(value)}"
        ) from None
    return value


def _arn(value: str) -> str:
    if not value.startswith("arn:"):
        raise ValueError(f"must be an ARN (arn:aws:iam::...), got {shown(value)}")
    return value


def _tag_names(tags: dict[str, str]) -> dict[str, str]:
    faults = Faults()
    if len(tags) > MAX_TAGS:
        faults.add(f"must have at most {MAX_TAGS} tags (EC2's limit), got {len(tags)}")
    for key, value in tags.items():
        fault = tag_fault(key, value)
        if fault:
            faults.add(fault, key)
    faults.check()
    return tags


def tag_fault(key: str, value: str) -> str:
    """What EC2 would refuse in the tag `key`=`value`, or "" if nothing."""
    if not key or len(key) > MAX_TAG_KEY:
        return f"a tag key must be 1 to {MAX_TAG_KEY} characters"
    if key.lower().startswith("aws:"):
        return "tag keys starting with 'aws:' are reserved for AWS"
    if len(value) > MAX_TAG_VALUE:
        return f"a tag value must be at most {MAX_TAG_VALUE} characters"
    return ""


AmiId = Annotated[Text, AfterValidator(_image)]
SubnetId = Annotated[Text, _resource_id("subnet")]
GroupId = Annotated[Text, _resource_id("sg")]
IPv4 = Annotated[Text, AfterValidator(_ipv4)]
TagMap = Annotated[StringMap, AfterValidator(_tag_names)]


class EbsOptions(PropertiesModel):
    """`BlockDeviceMappings[i].Ebs`: the EBS volume made with the instance."""

    delete_on_termination: bool | None = Field(default=None, alias="DeleteOnTermination")
    encrypted: bool | None = Field(default=None, alias="Encrypted")
    iops: Annotated[int, Field(ge=100, le=256000)] | None = Field(default=None, alias="Iops")
    kms_key_id: Text | None = Field(default=None, alias="KmsKeyId")
    snapshot_id: Annotated[Text, _resource_id("snap")] | None = Field(
        default=None, alias="SnapshotId"
    )
    throughput: Annotated[int, Field(ge=125, le=2000)] | None = Field(
        default=None, alias="Throughput"
    )
    volume_size: Annotated[int, Field(ge=1, le=65536)] | None = Field(
        default=None, alias="VolumeSize"
    )
    volume_type: Literal["standard", "gp2", "gp3", "io1", "io2", "st1", "sc1"] | None = Field(
        default=None, alias="VolumeType"
    )

    @model_validator(mode="after")
    def _fits_type(self) -> EbsOptions:
        faults = Faults()
        if self.volume_type in ("io1", "io2") and self.iops is None:
            faults.add(f"is required for a {self.volume_type} volume", "Iops")
        if self.iops is not None and self.volume_type not in ("io1", "io2", "gp3"):
            faults.add("is only for io1, io2 and gp3 volumes (set VolumeType)", "Iops")
        if self.throughput is not None and self.volume_type != "gp3":
            faults.add("is only for gp3 volumes (set VolumeType)", "Throughput")
        faults.check()
        return self


class BlockDeviceMapping(PropertiesModel):
    """One entry of `BlockDeviceMappings`: an EBS volume, an instance store, or `NoDevice`."""

    device_name: Text = Field(alias="DeviceName")
    ebs: EbsOptions | None = Field(default=None, alias="Ebs")
    virtual_name: Annotated[str, Field(pattern=r"^ephemeral\d{1,2}$")] | None = Field(
        default=None, alias="VirtualName"
    )
    no_device: str | None = Field(default=None, alias="NoDevice")

    @model_validator(mode="after")
    def _one_kind(self) -> BlockDeviceMapping:
        given = [
            key
            for key, value in (
                ("Ebs", self.ebs),
                ("VirtualName", self.virtual_name),
                ("NoDevice", self.no_device),
            )
            if value is not None
        ]
        if len(given) > 1:
            faults = Faults()
            faults.add(f"give only one of {', '.join(given)}", given[1])
            faults.check()
        return self


class IamInstanceProfile(PropertiesModel):
    """`IamInstanceProfile`: the instance profile by `Arn` or by `Name`."""

    arn: Annotated[Text, AfterValidator(_arn)] | None = Field(default=None, alias="Arn")
    name: Text | None = Field(default=None, alias="Name")

    @model_validator(mode="after")
    def _one_of(self) -> IamInstanceProfile:
        if (self.arn is None) == (self.name is None):
            raise ValueError("give exactly one of Arn or Name")
        return self


class Placement(PropertiesModel):
    """`Placement`: where the instance runs."""

    availability_zone: Text | None = Field(default=None, alias="AvailabilityZone")
    group_name: Text | None = Field(default=None, alias="GroupName")
    group_id: Annotated[Text, _resource_id("pg")] | None = Field(default=None, alias="GroupId")
    partition_number: Annotated[int, Field(ge=1)] | None = Field(
        default=None, alias="PartitionNumber"
    )
    tenancy: Literal["default", "dedicated", "host"] | None = Field(default=None, alias="Tenancy")
    host_id: Annotated[Text, _resource_id("h")] | None = Field(default=None, alias="HostId")
    affinity: Literal["default", "host"] | None = Field(default=None, alias="Affinity")


class NetworkInterface(PropertiesModel):
    """One entry of `NetworkInterfaces`: a new interface made with the instance."""

    device_index: Annotated[int, Field(ge=0)] = Field(alias="DeviceIndex")
    subnet_id: SubnetId | None = Field(default=None, alias="SubnetId")
    groups: list[GroupId] | None = Field(default=None, alias="Groups")
    associate_public_ip_address: bool | None = Field(default=None, alias="AssociatePublicIpAddress")
    delete_on_termination: bool | None = Field(default=None, alias="DeleteOnTermination")
    description: str | None = Field(default=None, alias="Description")
    private_ip_address: IPv4 | None = Field(default=None, alias="PrivateIpAddress")


class Monitoring(PropertiesModel):
    """`Monitoring`: detailed CloudWatch monitoring."""

    enabled: bool = Field(alias="Enabled")


class MetadataOptions(PropertiesModel):
    """`MetadataOptions`: the instance metadata service (`HttpTokens: required` is IMDSv2)."""

    http_tokens: Literal["optional", "required"] | None = Field(default=None, alias="HttpTokens")
    http_put_response_hop_limit: Annotated[int, Field(ge=1, le=64)] | None = Field(
        default=None, alias="HttpPutResponseHopLimit"
    )
    http_endpoint: Literal["enabled", "disabled"] | None = Field(default=None, alias="HttpEndpoint")
    instance_metadata_tags: Literal["enabled", "disabled"] | None = Field(
        default=None, alias="InstanceMetadataTags"
    )


class CreditSpecification(PropertiesModel):
    """`CreditSpecification`: CPU credits of burstable (T) instances."""

    cpu_credits: Literal["standard", "unlimited"] = Field(alias="CpuCredits")


class LaunchTemplate(PropertiesModel):
    """`LaunchTemplate`: a launch template by ID or name, and its version."""

    launch_template_id: Annotated[Text, _resource_id("lt")] | None = Field(
        default=None, alias="LaunchTemplateId"
    )
    launch_template_name: Text | None = Field(default=None, alias="LaunchTemplateName")
    version: Text | None = Field(default=None, alias="Version")

    @model_validator(mode="after")
    def _one_of(self) -> LaunchTemplate:
        if (self.launch_template_id is None) == (self.launch_template_name is None):
            raise ValueError("give exactly one of LaunchTemplateId or LaunchTemplateName")
        return self


# Top-level keys EC2 refuses beside NetworkInterfaces (they belong in its first entry).
_NOT_WITH_INTERFACES = ("SubnetId", "SecurityGroupIds", "SecurityGroups", "PrivateIpAddress")


class Ec2Properties(_RefusesKeys):
    """The instance properties this plugin understands (see the module's doc)."""

    image_id: AmiId | None = Field(default=None, alias="ImageId")
    instance_type: Annotated[Text, AfterValidator(_instance_type)] | None = Field(
        default=None, alias="InstanceType"
    )
    subnet_id: SubnetId | None = Field(default=None, alias="SubnetId")
    security_group_ids: list[GroupId] | None = Field(default=None, alias="SecurityGroupIds")
    security_groups: list[Text] | None = Field(default=None, alias="SecurityGroups")
    key_name: Annotated[Text, Field(max_length=255)] | None = Field(default=None, alias="KeyName")
    private_ip_address: IPv4 | None = Field(default=None, alias="PrivateIpAddress")
    block_device_mappings: list[BlockDeviceMapping] | None = Field(
        default=None, alias="BlockDeviceMappings"
    )
    iam_instance_profile: IamInstanceProfile | None = Field(
        default=None, alias="IamInstanceProfile"
    )
    placement: Placement | None = Field(default=None, alias="Placement")
    network_interfaces: list[NetworkInterface] | None = Field(
        default=None, alias="NetworkInterfaces"
    )
    monitoring: Monitoring | None = Field(default=None, alias="Monitoring")
    ebs_optimized: bool | None = Field(default=None, alias="EbsOptimized")
    metadata_options: MetadataOptions | None = Field(default=None, alias="MetadataOptions")
    credit_specification: CreditSpecification | None = Field(
        default=None, alias="CreditSpecification"
    )
    instance_initiated_shutdown_behavior: Literal["stop", "terminate"] | None = Field(
        default=None, alias="InstanceInitiatedShutdownBehavior"
    )
    launch_template: LaunchTemplate | None = Field(default=None, alias="LaunchTemplate")
    tags: TagMap = Field(default_factory=dict, alias="Tags")

    @model_validator(mode="after")
    def _consistent(self) -> Ec2Properties:
        faults = Faults()
        if self.image_id is None and self.launch_template is None:
            faults.add("is required (the AMI to run), unless a LaunchTemplate gives it", "ImageId")
        if self.network_interfaces:
            given = self.model_dump(by_alias=True, exclude_none=True)
            for key in _NOT_WITH_INTERFACES:
                if key in given:
                    faults.add(
                        "EC2 refuses it beside NetworkInterfaces: give it in the interface",
                        key,
                    )
        faults.check()
        return self

    def run_instances_kwargs(self) -> dict[str, Any]:
        """These properties as `run_instances` keyword arguments (without tags or counts)."""
        return self.model_dump(by_alias=True, exclude_none=True, exclude={"tags"})


class GoShape(_RefusesKeys):
    """Go InfraKit's infrakit.aws properties: `{"Tags", "RunInstancesInput"}`."""

    tags: TagMap = Field(default_factory=dict, alias="Tags")
    run_instances_input: Ec2Properties = Field(alias="RunInstancesInput")


def is_go_shape(properties: Any) -> bool:
    """Whether `properties` are in Go InfraKit's shape (they have a `RunInstancesInput`)."""
    return isinstance(properties, Mapping) and any(
        str(key).lower() == GO_SHAPE_KEY.lower() for key in properties
    )


def image_path(properties: Any) -> str:
    """The JSON path of `ImageId` in `properties` (in either shape)."""
    return f"{GO_SHAPE_KEY}.ImageId" if is_go_shape(properties) else "ImageId"


def parse_options(properties: Any) -> Ec2Properties:
    """Check instance properties (either shape) and return them parsed; every fault raises one
    `ValidationError`, each with its JSON path."""
    if is_go_shape(properties):
        go = parse(GoShape, properties)
        inner = go.run_instances_input
        return inner.model_copy(update={"tags": {**inner.tags, **go.tags}})
    return parse(Ec2Properties, properties)
