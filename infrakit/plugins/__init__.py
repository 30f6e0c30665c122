"""The built-in plugin kinds and a factory that makes them from options."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infrakit.spi.flavor import FlavorPlugin
from infrakit.spi.instance import InstancePlugin

_OPTIONS: dict[str, tuple[str, ...]] = {
    "file": ("Dir",),
    "process": ("Dir",),
    "docker": (),
    "dind": (),
    "vagrant": ("Dir",),
    "vanilla": (),
    "zookeeper": (),
    "swarm": (),
}


def builtin_kinds() -> list[str]:
    """The names of the plugin kinds that ship with infrakit."""
    return list(_OPTIONS)


def create_plugin(
    kind: str, options: Mapping[str, Any], home: Path
) -> InstancePlugin | FlavorPlugin:
    """Make a built-in plugin of `kind`; state goes under `home` unless `options` say `Dir`.

    Plugins that talk to an outside engine (docker, dind, swarm) connect on first use.

    Raises ValueError for an unknown kind or option, or an option of the wrong type.
    """
    if kind not in _OPTIONS:
        raise ValueError(f"unknown plugin kind {kind!r}; built-in kinds: {', '.join(_OPTIONS)}")
    known = _OPTIONS[kind]
    for key in options:
        if key not in known:
            allowed = ", ".join(known) if known else "none"
            raise ValueError(
                f"unknown option {key!r} for plugin kind {kind!r} (known options: {allowed})"
            )
    raw_dir = options.get("Dir")
    if raw_dir is not None and (not isinstance(raw_dir, str) or not raw_dir):
        raise ValueError(f"option 'Dir' of plugin kind {kind!r} must be a non-empty string")
    directory = Path(raw_dir).expanduser() if raw_dir else None
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
    if kind == "zookeeper":
        from infrakit.plugins.flavor.zookeeper import ZooKeeperFlavor

        return ZooKeeperFlavor()
    if kind == "swarm":
        from infrakit.plugins.flavor.swarm import SwarmFlavor

        return SwarmFlavor()
    from infrakit.plugins.flavor.vanilla import VanillaFlavor

    return VanillaFlavor()
