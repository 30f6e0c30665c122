"""The Terraform instance plugin: each instance is one Terraform resource, declared in a file of
its own and made by `terraform apply`, one apply at a time per directory.

`options` reads its properties and plugin options, `resource` writes and reads an instance's
file, `state` reads `terraform.tfstate`, `cli` runs terraform, `applier` batches the applies,
and `plugin` is the plugin itself. Only the options load with the package (the registry of
built-in kinds needs them); the rest on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from infrakit.plugins.instance.terraform.options import (
    TerraformOptions,
    TerraformProperties,
    parse_properties,
)

if TYPE_CHECKING:
    from infrakit.plugins.instance.terraform.cli import EXTRA, find_plugin_dir, find_terraform
    from infrakit.plugins.instance.terraform.plugin import PLACEHOLDER, TerraformInstancePlugin
    from infrakit.plugins.instance.terraform.resource import TAG_INIT, file_name, render
    from infrakit.plugins.instance.terraform.state import STATE_FILE

__all__ = [
    "EXTRA",
    "PLACEHOLDER",
    "STATE_FILE",
    "TAG_INIT",
    "TerraformInstancePlugin",
    "TerraformOptions",
    "TerraformProperties",
    "file_name",
    "find_plugin_dir",
    "find_terraform",
    "parse_properties",
    "render",
]

_LAZY = {
    "EXTRA": "cli",
    "find_plugin_dir": "cli",
    "find_terraform": "cli",
    "PLACEHOLDER": "plugin",
    "TerraformInstancePlugin": "plugin",
    "TAG_INIT": "resource",
    "file_name": "resource",
    "render": "resource",
    "STATE_FILE": "state",
}


def __getattr__(name: str) -> Any:
    """A name of the package's other modules, imported on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
