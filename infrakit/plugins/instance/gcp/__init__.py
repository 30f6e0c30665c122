"""The gcp instance plugin: each instance is a Compute Engine VM (docs/plugins/gcp.md).

`config` reads the plugin's options (project, zone, endpoint), `properties` the instance
properties, `labels` keeps tags as metadata and labels, `names` names instances, `resource`
builds the instance to insert, `compute` talks to the API and `plugin` is the plugin itself.

Only the plugin needs google-cloud-compute (the `gcp` extra): the options and properties can be
checked without it, and `create` says how to install it when it is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infrakit.plugins.instance.gcp.config import GcpPluginOptions, Location
from infrakit.plugins.instance.gcp.labels import decode, encode, tag_labels, tags_of
from infrakit.plugins.instance.gcp.names import instance_name, valid_name
from infrakit.plugins.instance.gcp.properties import GcpProperties, parse_properties

if TYPE_CHECKING:
    from infrakit.plugins.instance.gcp.plugin import GONE, GcpInstancePlugin

INSTALL_HINT = "pip install 'infrakit[gcp]'"

__all__ = [
    "GONE",
    "INSTALL_HINT",
    "GcpInstancePlugin",
    "GcpPluginOptions",
    "GcpProperties",
    "Location",
    "create",
    "decode",
    "encode",
    "instance_name",
    "parse_properties",
    "tag_labels",
    "tags_of",
    "valid_name",
]


def create(options: GcpPluginOptions) -> GcpInstancePlugin:
    """The plugin for a cluster file's options; `ValueError` saying what to install when
    google-cloud-compute is missing, or naming a bad project or zone in the environment."""
    try:
        from infrakit.plugins.instance.gcp.plugin import GcpInstancePlugin
    except ImportError as error:
        raise ValueError(
            f"the gcp plugin needs google-cloud-compute ({error}): {INSTALL_HINT}"
        ) from None
    return GcpInstancePlugin(
        project=options.project,
        zone=options.zone,
        endpoint=options.endpoint,
        operation_timeout=options.operation_timeout,
    )


def __getattr__(name: str) -> Any:
    """The plugin's names, imported on first use (they need google-cloud-compute)."""
    if name in ("GcpInstancePlugin", "GONE"):
        from infrakit.plugins.instance.gcp import plugin

        return getattr(plugin, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
