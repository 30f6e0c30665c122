"""The Group API as Go InfraKit's CLI asks for it over HTTP: our `Group.*` and `Manager.*`
handlers, plus the handshake of InfraKit's later clients (`Handshake.Hello`), which v0.1's
`Plugin.Implements` preceded."""

from __future__ import annotations

from typing import Any

from infrakit.spi.group import GroupPlugin
from infrakit.wire.common import API_VERSION, Handler
from infrakit.wire.group import group_handlers

INTERFACES = ("Group", "Manager")


def go_group_handlers(plugin: GroupPlugin) -> dict[str, Handler]:
    """Every handler the ZeroMQ Group API serves, and `Handshake.Hello`, answering with each
    interface encoded as Go did (`Group/0.1.0`), each served by one unnamed object."""

    def hello(_p: dict[str, Any]) -> Any:
        unnamed = [{"Name": "", "ProxyFor": ""}]
        return {"Objects": {f"{name}/{API_VERSION}": unnamed for name in INTERFACES}}

    return {**group_handlers(plugin), "Handshake.Hello": hello}
