"""The Compute Engine instance resource for a spec: properties, tags, Init and name put together
(no API call here)."""

from __future__ import annotations

from google.cloud import compute_v1

from infrakit.plugins.instance.gcp.config import Location
from infrakit.plugins.instance.gcp.labels import (
    METADATA_LOGICAL_ID,
    METADATA_TAGS,
    STARTUP_SCRIPT,
    tag_labels,
    tags_metadata,
)
from infrakit.plugins.instance.gcp.names import Naming
from infrakit.plugins.instance.gcp.properties import DiskProperties, GcpProperties
from infrakit.spi.errors import PluginError
from infrakit.spi.instance import Spec

MAX_LABELS = 64


def instance_resource(
    props: GcpProperties, spec: Spec, naming: Naming, location: Location
) -> compute_v1.Instance:
    """The instance to insert: the properties' fields; the Init as the `startup-script`
    metadata item (it replaces one given in `Metadata`, unless the Init is empty); the tags in
    the `infrakit-tags` item and as labels (over `Labels` of the same key)."""
    metadata = dict(props.metadata)
    if spec.init:
        metadata[STARTUP_SCRIPT] = spec.init
    metadata[METADATA_TAGS] = tags_metadata(spec.tags)
    if spec.logical_id is not None:
        metadata[METADATA_LOGICAL_ID] = spec.logical_id
    labels = {**props.labels, **tag_labels(spec.tags)}
    if len(labels) > MAX_LABELS:
        raise PluginError(
            f"instance {naming.name} would have {len(labels)} labels (its tags' and Labels);"
            f" GCP allows {MAX_LABELS}: give fewer Labels"
        )
    instance = compute_v1.Instance(
        name=naming.name,
        machine_type=_path(props.machine_type, f"zones/{location.zone}/machineTypes/"),
        disks=[_disk(disk, i == 0, location) for i, disk in enumerate(props.attached_disks)],
        network_interfaces=[_interface(props, naming, location)],
        metadata=compute_v1.Metadata(
            items=[compute_v1.Items(key=k, value=v) for k, v in sorted(metadata.items())]
        ),
        labels=labels,
        scheduling=_scheduling(props),
    )
    if props.description is not None:
        instance.description = props.description
    if props.network_tags:
        instance.tags = compute_v1.Tags(items=list(props.network_tags))
    if props.service_account is not None or props.scopes is not None:
        instance.service_accounts = [
            compute_v1.ServiceAccount(
                email=props.service_account or "default", scopes=props.account_scopes
            )
        ]
    return instance


def _path(value: str, prefix: str) -> str:
    """A resource given by name as its path (`prefix` + name); a path or URL as it is."""
    return value if "/" in value else prefix + value


def _image(value: str, location: Location) -> str:
    if "/" in value:
        return value
    return f"projects/{location.project}/global/images/{value}"


def _disk(disk: DiskProperties, boot: bool, location: Location) -> compute_v1.AttachedDisk:
    attached = compute_v1.AttachedDisk(
        boot=boot, auto_delete=disk.deletes_with_instance, type_="PERSISTENT"
    )
    if disk.source is not None:
        attached.source = _path(disk.source, f"zones/{location.zone}/disks/")
        return attached
    params = compute_v1.AttachedDiskInitializeParams()
    if disk.image is not None:
        params.source_image = _image(disk.image, location)
    if disk.size_gb is not None:
        params.disk_size_gb = disk.size_gb
    if disk.type is not None:
        params.disk_type = _path(disk.type, f"zones/{location.zone}/diskTypes/")
    attached.initialize_params = params
    return attached


def _interface(
    props: GcpProperties, naming: Naming, location: Location
) -> compute_v1.NetworkInterface:
    interface = compute_v1.NetworkInterface()
    if props.network is not None:
        interface.network = _path(props.network, "global/networks/")
    if props.subnetwork is not None:
        interface.subnetwork = _path(props.subnetwork, f"regions/{location.region}/subnetworks/")
    if naming.network_ip is not None:
        interface.network_i_p = naming.network_ip
    if props.external_ip:
        interface.access_configs = [
            compute_v1.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")
        ]
    return interface


def _scheduling(props: GcpProperties) -> compute_v1.Scheduling:
    given = props.scheduling
    interruptible = given.interruptible
    scheduling = compute_v1.Scheduling(
        preemptible=given.preemptible,
        on_host_maintenance=given.on_host_maintenance
        or ("TERMINATE" if interruptible else "MIGRATE"),
        automatic_restart=given.automatic_restart
        if given.automatic_restart is not None
        else not interruptible,
    )
    if given.provisioning_model is not None:
        scheduling.provisioning_model = given.provisioning_model
    return scheduling
