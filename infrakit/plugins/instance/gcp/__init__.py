"""The gcp instance plugin: each instance is a Compute Engine VM (docs/plugins/gcp.md).

`config` reads the plugin's options (project, zone, endpoint), `properties` the instance
properties, `labels` keeps tags as metadata and labels, `names` names instances, `resource`
builds the instance to insert, `compute` talks to the API and `plugin` is the plugin itself.

Only the plugin needs google-cloud-compute (the `gcp` extra): the options and properties can be
checked without it, and `create` says how to install it when it is missing. Only the options are
imported with the package (the registry of built-in kinds needs them); the rest on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from infrakit.plugins.instance.gcp.config import GcpPluginOptions, Location

if TYPE_CHECKING:
    from infrakit.plugins.instance.gcp.labels import decode, encode, tag_labels, tags_of
    from infrakit.plugins.instance.gcp.names import instance_name, valid_name
    from infrakit.plugins.instance.gcp.plugin import GONE, GcpInstancePlugin
    from infrakit.plugins.instance.gcp.properties import GcpProperties, parse_properties

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


_LAZY = {
    "GONE": "plugin",
    "GcpInstancePlugin": "plugin",
    "GcpProperties": "properties",
    "parse_properties": "properties",
    "decode": "labels",
    "encode": "labels",
    "tag_labels": "labels",
    "tags_of": "labels",
    "instance_name": "names",
    "valid_name": "names",
}


def __getattr__(name: str) -> Any:
    """A name of the package's modules, imported on first use (the plugin's need
    google-cloud-compute)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
