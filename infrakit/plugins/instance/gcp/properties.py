"""The gcp plugin's instance properties: the fields of a Compute Engine instance (keys in any
letter case). Every key is optional but one: `Image` or `Disks`.

    {"MachineType": "e2-medium",                      a name, or a zones/.../machineTypes/... path
     "Image": "projects/debian-cloud/global/images/family/debian-12",   the boot disk's image
     "Disks": [{"Boot": true, "Image": "...", "SizeGb": 20, "Type": "pd-balanced",
                "AutoDelete": true},                  instead of Image: the first disk boots
               {"SizeGb": 100},                       a new blank disk
               {"Source": "data-1"}],                 an existing disk, attached
     "Network": "default", "Subnetwork": "sub-a",     names or paths
     "ExternalIP": true,                              an ephemeral external IP (the default)
     "NetworkTags": ["http-server"],                  GCP's network tags (firewall targets)
     "Metadata": {"enable-oslogin": "TRUE"},          metadata items (`infrakit-*` are the plugin's)
     "Labels": {"team": "infra"},                     labels (`infrakit_*` are the plugin's)
     "ServiceAccount": "sa@proj.iam.gserviceaccount.com",   or "default"
     "Scopes": ["cloud-platform"],                    short names or URLs
     "Scheduling": {"Preemptible": false, "ProvisioningModel": "STANDARD",
                    "OnHostMaintenance": "MIGRATE", "AutomaticRestart": true},
     "NamePrefix": "web",                             names of a Size group's instances
     "Description": "...",
     "Project": "...", "Zone": "..."}                 if given, must be the plugin's own
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from infrakit.jsonmodel import Faults, shown
from infrakit.plugins._props import NonEmpty, PropertiesModel, StringMap, Strings, parse
from infrakit.plugins.instance.gcp.config import Project, Zone
from infrakit.plugins.instance.gcp.labels import (
    LABEL_PREFIX,
    MAX_LABELS,
    METADATA_PREFIX,
    valid_label_key,
    valid_label_value,
)
from infrakit.plugins.instance.gcp.names import MAX_PREFIX

DEFAULT_MACHINE_TYPE = "e2-medium"
SCOPE_ROOT = "https://www.googleapis.com/auth/"
DEFAULT_SCOPES = ("cloud-platform",)
_NAME = r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"
_URL = r"(?:https?://[^\s/]+(?:/[^\s/]+)*?/)?"
_IMAGE = re.compile(rf"{_URL}(?:projects/[^\s/]+/)?global/images/(?:family/)?{_NAME}\Z|{_NAME}\Z")
_MACHINE_TYPE = re.compile(rf"{_URL}(?:projects/[^\s/]+/)?zones/[^\s/]+/machineTypes/{_NAME}\Z")
_DISK_TYPE = re.compile(rf"{_URL}(?:projects/[^\s/]+/)?zones/[^\s/]+/diskTypes/{_NAME}\Z")
_DISK = re.compile(rf"{_URL}(?:projects/[^\s/]+/)?zones/[^\s/]+/disks/{_NAME}\Z")
_NETWORK = re.compile(rf"{_URL}(?:projects/[^\s/]+/)?global/networks/{_NAME}\Z")
_SUBNETWORK = re.compile(rf"{_URL}(?:projects/[^\s/]+/)?regions/[^\s/]+/subnetworks/{_NAME}\Z")
_NAME_ONLY = re.compile(rf"{_NAME}\Z")
_PREFIX = re.compile(rf"[a-z](?:[-a-z0-9]{{0,{MAX_PREFIX - 2}}}[a-z0-9])?\Z")
_METADATA_KEY = re.compile(r"[a-zA-Z0-9_-]{1,128}\Z")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\Z")


def _resource(what: str, path: re.Pattern[str], example: str) -> Any:
    """A validator of a resource given by its name or by its path (or URL)."""

    def check(value: Any) -> str:
        if isinstance(value, str) and (_NAME_ONLY.match(value) or path.match(value)):
            return value
        raise ValueError(f"must be {what} name or path such as {example!r}, got {shown(value)}")

    return BeforeValidator(check)


def _image(value: Any) -> str:
    if isinstance(value, str) and _IMAGE.match(value):
        return value
    raise ValueError(
        "must be an image such as 'projects/debian-cloud/global/images/family/debian-12'"
        f" (or the name of an image of the project), got {shown(value)}"
    )


def _name_prefix(value: Any) -> str:
    if isinstance(value, str) and _PREFIX.match(value):
        return value
    raise ValueError(
        f"must be 1 to {MAX_PREFIX} lowercase letters, digits or '-', starting with a letter"
        f" and not ending with '-', got {shown(value)}"
    )


def _network_tags(tags: list[str]) -> list[str]:
    faults = Faults()
    for i, tag in enumerate(tags):
        if not _NAME_ONLY.match(tag):
            faults.add(
                "must be 1 to 63 lowercase letters, digits or '-', starting with a letter", i
            )
    if len(tags) > 64:
        faults.add(f"must be at most 64 tags, got {len(tags)}")
    faults.check()
    return tags


def _metadata(items: dict[str, str]) -> dict[str, str]:
    faults = Faults()
    for key in items:
        if not _METADATA_KEY.match(key):
            faults.add("must be 1 to 128 letters, digits, '_' or '-'", key)
        elif key.lower().startswith(METADATA_PREFIX):
            faults.add(f"metadata keys starting with {METADATA_PREFIX!r} are the plugin's", key)
    faults.check()
    return items


def _labels(labels: dict[str, str]) -> dict[str, str]:
    faults = Faults()
    for key, value in labels.items():
        if not valid_label_key(key):
            faults.add(
                "must be a label key: 1 to 63 lowercase letters, digits, '_' or '-', starting"
                " with a letter",
                key,
            )
        elif key.startswith(LABEL_PREFIX):
            faults.add(f"labels starting with {LABEL_PREFIX!r} are the plugin's (its tags)", key)
        elif not valid_label_value(value):
            faults.add("must be at most 63 lowercase letters, digits, '_' or '-'", key)
    if len(labels) > MAX_LABELS:
        faults.add(f"must be at most {MAX_LABELS} labels, got {len(labels)}")
    faults.check()
    return labels


def _scopes(scopes: list[str]) -> list[str]:
    faults = Faults()
    for i, scope in enumerate(scopes):
        if not scope or any(c.isspace() for c in scope):
            faults.add("must be a scope such as 'cloud-platform' or its URL", i)
    faults.check()
    return [scope if "://" in scope else SCOPE_ROOT + scope for scope in scopes]


def _service_account(value: Any) -> str:
    if isinstance(value, str) and (value == "default" or _EMAIL.match(value)):
        return value
    raise ValueError(f"must be a service account's email or 'default', got {shown(value)}")


class DiskProperties(PropertiesModel):
    """One entry of `Disks`: a new disk from an `Image`, a new blank disk (`SizeGb`), or an
    existing disk (`Source`). `AutoDelete` (delete the disk with the instance) is true for new
    disks and false for existing ones unless given."""

    boot: bool | None = Field(default=None, alias="Boot")
    image: Annotated[str, BeforeValidator(_image)] | None = Field(default=None, alias="Image")
    source: (
        Annotated[str, _resource("a disk", _DISK, "zones/us-central1-a/disks/data-1")] | None
    ) = Field(default=None, alias="Source")
    size_gb: Annotated[int, Field(ge=1, le=65536)] | None = Field(default=None, alias="SizeGb")
    type: Annotated[str, _resource("a disk type", _DISK_TYPE, "pd-balanced")] | None = Field(
        default=None, alias="Type"
    )
    auto_delete: bool | None = Field(default=None, alias="AutoDelete")

    @model_validator(mode="after")
    def _one_origin(self) -> DiskProperties:
        faults = Faults()
        if self.source is not None:
            if self.image is not None:
                faults.add("give either Image (a new disk) or Source (an existing one)", "Source")
            for key, value in (("SizeGb", self.size_gb), ("Type", self.type)):
                if value is not None:
                    faults.add("an existing disk (Source) keeps its own", key)
        elif self.image is None and self.size_gb is None:
            faults.add("a new blank disk needs a size (or give an Image or a Source)", "SizeGb")
        faults.check()
        return self

    @property
    def deletes_with_instance(self) -> bool:
        """Whether the disk goes when the instance does."""
        return self.auto_delete if self.auto_delete is not None else self.source is None


class SchedulingProperties(PropertiesModel):
    """`Scheduling`: preemptible or Spot instances, and what happens at host maintenance. A
    preemptible or Spot instance terminates at maintenance and does not restart (GCP's rule),
    which is also what these default to for one."""

    preemptible: bool = Field(default=False, alias="Preemptible")
    provisioning_model: Literal["STANDARD", "SPOT"] | None = Field(
        default=None, alias="ProvisioningModel"
    )
    on_host_maintenance: Literal["MIGRATE", "TERMINATE"] | None = Field(
        default=None, alias="OnHostMaintenance"
    )
    automatic_restart: bool | None = Field(default=None, alias="AutomaticRestart")

    @property
    def interruptible(self) -> bool:
        """Whether GCP may stop the instance at any time (preemptible or Spot)."""
        return self.preemptible or self.provisioning_model == "SPOT"

    @model_validator(mode="after")
    def _interruptible_rules(self) -> SchedulingProperties:
        faults = Faults()
        if self.interruptible:
            if self.on_host_maintenance == "MIGRATE":
                faults.add("a preemptible or Spot instance cannot migrate", "OnHostMaintenance")
            if self.automatic_restart:
                faults.add("a preemptible or Spot instance cannot restart", "AutomaticRestart")
        faults.check()
        return self


class GcpProperties(PropertiesModel):
    """The instance properties this plugin understands (see the module's doc)."""

    machine_type: Annotated[str, _resource("a machine type", _MACHINE_TYPE, "e2-medium")] = Field(
        default=DEFAULT_MACHINE_TYPE, alias="MachineType"
    )
    image: Annotated[str, BeforeValidator(_image)] | None = Field(default=None, alias="Image")
    disks: Annotated[list[DiskProperties], Field(min_length=1, max_length=128)] | None = Field(
        default=None, alias="Disks"
    )
    network: Annotated[str, _resource("a network", _NETWORK, "default")] | None = Field(
        default=None, alias="Network"
    )
    subnetwork: (
        Annotated[
            str, _resource("a subnetwork", _SUBNETWORK, "regions/us-central1/subnetworks/sub-a")
        ]
        | None
    ) = Field(default=None, alias="Subnetwork")
    external_ip: bool = Field(default=True, alias="ExternalIP")
    network_tags: Annotated[Strings, AfterValidator(_network_tags)] = Field(
        default_factory=list, alias="NetworkTags"
    )
    metadata: Annotated[StringMap, AfterValidator(_metadata)] = Field(
        default_factory=dict, alias="Metadata"
    )
    labels: Annotated[StringMap, AfterValidator(_labels)] = Field(
        default_factory=dict, alias="Labels"
    )
    service_account: Annotated[str, BeforeValidator(_service_account)] | None = Field(
        default=None, alias="ServiceAccount"
    )
    scopes: Annotated[Strings, AfterValidator(_scopes)] | None = Field(default=None, alias="Scopes")
    scheduling: SchedulingProperties = Field(
        default_factory=SchedulingProperties, alias="Scheduling"
    )
    name_prefix: Annotated[str, BeforeValidator(_name_prefix)] | None = Field(
        default=None, alias="NamePrefix"
    )
    description: Annotated[NonEmpty, Field(max_length=2048)] | None = Field(
        default=None, alias="Description"
    )
    project: Project | None = Field(default=None, alias="Project")
    zone: Zone | None = Field(default=None, alias="Zone")

    @model_validator(mode="after")
    def _one_boot_disk(self) -> GcpProperties:
        faults = Faults()
        if self.image is None and self.disks is None:
            faults.add("is required (the boot disk's image), unless Disks are given", "Image")
        elif self.image is not None and self.disks is not None:
            faults.add("give either Image (a boot disk of that image) or Disks, not both", "Disks")
        for i, disk in enumerate(self.disks or ()):
            if i == 0 and disk.boot is False:
                faults.add("the first disk is the boot disk", "Disks", i, "Boot")
            elif i == 0 and disk.image is None and disk.source is None:
                faults.add("the boot disk needs an Image or a Source", "Disks", i)
            elif i > 0 and disk.boot:
                faults.add("only the first disk boots", "Disks", i, "Boot")
        faults.check()
        return self

    @property
    def attached_disks(self) -> list[DiskProperties]:
        """The disks to attach, the boot disk first (`Image` as one boot disk)."""
        if self.disks is not None:
            return list(self.disks)
        return [DiskProperties.model_validate({"Boot": True, "Image": self.image})]

    @property
    def account_scopes(self) -> list[str]:
        """The service account's scopes (URLs); none when there is no service account."""
        if self.scopes is not None:
            return self.scopes
        if self.service_account is not None:
            return [SCOPE_ROOT + scope for scope in DEFAULT_SCOPES]
        return []


def parse_properties(properties: Any) -> GcpProperties:
    """Check instance properties and return them parsed; every fault raises one
    `ValidationError`, each with its JSON path."""
    return parse(GcpProperties, properties)
