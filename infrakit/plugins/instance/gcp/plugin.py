"""The gcp instance plugin: each instance is a Compute Engine VM in one project and zone.

- Properties are the instance's fields (`properties.py`), checked before any API call.
- The instance ID is the instance's name (unique in its zone): the logical ID where it is a
  valid name (an IPv4 logical ID names the instance and is its internal IP), else
  `<NamePrefix or group>-<random>` (`names.py`).
- Tags are kept exactly in the `infrakit-tags` metadata item, and as labels where they fit
  (`labels.py`); a group is listed with a label filter and matched again client side.
- The Init is the `startup-script` metadata item.
- An instance that is stopping, stopped, suspending, suspended or terminated is gone (a
  preempted VM is TERMINATED): the group replaces it. `sweep` deletes the group's gone ones.
- Inserts and deletes wait for their operation, at most `OperationTimeout`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from google.cloud import compute_v1

from infrakit.plugins.instance.gcp.compute import Compute
from infrakit.plugins.instance.gcp.config import (
    DEFAULT_OPERATION_TIMEOUT,
    Location,
    from_environment,
)
from infrakit.plugins.instance.gcp.labels import (
    METADATA_LOGICAL_ID,
    METADATA_TAGS,
    relabel,
    tags_metadata,
    tags_of,
)
from infrakit.plugins.instance.gcp.labels import label_filter as make_filter
from infrakit.plugins.instance.gcp.names import instance_name, valid_name
from infrakit.plugins.instance.gcp.properties import GcpProperties, parse_properties
from infrakit.plugins.instance.gcp.resource import instance_resource
from infrakit.spi.errors import PluginError, ValidationError
from infrakit.spi.instance import (
    TAG_GROUP,
    Description,
    InstanceID,
    InstancePlugin,
    Spec,
    Sweepable,
    tags_match,
)

GONE = frozenset({"STOPPING", "STOPPED", "SUSPENDING", "SUSPENDED", "TERMINATED", "PENDING_STOP"})
"""Statuses of an instance that is not running and will not by itself: gone, for a group."""


class GcpInstancePlugin(InstancePlugin, Sweepable):
    """Instances as Compute Engine VMs in `project` and `zone` (else from the environment:
    `$GOOGLE_CLOUD_PROJECT`, `$CLOUDSDK_CORE_PROJECT` or the default credentials' project;
    `$CLOUDSDK_COMPUTE_ZONE`), through the Compute API at `endpoint` (default: Google's).

    Nothing is called until the plugin is used. A bad project or zone in the environment is a
    `ValueError` here.
    """

    def __init__(
        self,
        *,
        project: str | None = None,
        zone: str | None = None,
        endpoint: str | None = None,
        operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
        environ: Mapping[str, str] | None = None,
        client: compute_v1.InstancesClient | None = None,
    ) -> None:
        env_project, env_zone = from_environment(os.environ if environ is None else environ)
        self.compute = Compute(
            project=project or env_project,
            zone=zone or env_zone,
            endpoint=endpoint,
            operation_timeout=operation_timeout,
            client=client,
        )

    # -- the instance SPI ------------------------------------------------------------------

    def validate(self, properties: Any) -> None:
        """Check the properties (no API call); a `Project` or `Zone` must be the plugin's."""
        self._location(parse_properties(properties))

    def provision(self, spec: Spec) -> InstanceID:
        """Create the spec's instance and wait until it is made; return its name.

        An instance already bearing the logical ID's name is an error while it runs; once
        gone (terminated, say) it is deleted first, if this plugin made it for that logical ID.
        """
        props = parse_properties(spec.properties)
        location = self._location(props)
        naming = instance_name(spec.logical_id, props.name_prefix, spec.tags.get(TAG_GROUP))
        resource = instance_resource(props, spec, naming, location)
        if naming.reused:
            self._clear_name(naming.name, spec.logical_id)
        self.compute.insert(resource)
        return naming.name

    def destroy(self, instance_id: InstanceID) -> None:
        """Delete the instance and wait until it is gone; one already gone is not an error."""
        self.compute.delete(_checked(instance_id))

    def describe_instances(self, tags: Mapping[str, str]) -> list[Description]:
        """Every live instance of the zone whose tags include all of `tags`."""
        wanted = {str(k): str(v) for k, v in tags.items()}
        found = []
        for instance in self.compute.list(make_filter(wanted)):
            metadata = _metadata(instance)
            instance_tags = tags_of(metadata)
            if instance.status not in GONE and tags_match(instance_tags, wanted):
                found.append(_describe(instance, metadata, instance_tags))
        found.sort(key=lambda d: d.id)
        return found

    def sweep(self, tags: Mapping[str, str]) -> list[InstanceID]:
        """Delete every gone instance (terminated, stopped...) made by a group whose tags
        include all of `tags`; return their names."""
        wanted = {str(k): str(v) for k, v in tags.items()}
        swept = []
        for instance in self.compute.list(make_filter(wanted)):
            instance_tags = tags_of(_metadata(instance))
            if (
                instance.status in GONE
                and TAG_GROUP in instance_tags
                and tags_match(instance_tags, wanted)
            ):
                self.compute.delete(instance.name)
                swept.append(instance.name)
        return sorted(swept)

    def label(self, instance_id: InstanceID, labels: Mapping[str, str]) -> None:
        """Merge `labels` into the instance's tags: its `infrakit-tags` metadata item, then its
        labels, each replaced with the fingerprint read (GCP refuses a stale one)."""
        name = _checked(instance_id)
        instance = self.compute.get(name)
        if instance is None:
            raise PluginError(f"no such instance: {name}")
        metadata = _metadata(instance)
        current = tags_of(metadata)
        changed = {str(k): str(v) for k, v in labels.items() if current.get(k) != v}
        if not changed:
            return
        metadata[METADATA_TAGS] = tags_metadata({**current, **changed})
        self.compute.set_metadata(
            name,
            compute_v1.Metadata(
                fingerprint=instance.metadata.fingerprint,
                items=[compute_v1.Items(key=k, value=v) for k, v in sorted(metadata.items())],
            ),
        )
        new_labels = relabel(dict(instance.labels), changed)
        if new_labels != dict(instance.labels):
            self.compute.set_labels(name, new_labels, instance.label_fingerprint)

    # -- internals -------------------------------------------------------------------------

    def _location(self, props: GcpProperties) -> Location:
        """The plugin's location, which a group's `Project` and `Zone`, if given, must be."""
        location = self.compute.location() if props.project or props.zone else None
        faults = []
        for key, given, own, option in (
            ("Project", props.project, location and location.project, "Project"),
            ("Zone", props.zone, location and location.zone, "Zone"),
        ):
            if given is not None and given != own:
                faults.append(
                    (
                        key,
                        f"this gcp plugin works in {key.lower()} {own!r}, not {given!r}; a group"
                        f" there needs a gcp plugin of its own (one with Options.{option})",
                    )
                )
        if faults:
            raise ValidationError.of(faults)
        return location or self.compute.location()

    def _clear_name(self, name: str, logical_id: str | None) -> None:
        """Make way for an instance called `name`: refuse if one runs; delete a gone one that
        this plugin made for `logical_id`; refuse any other."""
        existing = self.compute.get(name)
        if existing is None:
            return
        if existing.status not in GONE:
            raise PluginError(f"an instance named {name!r} already exists ({existing.status})")
        metadata = _metadata(existing)
        if TAG_GROUP not in tags_of(metadata) or metadata.get(METADATA_LOGICAL_ID) != logical_id:
            raise PluginError(
                f"instance {name!r} ({existing.status}) was not made by infrakit for logical ID"
                f" {logical_id!r}: delete or rename it to let the group use the name"
            )
        self.compute.delete(name)


def _checked(instance_id: InstanceID) -> str:
    if not isinstance(instance_id, str) or not valid_name(instance_id):
        raise PluginError(f"not an instance name: {instance_id!r}")
    return instance_id


def _metadata(instance: compute_v1.Instance) -> dict[str, str]:
    return {item.key: item.value for item in instance.metadata.items}


def _describe(
    instance: compute_v1.Instance, metadata: Mapping[str, str], tags: dict[str, str]
) -> Description:
    interfaces = list(instance.network_interfaces)
    properties: dict[str, Any] = {
        "Name": instance.name,
        "Status": instance.status,
        "MachineType": instance.machine_type.rsplit("/", 1)[-1],
        "Zone": instance.zone.rsplit("/", 1)[-1],
    }
    if interfaces and interfaces[0].network_i_p:
        properties["NetworkIP"] = interfaces[0].network_i_p
    return Description(
        id=instance.name,
        logical_id=metadata.get(METADATA_LOGICAL_ID),
        tags=tags,
        properties=properties,
    )
