"""An instance's file, `instance-<id>.tf.json`: the Terraform document that declares its one
resource (named by the instance ID) with the instance's tags, logical ID and Init placed in the
body, and what such a file says back.

The file also declares a local value naming the body's tags attribute, so that the tags can be
read back (and relabelled) whatever the resource type. Strings the plugin places are escaped
for Terraform 0.11 (`${` is written `$${`), so an Init's shell `${VAR}` stays a shell variable.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infrakit.plugins.instance.terraform.options import TerraformProperties, default_tags_attribute
from infrakit.spi.errors import ValidationError
from infrakit.spi.instance import TAG_LOGICAL_ID, Spec

FILE_PREFIX = "instance-"
FILE_SUFFIX = ".tf.json"
# In the tags map when the Init goes there (a null_resource's triggers); never shown as a tag.
TAG_INIT = "infrakit.init"
# A local value `infrakit-tags-attribute-<id>` names the body's tags attribute.
TAGS_LOCAL_PREFIX = "infrakit-tags-attribute-"

_ID_RE = re.compile(r"instance-[A-Za-z0-9_-]+\Z")
_FILE_RE = re.compile(r"(instance-[A-Za-z0-9_-]+)\.tf\.json\Z")


def is_instance_id(text: str) -> bool:
    """Whether `text` can be an instance ID of this plugin (and so a file and resource name)."""
    return isinstance(text, str) and _ID_RE.match(text) is not None


def file_name(instance_id: str) -> str:
    """The name of the file of instance `instance_id`."""
    return f"{instance_id}{FILE_SUFFIX}"


def instance_of(name: str) -> str | None:
    """The instance ID whose file is called `name`, or None for any other name."""
    match = _FILE_RE.match(name)
    return match.group(1) if match else None


def escape(text: str) -> str:
    """`text` as a literal Terraform 0.11 string (no interpolation)."""
    return text.replace("${", "$${")


def unescape(text: str) -> str:
    """What Terraform reads a string without interpolations as."""
    return text.replace("$${", "${")


def render(properties: TerraformProperties, spec: Spec, instance_id: str) -> dict[str, Any]:
    """The file of a new instance: one resource of `properties.type` named `instance_id`, its
    body `properties.value` with the spec's tags (and logical ID) merged into the tags
    attribute's map, and the Init where `properties.init_attribute` says.

    Raises `ValidationError` at `InitAttribute` if the spec has an Init and the resource type
    has no known place for it (an `InitAttribute` of `""` drops it on purpose).
    """
    body = copy.deepcopy(properties.value)
    where_tags = properties.tags_attribute
    tags: dict[str, Any] = dict(body.get(where_tags) or {})
    tags.update((key, escape(value)) for key, value in spec.tags.items())
    if spec.logical_id:
        tags[TAG_LOGICAL_ID] = escape(spec.logical_id)
    if spec.init:
        where_init = properties.init_attribute
        if where_init == where_tags:
            tags[TAG_INIT] = escape(spec.init)
        elif where_init:
            before = body.get(where_init)
            body[where_init] = f"{before}\n{escape(spec.init)}" if before else escape(spec.init)
        elif properties.given_init_attribute is None:
            raise ValidationError(
                f"a {properties.type} resource has no known attribute for the Init: name the "
                'attribute that takes it (such as "user_data"), or "" to drop the Init',
                path="InitAttribute",
            )
    body[where_tags] = tags
    return {
        "resource": {properties.type: {instance_id: body}},
        "locals": {TAGS_LOCAL_PREFIX + instance_id: where_tags},
    }


@dataclass(frozen=True)
class InstanceFile:
    """What an instance's file declares: the resource's type, its tags (as Terraform reads
    them; the Init is not a tag) and the logical ID among them."""

    instance_id: str
    type: str
    tags: dict[str, str]

    @property
    def logical_id(self) -> str | None:
        return self.tags.get(TAG_LOGICAL_ID)


def _parts(document: Any, instance_id: str) -> tuple[str, dict[str, Any], str]:
    """(type, body, tags attribute) of an instance's file; ValueError if it is not one."""
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    resources = document.get("resource")
    if not isinstance(resources, dict) or len(resources) != 1:
        raise ValueError("does not declare exactly one resource type")
    ((resource_type, named),) = resources.items()
    body = named.get(instance_id) if isinstance(named, dict) else None
    if not isinstance(body, dict):
        raise ValueError(f"declares no resource named {instance_id}")
    local_values = document.get("locals")
    where = (
        local_values.get(TAGS_LOCAL_PREFIX + instance_id)
        if isinstance(local_values, dict)
        else None
    )
    return (
        resource_type,
        body,
        where if isinstance(where, str) else default_tags_attribute(resource_type),
    )


def read(document: Any, instance_id: str) -> InstanceFile:
    """What the file of `instance_id` declares; ValueError if it is not such a file."""
    resource_type, body, where = _parts(document, instance_id)
    tags = body.get(where) or {}
    if not isinstance(tags, dict):
        raise ValueError(f"its {where} is not an object")
    return InstanceFile(
        instance_id=instance_id,
        type=resource_type,
        tags={str(k): unescape(str(v)) for k, v in tags.items() if k != TAG_INIT},
    )


def relabel(document: Any, instance_id: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """The file of `instance_id` with `labels` merged into its tags; ValueError if it is not
    such a file."""
    changed = copy.deepcopy(document)
    _, body, where = _parts(changed, instance_id)
    tags = body.get(where) or {}
    if not isinstance(tags, dict):
        raise ValueError(f"its {where} is not an object")
    tags.update((key, escape(value)) for key, value in labels.items())
    body[where] = tags
    return dict(changed)
