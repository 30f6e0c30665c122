"""Where things live: the home directory and the plugins directory, as InfraKit laid them out."""

from __future__ import annotations

import os
from pathlib import Path

GROUP_SOCKET = "group"
"""The manager's socket in the plugins directory: where InfraKit's CLI looks for it."""
GROUP_ZMQ_SOCKET = "group.zmq"
"""Where the manager's ZeroMQ endpoint moves when `Manager.HTTP` gives `group` to HTTP."""


def default_home() -> Path:
    """`$INFRAKIT_HOME`, else `~/.infrakit`: where the runtime keeps everything it writes."""
    return Path(os.environ.get("INFRAKIT_HOME") or Path.home() / ".infrakit").expanduser()


def plugins_dir(home: Path | None = None) -> Path:
    """`$INFRAKIT_PLUGINS_DIR`, else `<home>/plugins` (home defaulting as `default_home`).

    Each plugin serves at `ipc://<plugins_dir>/<name>`, the manager at `.../group`.
    """
    override = os.environ.get("INFRAKIT_PLUGINS_DIR")
    if override:
        return Path(override).expanduser()
    return (home if home is not None else default_home()) / "plugins"


def plugin_endpoint(name: str, home: Path | None = None) -> str:
    """The ipc:// endpoint of the plugin called `name` (InfraKit's `sock/type`: socket `sock`)."""
    return f"ipc://{plugins_dir(home) / name.split('/', 1)[0]}"
