"""The Terraform instance plugin: each instance is one Terraform resource, declared in a file of
its own and made by `terraform apply`, one apply at a time per directory.

`options` reads its properties and plugin options, `resource` writes and reads an instance's
file, `state` reads `terraform.tfstate`, `cli` runs terraform, `applier` batches the applies,
and `plugin` is the plugin itself.
"""

from infrakit.plugins.instance.terraform.cli import EXTRA, find_plugin_dir, find_terraform
from infrakit.plugins.instance.terraform.options import (
    TerraformOptions,
    TerraformProperties,
    parse_properties,
)
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
