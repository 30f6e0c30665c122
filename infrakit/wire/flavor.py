"""The flavor plugin contract on the wire: `Flavor.*` handlers serving a `FlavorPlugin` (and
`Flavor.MemberStatus`, ours, for a `Reportable` one), and `FlavorClient`, one in another
process."""

from __future__ import annotations

from typing import Any

from infrakit.spi.errors import PluginError
from infrakit.spi.flavor import AllocationMethod, FlavorPlugin, Health, Reportable
from infrakit.spi.instance import Description, Spec
from infrakit.wire.common import (
    HANDSHAKE_TIMEOUT,
    Client,
    Handler,
    api,
    object_param,
    param,
    plugin_call,
)

INTERFACE = "Flavor"
MEMBER_STATUS = "MemberStatus"
"""The handshake lists this interface only for a flavor that serves `Flavor.MemberStatus`."""


def flavor_apis(plugin: object) -> list[dict[str, str]]:
    """What the handshake of a server of `plugin` lists for this contract."""
    if not isinstance(plugin, FlavorPlugin):
        return []
    if isinstance(plugin, Reportable):
        return [api(INTERFACE), api(MEMBER_STATUS)]
    return [api(INTERFACE)]


def flavor_handlers(plugin: FlavorPlugin) -> dict[str, Handler]:
    """The `Flavor.*` methods, served by `plugin`."""

    def allocation(p: dict[str, Any]) -> AllocationMethod:
        return AllocationMethod.from_json(param(p, "Allocation") or {})

    def validate(p: dict[str, Any]) -> Any:
        plugin_call(lambda: plugin.validate(param(p, "Properties"), allocation(p)))
        return {"OK": True}

    def prepare(p: dict[str, Any]) -> Any:
        spec = Spec.from_json(object_param(p, "Spec"))
        prepared = plugin_call(lambda: plugin.prepare(param(p, "Properties"), spec, allocation(p)))
        return {"Spec": prepared.to_json()}

    def healthy(p: dict[str, Any]) -> Any:
        instance = Description.from_json(object_param(p, "Instance"))
        health = plugin_call(lambda: plugin.healthy(param(p, "Properties"), instance))
        return {"Health": int(health)}

    def drain(p: dict[str, Any]) -> Any:
        instance = Description.from_json(object_param(p, "Instance"))
        plugin_call(lambda: plugin.drain(param(p, "Properties"), instance))
        return {"OK": True}

    handlers: dict[str, Handler] = {
        "Flavor.Validate": validate,
        "Flavor.Prepare": prepare,
        "Flavor.Healthy": healthy,
        "Flavor.Drain": drain,
    }
    if isinstance(plugin, Reportable):
        reportable = plugin

        def member_status(p: dict[str, Any]) -> Any:
            instance = Description.from_json(object_param(p, "Instance"))
            status = plugin_call(lambda: reportable.member_status(param(p, "Properties"), instance))
            return {"Status": status}

        handlers["Flavor.MemberStatus"] = member_status
    return handlers


class FlavorClient(Client, FlavorPlugin, Reportable):
    """A flavor plugin in another process. It is `Reportable` whatever the plugin: one whose
    handshake does not list MemberStatus has nothing more to tell."""

    IDEMPOTENT = Client.IDEMPOTENT | {
        "Flavor.Validate",
        "Flavor.Prepare",
        "Flavor.Healthy",
        "Flavor.MemberStatus",
    }

    def validate(self, properties: Any, allocation: AllocationMethod) -> None:
        """Validate on the plugin; while its connection is down it gets HANDSHAKE_TIMEOUT to
        come back, as `InstanceClient.validate`."""
        timeout = None if self.ref.alive else self.quick()
        params = {"Properties": properties, "Allocation": allocation.to_json()}
        self._call("Flavor.Validate", params, timeout=timeout)

    def prepare(self, properties: Any, spec: Spec, allocation: AllocationMethod) -> Spec:
        result = self._call(
            "Flavor.Prepare",
            {"Properties": properties, "Spec": spec.to_json(), "Allocation": allocation.to_json()},
        )
        return Spec.from_json(result["Spec"])

    def healthy(self, properties: Any, instance: Description) -> Health:
        result = self._call(
            "Flavor.Healthy", {"Properties": properties, "Instance": instance.to_json()}
        )
        value = result.get("Health", 0)
        if value not in (0, 1, 2) or isinstance(value, bool):
            raise PluginError(self._say(f"answered Health {value!r}, which is not 0, 1 or 2"))
        return Health(value)

    def drain(self, properties: Any, instance: Description) -> None:
        self._call("Flavor.Drain", {"Properties": properties, "Instance": instance.to_json()})

    def member_status(self, properties: Any, instance: Description) -> dict[str, Any]:
        """The plugin's status of `instance`, asked only while its connection is up and only of
        a plugin that serves it (else `{}`: nothing to tell), so that `group describe`, which
        asks it of every member, never waits on a plugin that does not answer."""
        if not self.ref.alive or not self.serves(MEMBER_STATUS):
            return {}
        params = {"Properties": properties, "Instance": instance.to_json()}
        result = self._call("Flavor.MemberStatus", params, timeout=HANDSHAKE_TIMEOUT)
        status = result.get("Status")
        return dict(status) if isinstance(status, dict) else {}
