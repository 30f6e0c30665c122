"""The EC2 instance plugin: each instance is an EC2 instance, made with RunInstances.

Its properties (RunInstances' parameters) are in `options.py`, its own options (region,
endpoint, profile, retries) in `settings.py`; credentials come only from boto3's chain.

- Tags are EC2 tags, given in RunInstances' TagSpecifications so an instance never exists
  untagged: the properties' `Tags`, then the spec's (which win). `Name` is the logical ID
  unless a tag names it. The logical ID is the `infrakit.logical_id` tag; when it is an IPv4
  address it is also the instance's private IP (as Go's infrakit.aws did), unless the
  properties give one.
- The Init is the UserData (boto3 encodes it in base64); EC2 takes at most 16 KiB.
- Describing is one DescribeInstances per page, filtered by EC2 on each tag and on the states
  `pending` and `running`, then checked again here. A stopping, stopped, shutting-down or
  terminated instance is gone. New instances that EC2's eventually consistent listing leaves
  out are asked about by ID for a while (`recent.py`), so a group never makes one twice.
- Each RunInstances carries its own ClientToken: boto3 may resend a call whose answer was
  lost, and EC2 then answers with the instance already made instead of making another.
- `destroy` terminates; an instance already gone is not an error. `sweep` terminates a group's
  stopped instances (stopped instances keep their volumes, and their cost).
- Throttling and transient failures are retried by botocore (standard mode, `max_attempts`,
  with backoff and jitter); what still fails is a `PluginError` saying what to do.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import threading
import uuid
from collections.abc import Collection, Iterator, Mapping
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound
from botocore.parsers import ResponseParserError

from infrakit.jsonmodel import json_path
from infrakit.plugins.instance.aws.errors import error_code, plugin_error
from infrakit.plugins.instance.aws.options import (
    Ec2Properties,
    image_path,
    parse_options,
    tag_fault,
)
from infrakit.plugins.instance.aws.recent import RecentlyMade
from infrakit.plugins.instance.aws.settings import DEFAULT_MAX_ATTEMPTS
from infrakit.spi.errors import PluginError, ValidationError
from infrakit.spi.instance import (
    TAG_GROUP,
    TAG_LOGICAL_ID,
    Description,
    InstanceID,
    InstancePlugin,
    Spec,
    Sweepable,
    tags_match,
)

log = logging.getLogger(__name__)

MAX_USER_DATA = 16 * 1024  # bytes, before base64: EC2's limit
LIVE_STATES = ("pending", "running")
STOPPED_STATES = ("stopping", "stopped")
NAME_TAG = "Name"
_ID_RE = re.compile(r"i-[0-9a-f]{8,17}\Z")
# Characters EC2 filter values read as wildcards or escapes: such tags are checked here only.
_WILDCARDS = frozenset("*?\\")
_CLIENT_POOL = 32  # concurrent calls (one per provisioning actor) before connections queue

NO_REGION = (
    "no AWS region for the aws instance plugin: set Region in the plugin's Options, or "
    "AWS_REGION (or AWS_DEFAULT_REGION), or a region in the AWS config profile"
)


class AwsInstancePlugin(InstancePlugin, Sweepable):
    """Instances as EC2 instances in one region (see the module's doc).

    `region`, `endpoint` and `profile` default to boto3's own chain (`AWS_REGION`,
    `AWS_ENDPOINT_URL_EC2`, `AWS_PROFILE`, the config files); a missing region is a
    `ValueError` here, at once. The EC2 client is made on first use. `page_size` is how many
    instances one DescribeInstances page holds (5 to 1000); `recent_window` is how long a new
    instance is looked for by ID when a listing leaves it out.
    """

    def __init__(
        self,
        *,
        region: str | None = None,
        endpoint: str | None = None,
        profile: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        page_size: int = 1000,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        recent_window: float = 60.0,
    ) -> None:
        if not 5 <= page_size <= 1000:
            raise ValueError(f"page_size must be 5 to 1000 (EC2's MaxResults), not {page_size}")
        try:
            self._session = boto3.session.Session(profile_name=profile, region_name=region)
        except ProfileNotFound:
            raise ValueError(f"AWS profile {profile!r} is not in the AWS config files") from None
        region = self._session.region_name
        if not region:
            raise ValueError(NO_REGION)
        self.region: str = region
        self._endpoint = endpoint
        self._page_size = page_size
        self._config = Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=_CLIENT_POOL,
        )
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._recent = RecentlyMade(recent_window)

    @property
    def endpoint(self) -> str:
        """The EC2 endpoint the plugin calls (or would call)."""
        client = self._client
        if client is not None:
            return str(client.meta.endpoint_url)
        return self._endpoint or f"EC2 in {self.region}"

    # -- the instance SPI ------------------------------------------------------------------

    def validate(self, properties: Any) -> None:
        """Check the properties' shape, then (read-only) that the AMI exists."""
        options = parse_options(properties)
        image = options.image_id
        if image is not None and image.startswith("ami-"):
            self._check_image(image, image_path(properties))

    def provision(self, spec: Spec) -> InstanceID:
        """Run one instance carrying the spec's tags, with the Init as its UserData."""
        options = parse_options(spec.properties)
        size = len(spec.init.encode())
        if size > MAX_USER_DATA:
            raise ValidationError(
                f"is {size} bytes; EC2 takes at most {MAX_USER_DATA} bytes (16 KiB) of user data",
                path="Init",
            )
        tags = _instance_tags(options, spec)
        request = options.run_instances_kwargs()
        request.update(
            MinCount=1,
            MaxCount=1,
            ClientToken=uuid.uuid4().hex,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())],
                }
            ],
        )
        if spec.init:
            request["UserData"] = spec.init
        _private_ip_from(spec.logical_id, request)
        with self._api("run an instance"):
            made = self.client().run_instances(**request).get("Instances") or []
        if len(made) != 1:
            raise PluginError(f"EC2 answered RunInstances with {len(made)} instances, not 1")
        described = _describe(made[0], tags)
        self._recent.add(described)
        log.debug("ran instance %s (%s)", described.id, options.image_id)
        return described.id

    def destroy(self, instance_id: InstanceID) -> None:
        """Terminate the instance; one that is already gone is not an error."""
        _check_id(instance_id)
        try:
            with self._api(
                f"terminate instance {instance_id}", ignore="InvalidInstanceID.NotFound"
            ):
                self.client().terminate_instances(InstanceIds=[instance_id])
        finally:
            self._recent.forget(instance_id)

    def describe_instances(self, tags: Mapping[str, str]) -> list[Description]:
        """Every pending or running instance whose tags include all of `tags`."""
        wanted = {str(k): str(v) for k, v in tags.items()}
        found = self._list(wanted, LIVE_STATES)
        unlisted = self._recent.unlisted(wanted, {d.id for d in found})
        if unlisted:
            found.extend(self._confirm(unlisted, wanted))
        found.sort(key=lambda d: d.id)
        return found

    def label(self, instance_id: InstanceID, labels: Mapping[str, str]) -> None:
        """Add (or overwrite) EC2 tags of the instance."""
        _check_id(instance_id)
        faults = [(json_path((key,)), tag_fault(key, value)) for key, value in labels.items()]
        faults = [(path, fault) for path, fault in faults if fault]
        if faults:
            raise ValidationError.of(faults)
        if not labels:
            return
        tags = [{"Key": k, "Value": v} for k, v in sorted(labels.items())]
        with self._api(f"tag instance {instance_id}"):
            try:
                self.client().create_tags(Resources=[instance_id], Tags=tags)
            except ClientError as exc:
                if error_code(exc) == "InvalidInstanceID.NotFound":
                    raise PluginError(f"no such instance: {instance_id}") from None
                raise

    def sweep(self, tags: Mapping[str, str]) -> list[InstanceID]:
        """Terminate every stopping or stopped instance made by a group (it carries
        `infrakit.group`) whose tags include all of `tags`; return their IDs."""
        wanted = {str(k): str(v) for k, v in tags.items()}
        swept = []
        for description in self._list(wanted, STOPPED_STATES, must_have=(TAG_GROUP,)):
            self.destroy(description.id)
            swept.append(description.id)
        return sorted(swept)

    def close(self) -> None:
        """Close the EC2 client's connections (a new client is made if the plugin is used
        after). The instances keep running."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    # -- EC2 -------------------------------------------------------------------------------

    def client(self) -> Any:
        """The EC2 client, made on first use."""
        with self._client_lock:
            if self._client is None:
                try:
                    self._client = self._session.client(
                        "ec2", endpoint_url=self._endpoint, config=self._config
                    )
                except (BotoCoreError, ValueError) as exc:
                    raise PluginError(
                        f"cannot make an EC2 client for {self.region} at {self.endpoint}: {exc}"
                    ) from None
            return self._client

    @contextlib.contextmanager
    def _api(self, doing: str, ignore: str = "") -> Iterator[None]:
        """Turn boto3's failures into `PluginError`s; a `ClientError` whose code is `ignore`
        is swallowed."""
        try:
            yield
        except ClientError as exc:
            if not ignore or error_code(exc) != ignore:
                raise plugin_error(exc, doing, self.endpoint) from None
        except (BotoCoreError, ResponseParserError) as exc:
            raise plugin_error(exc, doing, self.endpoint) from None

    def _list(
        self, wanted: Mapping[str, str], states: Collection[str], must_have: Collection[str] = ()
    ) -> list[Description]:
        """Instances in `states` whose tags include `wanted` (and the keys `must_have`): EC2
        filters, page by page, and every instance is checked again here."""
        filters = [{"Name": "instance-state-name", "Values": list(states)}]
        filters.extend(
            {"Name": f"tag:{key}", "Values": [value]}
            for key, value in sorted(wanted.items())
            if not _WILDCARDS & set(key + value)
        )
        filters.extend({"Name": "tag-key", "Values": [key]} for key in must_have)
        found = []
        with self._api("list instances"):
            pages = (
                self.client()
                .get_paginator("describe_instances")
                .paginate(Filters=filters, PaginationConfig={"PageSize": self._page_size})
            )
            for page in pages:
                for instance in _instances(page):
                    tags = _tags_of(instance)
                    if (
                        _state(instance) in states
                        and tags_match(tags, wanted)
                        and all(key in tags for key in must_have)
                    ):
                        found.append(_describe(instance, tags))
        return found

    def _confirm(self, unlisted: list[Description], wanted: Mapping[str, str]) -> list[Description]:
        """Which of the instances made lately that a listing left out are live: asked by ID;
        one EC2 does not know yet is taken as made, one it knows as gone is forgotten."""
        ids = [d.id for d in unlisted]
        known: dict[str, Any] = {}
        with self._api("describe new instances", ignore="InvalidInstanceID.NotFound"):
            for page in self.client().get_paginator("describe_instances").paginate(InstanceIds=ids):
                known.update((str(i.get("InstanceId")), i) for i in _instances(page))
        live = []
        for remembered in unlisted:
            instance = known.get(remembered.id)
            if instance is None:
                live.append(remembered)
            elif _state(instance) in LIVE_STATES:
                tags = _tags_of(instance)
                live.append(_describe(instance, tags) if tags_match(tags, wanted) else remembered)
            else:
                self._recent.forget(remembered.id)
        return live

    def _check_image(self, image: str, path: str) -> None:
        """Raise a `ValidationError` at `path` unless the AMI `image` is available. Credentials
        that may not describe images skip the check (RunInstances will tell)."""
        with self._api(f"describe image {image}"):
            try:
                images = self.client().describe_images(ImageIds=[image]).get("Images") or []
            except ClientError as exc:
                code = error_code(exc)
                if code == "UnauthorizedOperation":
                    log.info("cannot check AMI %s: %s", image, exc)
                    return
                if not code.startswith("InvalidAMIID."):
                    raise
                images = []
        state = str(images[0].get("State") or "available") if images else ""
        if not images:
            raise ValidationError(
                f"AMI {image!r} does not exist in {self.region} (or is not shared with this "
                "account)",
                path=path,
            )
        if state != "available":
            raise ValidationError(f"AMI {image!r} is {state}, not available", path=path)


# -- helpers ---------------------------------------------------------------------------------


def _instance_tags(options: Ec2Properties, spec: Spec) -> dict[str, str]:
    """The EC2 tags of a new instance: the properties' `Tags`, then the spec's, the logical
    ID, and a `Name`. `ValidationError` for any EC2 would refuse."""
    tags = {**options.tags, **spec.tags}
    if spec.logical_id:
        tags.setdefault(TAG_LOGICAL_ID, spec.logical_id)
    name = tags.get(TAG_LOGICAL_ID)
    if name and NAME_TAG not in tags:
        tags[NAME_TAG] = name
    faults = [(json_path(("Tags", key)), tag_fault(key, value)) for key, value in tags.items()]
    found = [(path, fault) for path, fault in faults if fault]
    if len(tags) > 50:
        found.append(("Tags", f"an instance has at most 50 tags (EC2's limit), got {len(tags)}"))
    if found:
        raise ValidationError.of(found)
    return tags


def _private_ip_from(logical_id: str | None, request: dict[str, Any]) -> None:
    """A logical ID that is an IPv4 address becomes the private IP (of the first network
    interface, if the properties give interfaces), unless the properties give one."""
    if not logical_id:
        return
    try:
        ipaddress.IPv4Address(logical_id)
    except ValueError:
        return
    interfaces = request.get("NetworkInterfaces")
    if interfaces:
        for interface in interfaces:
            if interface.get("DeviceIndex") == 0:
                interface.setdefault("PrivateIpAddress", logical_id)
    else:
        request.setdefault("PrivateIpAddress", logical_id)


def _check_id(instance_id: InstanceID) -> None:
    if not isinstance(instance_id, str) or not _ID_RE.match(instance_id):
        raise PluginError(f"not an EC2 instance ID: {instance_id!r}")


def _instances(page: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for reservation in page.get("Reservations") or ():
        yield from reservation.get("Instances") or ()


def _state(instance: Mapping[str, Any]) -> str:
    return str((instance.get("State") or {}).get("Name") or "")


def _tags_of(instance: Mapping[str, Any]) -> dict[str, str]:
    return {str(t["Key"]): str(t.get("Value", "")) for t in instance.get("Tags") or ()}


def _describe(instance: Mapping[str, Any], tags: dict[str, str]) -> Description:
    launched = instance.get("LaunchTime")
    properties = {
        "InstanceType": instance.get("InstanceType"),
        "ImageId": instance.get("ImageId"),
        "State": _state(instance),
        "PrivateIpAddress": instance.get("PrivateIpAddress"),
        "PublicIpAddress": instance.get("PublicIpAddress"),
        "AvailabilityZone": (instance.get("Placement") or {}).get("AvailabilityZone"),
        "LaunchTime": launched.isoformat() if isinstance(launched, datetime) else launched,
    }
    return Description(
        id=str(instance["InstanceId"]),
        logical_id=tags.get(TAG_LOGICAL_ID),
        tags=tags,
        properties={k: v for k, v in properties.items() if v is not None},
    )
