"""A plugin of any kind on the wire: one server and one handshake for whichever of the instance
and flavor contracts a plugin object implements, and `RemotePlugin`, a plugin in another
process that can stand in either role (its handshake says which it really serves)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from actors.http_probe import probe_http, socket_path
from infrakit.spi.flavor import AllocationMethod, FlavorPlugin
from infrakit.spi.instance import InstancePlugin
from infrakit.wire.common import Handler, Ref, handshake
from infrakit.wire.flavor import FlavorClient, flavor_apis, flavor_handlers
from infrakit.wire.instance import InstanceClient, instance_apis, instance_handlers


def implements(plugin: object) -> list[dict[str, str]]:
    """The interfaces a local plugin object implements, as its server's handshake lists them."""
    return [*instance_apis(plugin), *flavor_apis(plugin)]


def plugin_handlers(plugin: InstancePlugin | FlavorPlugin) -> dict[str, Handler]:
    """Handlers that serve `plugin` (instance, flavor or both) under InfraKit's method names."""
    handlers = handshake(implements(plugin))
    if isinstance(plugin, InstancePlugin):
        handlers.update(instance_handlers(plugin))
    if isinstance(plugin, FlavorPlugin):
        handlers.update(flavor_handlers(plugin))
    return handlers


class RemotePlugin(InstanceClient, FlavorClient):
    """A plugin in another process, reached through a `RemoteRef`, under its name.

    It has every method of both contracts, so the runtime can name it in either role;
    `implements()` (the handshake, cached) says which the plugin behind it really serves.
    Failures are the SPI's errors, their messages naming the plugin, so a group treats them like
    any plugin failure: retried with backoff.
    """

    IDEMPOTENT = InstanceClient.IDEMPOTENT | FlavorClient.IDEMPOTENT

    def __init__(self, name: str, ref: Ref) -> None:
        super().__init__(ref, f"plugin {name!r}")
        self.name = name

    def validate(self, properties: Any, allocation: AllocationMethod | None = None) -> None:
        """`Instance.Validate`, or `Flavor.Validate` when given the group's `allocation`."""
        if allocation is None:
            InstanceClient.validate(self, properties)
        else:
            FlavorClient.validate(self, properties, allocation)


def connect_plugin(
    name: str,
    endpoint: str,
    timeout: float = 30.0,
    on_change: Callable[[bool, str], None] | None = None,
) -> RemotePlugin:
    """A `RemotePlugin` for the plugin served at `endpoint`: ZeroMQ for `ipc://`/`tcp://`,
    HTTP JSON-RPC for `unix://` and for an `ipc://` socket that answers HTTP (`http_endpoint`).

    `on_change(up, reason)` hears when the connection to the plugin is lost or back (ZMTP
    heartbeats notice a peer that stops answering); it must return at once.
    """
    from actors.http_rpc import HttpRef  # the runtime's: a CLI command has no use for them
    from actors.rpc_client import RemoteRef

    on_down = (lambda reason: on_change(False, reason)) if on_change else None
    on_up = (lambda reason: on_change(True, reason)) if on_change else None
    http = http_endpoint(endpoint)
    transport: type[HttpRef] | type[RemoteRef] = RemoteRef if http is None else HttpRef
    ref: Ref = transport(
        endpoint if http is None else http,
        timeout=timeout,
        idempotent=RemotePlugin.IDEMPOTENT,
        name=f"plugin-{name}",
        on_down=on_down,
        on_up=on_up,
    )
    return RemotePlugin(name, ref)


def http_endpoint(endpoint: str) -> str | None:
    """The `unix://` endpoint to reach `endpoint` over HTTP JSON-RPC (Go InfraKit's wire), or
    None for ZeroMQ: `unix://` always means HTTP; an `ipc://` socket (a plugin found by name in
    the plugins directory) is HTTP if it answers an HTTP `Plugin.Implements` right now."""
    if endpoint.startswith("unix://"):
        return endpoint
    if endpoint.startswith("ipc://"):
        path = endpoint[len("ipc://") :]
        if os.path.exists(path) and probe_http(path) is not None:
            return f"unix://{socket_path(path)}"
    return None
