"""Where the local instance plugins (`process`, `file`) keep their state when several managers
share one store, and the rule that lets a manager refuse to start rather than take groups over
without seeing their instances (docs/etcd.md, "Local plugins").

The rule: every manager of a cluster must see each local plugin's instances in one directory.
On one host that is the same directory (same device and inode); across hosts the same path (a
filesystem they all mount: only the path can be checked), and never for `process`, whose
instances are processes of one host."""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

LOCAL_KINDS = ("file", "process")
"""The built-in instance plugins whose instances only their state directory knows of."""


def host_id() -> str:
    """This host's identity: its machine ID (systemd's, stable across reboots), else its name."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            found = Path(path).read_text().strip()
        except OSError:
            continue
        if found:
            return found
    return socket.gethostname()


def shared_state_home(store_prefix: str, environ: Mapping[str, str] = os.environ) -> Path:
    """The host-wide directory under which the local plugins of the cluster whose store is at
    `store_prefix` keep their state by default: `$XDG_STATE_HOME/infrakit/clusters/<name>`
    (`~/.local/state` without XDG_STATE_HOME). Every manager of one cluster has the same
    prefix, whatever its home, so they all get the same directory."""
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", store_prefix).strip("-.") or "root"
    digest = hashlib.sha256(store_prefix.encode()).hexdigest()[:8]
    return Path(base) / "infrakit" / "clusters" / f"{readable}-{digest}"


def describe_dir(name: str, kind: str, directory: Path) -> dict[str, Any]:
    """What a manager publishes of one local plugin's state directory, for the others to
    compare with theirs."""
    path = os.path.abspath(directory)
    found: dict[str, Any] = {"Name": name, "Kind": kind, "Dir": path}
    try:
        st = os.stat(path)
    except OSError:
        return found
    return {**found, "Device": st.st_dev, "Inode": st.st_ino}


def unshared(
    mine: Iterable[Mapping[str, Any]],
    host: str,
    managers: Iterable[Mapping[str, Any]],
    location: str,
) -> list[tuple[str, str]]:
    """(plugin name, why) for each local plugin of ours that cannot see what another live
    manager's plugin of that name made, by the rule above; `managers` as they published
    themselves (`Location`, `Host`, `Plugins`), ours (at `location`) left out."""
    problems: list[tuple[str, str]] = []
    ours = {str(plugin["Name"]): plugin for plugin in mine}
    for other in managers:
        where = str(other.get("Location") or "?")
        if where == location:
            continue
        same_host = other.get("Host") == host
        for theirs in other.get("Plugins") or []:
            if not isinstance(theirs, Mapping):
                continue
            plugin = ours.get(str(theirs.get("Name")))
            if plugin is None or plugin.get("Kind") != theirs.get("Kind"):
                continue
            why = _why_unshared(plugin, theirs, same_host, where, other.get("Host"))
            if why and all(name != plugin["Name"] for name, _ in problems):
                problems.append((str(plugin["Name"]), why))
    return problems


def _why_unshared(
    plugin: Mapping[str, Any],
    theirs: Mapping[str, Any],
    same_host: bool,
    where: str,
    their_host: Any,
) -> str | None:
    ours_dir, their_dir = plugin.get("Dir"), theirs.get("Dir")
    if not same_host and plugin.get("Kind") == "process":
        return (
            f"plugin {plugin.get('Name')} makes processes of this host, but the manager at"
            f" {where} runs on another host ({their_host}): neither would see the other's"
            " instances; run every manager that uses a process plugin on one host"
        )
    if same_host:
        same = (plugin.get("Device"), plugin.get("Inode")) == (
            theirs.get("Device"),
            theirs.get("Inode"),
        ) and plugin.get("Inode") is not None
    else:
        same = ours_dir == their_dir
    if same:
        return None
    return (
        f"plugin {plugin.get('Name')} keeps its instances in {ours_dir}, but the manager at"
        f" {where} keeps them in {their_dir}: neither would see the other's, and a new leader"
        " would make them again; give every manager the same Dir (or none: with an etcd store"
        " the default is shared by the managers of one host)"
    )
