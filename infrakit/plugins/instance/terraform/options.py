"""The Terraform instance plugin's properties (one resource per instance) and its plugin options
(a cluster file's `Plugins[i].Options`), keys in any letter case:

    properties: {"Type": "aws_instance",            required: the resource type
                 "Value": {"ami": "..."},           the resource's body (default {})
                 "TagsAttribute": "tags",           where the tags go (default: see below)
                 "InitAttribute": "user_data"}      where the Init goes (default: see below)
    options:    {"Dir": "~/tf", "Terraform": "/usr/bin/terraform", "PluginDir": "/opt/providers",
                 "ApplyTimeout": "10m", "Refresh": "1m"}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator

from infrakit.duration import parse_duration
from infrakit.jsonmodel import Faults, describe_type, shown
from infrakit.plugins._props import PropertiesModel, non_empty, parse

# Terraform 0.11 names (types, attributes): a letter or underscore, then letters, digits, '_', '-'.
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
# Arguments every resource has; none of them can hold tags or an Init.
META_ARGUMENTS = frozenset(
    {"count", "depends_on", "provider", "lifecycle", "provisioner", "connection", "for_each"}
)
# An instance is exactly one resource: these would make it several.
_MANY = ("count", "for_each")

NULL_RESOURCE = "null_resource"
# Where the Init goes by default, for the resource types that boot a machine.
DEFAULT_INIT_ATTRIBUTES = {
    "aws_instance": "user_data",
    "digitalocean_droplet": "user_data",
    "openstack_compute_instance_v2": "user_data",
    "google_compute_instance": "metadata_startup_script",
    "softlayer_virtual_guest": "user_metadata",
    "ibm_compute_vm_instance": "user_metadata",
}
DEFAULT_APPLY_TIMEOUT = 600.0
DEFAULT_REFRESH = 60.0
_MAX_APPLY_TIMEOUT = 24 * 3600.0


def default_tags_attribute(resource_type: str) -> str:
    """`triggers` for a `null_resource` (its one map of strings), `tags` for any other type."""
    return "triggers" if resource_type == NULL_RESOURCE else "tags"


def default_init_attribute(resource_type: str, tags_attribute: str) -> str:
    """Where the Init goes when the properties do not say: the boot script attribute of the
    machine types in `DEFAULT_INIT_ATTRIBUTES`, the tags map for a `null_resource` (under
    `infrakit.init`), and nowhere (`""`) for other types."""
    if resource_type == NULL_RESOURCE:
        return tags_attribute
    return DEFAULT_INIT_ATTRIBUTES.get(resource_type, "")


def _name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(
            "must be a Terraform name (a letter or '_', then letters, digits, '_' or '-'), "
            f"got {shown(value)}"
        )
    return value


def _attribute(value: str) -> str:
    if value in META_ARGUMENTS:
        raise ValueError(f"{value!r} is a Terraform meta-argument, not an attribute")
    return value


def _object(value: Any) -> Any:
    if not isinstance(value, dict):
        raise ValueError(f"must be an object (the resource's body), got {describe_type(value)}")
    return value


Name = Annotated[str, BeforeValidator(_name)]
Attribute = Annotated[Name, AfterValidator(_attribute)]


class TerraformProperties(PropertiesModel):
    """An instance's properties: the resource's `Type` and body (`Value`), and the attributes
    of the body where the plugin puts the instance's tags and its Init."""

    # `Value` is checked last, against the others (a field validator: its faults are reported
    # with those of the keys around it).
    type: Name = Field(default=None, alias="Type", validate_default=True)
    given_tags_attribute: Attribute | None = Field(default=None, alias="TagsAttribute")
    given_init_attribute: str | None = Field(default=None, alias="InitAttribute")
    value: Annotated[dict[str, Any], BeforeValidator(_object)] = Field(
        default_factory=dict, alias="Value"
    )

    @field_validator("type", mode="before")
    @classmethod
    def _type_given(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("is required (the resource type, such as null_resource)")
        return value

    @field_validator("given_init_attribute", mode="before")
    @classmethod
    def _init_attribute(cls, value: Any) -> Any:
        if value == "":
            return value  # the Init is dropped, on purpose
        return _attribute(_name(value))

    @field_validator("value")
    @classmethod
    def _body_fits(cls, body: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        faults = Faults()
        for key in _MANY:
            if key in body:
                faults.add(f"an instance is one resource: {key!r} is not allowed", key)
        resource_type = info.data.get("type")
        if resource_type is None:  # faulty: reported at Type
            faults.check()
            return body
        where_tags = info.data.get("given_tags_attribute") or default_tags_attribute(resource_type)
        tags = body.get(where_tags)
        if tags is not None and not isinstance(tags, dict):
            faults.add(
                "must be an object: the instance's tags go there (TagsAttribute), "
                f"got {describe_type(tags)}",
                where_tags,
            )
        where_init = info.data.get("given_init_attribute")
        if where_init is None:
            where_init = default_init_attribute(resource_type, where_tags)
        current = body.get(where_init) if where_init and where_init != where_tags else None
        if current is not None and not isinstance(current, str):
            faults.add(
                "must be a string: the Init is added to it (InitAttribute), "
                f"got {describe_type(current)}",
                where_init,
            )
        faults.check()
        return body

    @property
    def tags_attribute(self) -> str:
        """The body's attribute holding the tags (a map of strings)."""
        return self.given_tags_attribute or default_tags_attribute(self.type)

    @property
    def init_attribute(self) -> str:
        """The body's attribute the Init goes in; the tags attribute means "in the tags map,
        under `infrakit.init`"; `""` means nowhere."""
        if self.given_init_attribute is not None:
            return self.given_init_attribute
        return default_init_attribute(self.type, self.tags_attribute)

    @property
    def provider(self) -> str:
        """The name of the provider that makes the resource (Terraform 0.11's rule: the
        `provider` argument's name, else the type up to its first '_')."""
        given = self.value.get("provider")
        if isinstance(given, str) and given:
            return given.split(".", 1)[0]
        return self.type.split("_", 1)[0]


def parse_properties(properties: Any) -> TerraformProperties:
    """Check instance properties and return them parsed; every fault raises one
    `ValidationError`, each with its JSON path."""
    return parse(TerraformProperties, properties)


def _directory(value: Any) -> Path:
    return Path(non_empty(value)).expanduser()


def _apply_timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"must be a duration like '10m', got {shown(value)}")
    return parse_duration(value, minimum=1.0, maximum=_MAX_APPLY_TIMEOUT)


def _refresh(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"must be a duration like '1m' (or 0: never), got {shown(value)}")
    seconds = parse_duration(value, maximum=_MAX_APPLY_TIMEOUT)
    if 0 < seconds < 0.1:
        raise ValueError(f"must be 0 (never) or at least 100ms, got {shown(value)}")
    return seconds


Directory = Annotated[Path, BeforeValidator(_directory)]


class TerraformOptions(PropertiesModel):
    """The plugin's options: its working directory, the terraform binary, the providers'
    directory, how long one terraform command may take, and how often the state is refreshed
    when nothing is applied (see docs/plugins/terraform.md)."""

    dir: Directory | None = Field(default=None, alias="Dir")
    terraform: Annotated[Path, BeforeValidator(_directory)] | None = Field(
        default=None, alias="Terraform"
    )
    plugin_dir: Directory | None = Field(default=None, alias="PluginDir")
    apply_timeout: Annotated[float, BeforeValidator(_apply_timeout)] = Field(
        default=DEFAULT_APPLY_TIMEOUT, alias="ApplyTimeout"
    )
    refresh: Annotated[float, BeforeValidator(_refresh)] = Field(
        default=DEFAULT_REFRESH, alias="Refresh"
    )
