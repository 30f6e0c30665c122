"""The options each built-in plugin kind takes (a cluster file's `Plugins[i].Options`, or
`infrakit plugin start --option`), as pydantic models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from infrakit.plugins._props import PropertiesModel, non_empty
from infrakit.plugins.instance.aws.settings import AwsOptions
from infrakit.plugins.instance.gcp.config import GcpPluginOptions
from infrakit.plugins.instance.terraform.options import TerraformOptions


class NoOptions(PropertiesModel):
    """The options of a kind that takes none."""


def _directory(value: Any) -> Path:
    return Path(non_empty(value)).expanduser()


class DirOptions(PropertiesModel):
    """The options of a kind that keeps its state in a directory: `Dir` (default: under the
    home), `~` expanded."""

    dir: Annotated[Path, BeforeValidator(_directory)] | None = Field(default=None, alias="Dir")


OPTIONS: dict[str, type[PropertiesModel]] = {
    "file": DirOptions,
    "process": DirOptions,
    "docker": NoOptions,
    "dind": NoOptions,
    "vagrant": DirOptions,
    "gcp": GcpPluginOptions,
    "aws": AwsOptions,
    "terraform": TerraformOptions,
    "vanilla": NoOptions,
    "zookeeper": NoOptions,
    "swarm": NoOptions,
}
"""Each built-in kind's options model, in the order of `infrakit.plugins.builtin_kinds()`."""
