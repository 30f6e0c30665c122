"""The instance plugin contract on the wire: `Instance.*` handlers serving an `InstancePlugin`
(and `Instance.Sweep`, ours, for a `Sweepable` one), and `InstanceClient`, one in another
process."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infrakit.spi.instance import Description, InstanceID, InstancePlugin, Spec, Sweepable
from infrakit.wire.common import (
    Client,
    Handler,
    Unsupported,
    api,
    object_param,
    param,
    plugin_call,
    string_map_param,
    string_param,
)

INTERFACE = "Instance"


def instance_apis(plugin: object) -> list[dict[str, str]]:
    """What the handshake of a server of `plugin` lists for this contract."""
    return [api(INTERFACE)] if isinstance(plugin, InstancePlugin) else []


def instance_handlers(plugin: InstancePlugin) -> dict[str, Handler]:
    """The `Instance.*` methods, served by `plugin`."""

    def validate(p: dict[str, Any]) -> Any:
        plugin_call(lambda: plugin.validate(param(p, "Properties")))
        return {"OK": True}

    def provision(p: dict[str, Any]) -> Any:
        spec = Spec.from_json(object_param(p, "Spec"))
        return {"ID": plugin_call(lambda: plugin.provision(spec))}

    def destroy(p: dict[str, Any]) -> Any:
        instance = string_param(p, "Instance")
        plugin_call(lambda: plugin.destroy(instance))
        return {"OK": True}

    def describe(p: dict[str, Any]) -> Any:
        tags = string_map_param(p, "Tags")
        found = plugin_call(lambda: plugin.describe_instances(tags))
        return {"Descriptions": [d.to_json() for d in found]}

    def label(p: dict[str, Any]) -> Any:
        instance = string_param(p, "Instance")
        labels = object_param(p, "Labels")
        plugin_call(lambda: plugin.label(instance, {str(k): str(v) for k, v in labels.items()}))
        return {"OK": True}

    handlers: dict[str, Handler] = {
        "Instance.Validate": validate,
        "Instance.Provision": provision,
        "Instance.Destroy": destroy,
        "Instance.DescribeInstances": describe,
        "Instance.Label": label,
    }
    if isinstance(plugin, Sweepable):
        sweepable = plugin

        def sweep(p: dict[str, Any]) -> Any:
            tags = string_map_param(p, "Tags")
            return {"Swept": plugin_call(lambda: sweepable.sweep(tags))}

        handlers["Instance.Sweep"] = sweep
    return handlers


class InstanceClient(Client, InstancePlugin, Sweepable):
    """An instance plugin in another process. It is `Sweepable` whatever the plugin: one that
    does not serve `Instance.Sweep` (Go InfraKit's) keeps no remains to sweep."""

    IDEMPOTENT = Client.IDEMPOTENT | {
        "Instance.Validate",
        "Instance.DescribeInstances",
        "Instance.Sweep",
    }

    def validate(self, properties: Any) -> None:
        """Validate on the plugin; while its connection is down it gets HANDSHAKE_TIMEOUT to
        come back (the call is harmless to abandon), so a commit says at once that it does not
        answer, yet one made just after the plugin started still goes through."""
        timeout = None if self.ref.alive else self.quick()
        self._call("Instance.Validate", {"Properties": properties}, timeout=timeout)

    def provision(self, spec: Spec) -> InstanceID:
        return str(self._call("Instance.Provision", {"Spec": spec.to_json()})["ID"])

    def destroy(self, instance_id: InstanceID) -> None:
        self._call("Instance.Destroy", {"Instance": instance_id})

    def describe_instances(self, tags: Mapping[str, str]) -> list[Description]:
        result = self._call("Instance.DescribeInstances", {"Tags": dict(tags)})
        return [Description.from_json(d) for d in result.get("Descriptions") or []]

    def label(self, instance_id: InstanceID, labels: Mapping[str, str]) -> None:
        self._call("Instance.Label", {"Instance": instance_id, "Labels": dict(labels)})

    def sweep(self, tags: Mapping[str, str]) -> list[InstanceID]:
        try:
            result = self._call("Instance.Sweep", {"Tags": dict(tags)})
        except Unsupported:
            return []
        return [str(i) for i in result.get("Swept") or []]
