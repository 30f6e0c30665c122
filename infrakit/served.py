"""The plugins a runtime runs in its own process, served on their sockets in the plugins
directory (as `infrakit plugin start` serves one), so that every plugin the runtime uses is
reachable by its name: `infrakit instance --name instance-process describe`, `plugin ls`.

Only the leading runtime serves them (a follower on the same home must not take the leader's
sockets), and a socket another live server holds is left to it: nothing fights over a socket.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from actors.remote import RpcServer
from actors.rpc_errors import AddressInUse
from infrakit.spi import FlavorPlugin, InstancePlugin
from infrakit.wire.plugin import RemotePlugin, plugin_handlers

log = logging.getLogger(__name__)


class ServedPlugins:
    """Serves each in-process plugin at `ipc://<directory>/<name>` between `start` and `stop`;
    plugins in other processes (`RemotePlugin`) are served by those processes themselves."""

    def __init__(
        self, plugins: Mapping[str, InstancePlugin | FlavorPlugin], directory: Path
    ) -> None:
        self._plugins = {
            name: plugin
            for name, plugin in plugins.items()
            if not isinstance(plugin, RemotePlugin) and "/" not in name
        }
        self._directory = directory
        self._servers: dict[str, RpcServer] = {}

    @property
    def endpoints(self) -> dict[str, str]:
        """Name -> endpoint of every plugin served now."""
        return {name: server.endpoint for name, server in self._servers.items()}

    def start(self) -> None:
        """Serve every plugin whose socket is free (or left by a server that died)."""
        self.stop()
        for name, plugin in sorted(self._plugins.items()):
            endpoint = f"ipc://{self._directory / name}"
            try:
                server = RpcServer(endpoint, plugin_handlers(plugin), name=f"plugin-{name}")
                self._servers[name] = server.start()
            except AddressInUse:
                log.info(
                    "plugin %s: another process serves %s; this runtime's own %s is not"
                    " reachable by name",
                    name,
                    endpoint,
                    name,
                )
            except Exception as error:  # zmq: a path too long for a socket, no permission...
                log.error("cannot serve plugin %s at %s: %s", name, endpoint, error)

    def stop(self) -> None:
        """Stop serving; each server removes its socket file."""
        servers = list(self._servers.values())
        self._servers.clear()
        for server in servers:
            server.stop()

    def died(self) -> list[str]:
        """What has died of what was started, one sentence each (empty while all serve)."""
        return [
            f"the server of plugin {name} at {server.endpoint} died"
            for name, server in self._servers.items()
            if not server.running
        ]
