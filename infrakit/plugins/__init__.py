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
    "vanilla": (),
}


def builtin_kinds() -> list[str]:
    """The names of the plugin kinds that ship with infrakit."""
    return list(_OPTIONS)


def create_plugin(
    kind: str, options: Mapping[str, Any], home: Path
) -> InstancePlugin | FlavorPlugin:
    """Make a built-in plugin of `kind`; state goes under `home` unless `options` say `Dir`.

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
    from infrakit.plugins.flavor.vanilla import VanillaFlavor

    return VanillaFlavor()
