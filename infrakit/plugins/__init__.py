"""The built-in plugin kinds, the options each takes (a cluster file's `Plugins[i].Options`, or
`infrakit plugin start --option`), and a factory that makes them from options.

The options' models (infrakit/plugins/options.py) are imported on first use: naming the kinds
(`infrakit plugin ls`, `infrakit instance`) has no use for pydantic, whose import costs a short
command several times its own work.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infrakit.plugins._props import PropertiesModel
    from infrakit.spi.flavor import FlavorPlugin
    from infrakit.spi.instance import InstancePlugin

_KINDS = (
    "file",
    "process",
    "docker",
    "dind",
    "vagrant",
    "gcp",
    "aws",
    "terraform",
    "vanilla",
    "zookeeper",
    "swarm",
)
"""The kinds of `infrakit.plugins.options.OPTIONS`, without importing their models."""


def builtin_kinds() -> list[str]:
    """The names of the plugin kinds that ship with infrakit."""
    return list(_KINDS)


def options_model(kind: str) -> type[PropertiesModel]:
    """The model of the options of plugin `kind`; `ValueError` for a kind that is not built in."""
    if kind not in _KINDS:
        raise ValueError(f"unknown plugin kind {kind!r}; built-in kinds: {', '.join(_KINDS)}")
    from infrakit.plugins.options import OPTIONS

    return OPTIONS[kind]


def create_plugin(
    kind: str, options: Mapping[str, Any], home: Path
) -> InstancePlugin | FlavorPlugin:
    """Make a built-in plugin of `kind`; state goes under `home` unless `options` say `Dir`.

    Plugins that talk to an outside engine (docker, dind, swarm) connect on first use.

    Raises ValueError for an unknown kind, and `SpecError` (a ValueError) naming every fault of
    the options (keys in any letter case).
    """
    from infrakit import jsonmodel
    from infrakit.plugins.instance.aws.settings import AwsOptions
    from infrakit.plugins.instance.gcp.config import GcpPluginOptions
    from infrakit.plugins.instance.terraform.options import TerraformOptions
    from infrakit.plugins.options import DirOptions

    source = f"options of plugin kind {kind!r}"
    parsed = jsonmodel.parse(options_model(kind), options, source=source)
    directory = parsed.dir if isinstance(parsed, DirOptions) else None
    if kind == "file":
        from infrakit.plugins.instance.file import FileInstancePlugin

        return FileInstancePlugin(directory or Path(home) / "instances" / "file")
    if kind == "process":
        from infrakit.plugins.instance.process import ProcessInstancePlugin

        return ProcessInstancePlugin(directory or Path(home) / "instances" / "process")
    if kind == "docker":
        from infrakit.plugins.instance.docker import DockerInstancePlugin

        return DockerInstancePlugin()
    if kind == "dind":
        from infrakit.plugins.instance.dind import DindInstancePlugin

        return DindInstancePlugin()
    if kind == "vagrant":
        from infrakit.plugins.instance.vagrant import VagrantInstancePlugin

        return VagrantInstancePlugin(directory or Path(home) / "instances" / "vagrant")
    if kind == "gcp":
        from infrakit.plugins.instance.gcp import create

        assert isinstance(parsed, GcpPluginOptions)
        return create(parsed)
    if kind == "aws":
        from infrakit.plugins.instance.aws import create as create_aws

        assert isinstance(parsed, AwsOptions)
        return create_aws(parsed)
    if kind == "terraform":
        from infrakit.plugins.instance.terraform import TerraformInstancePlugin

        assert isinstance(parsed, TerraformOptions)
        return TerraformInstancePlugin.from_options(parsed, home)
    if kind == "zookeeper":
        from infrakit.plugins.flavor.zookeeper import ZooKeeperFlavor

        return ZooKeeperFlavor()
    if kind == "swarm":
        from infrakit.plugins.flavor.swarm import SwarmFlavor

        return SwarmFlavor()
    from infrakit.plugins.flavor.vanilla import VanillaFlavor

    return VanillaFlavor()
