"""JSON-RPC method tables: the SPI on the wire, with InfraKit's method names and JSON shapes.

Server side, `plugin_handlers(plugin)` turns an instance or flavor plugin into handlers for an
`actors.remote.RpcServer`; `group_handlers(runtime)` does the same for the manager. Client
side, `RemotePlugin` is a plugin object whose methods are calls to a plugin in another process.
docs/protocol.md describes every method.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from actors.remote import RemoteRef
from actors.rpc_errors import METHOD_NOT_FOUND, RemoteError, RpcClosed, RpcError, RpcTimeout
from infrakit.spec import SpecError
from infrakit.spi import (
    AllocationMethod,
    Description,
    FlavorPlugin,
    Health,
    InstancePlugin,
    PluginError,
    Spec,
    ValidationError,
)
from infrakit.spi.instance import Sweepable

if TYPE_CHECKING:
    from infrakit.runtime import Runtime

Handler = Callable[[dict[str, Any]], Any]

API_VERSION = "0.1.0"
INSTANCE_API = {"Name": "Instance", "Version": API_VERSION}
FLAVOR_API = {"Name": "Flavor", "Version": API_VERSION}
GROUP_API = {"Name": "Group", "Version": API_VERSION}
MANAGER_API = {"Name": "Manager", "Version": API_VERSION}

# Application error codes (JSON-RPC reserves -32000..-32099 for servers).
PLUGIN_ERROR = -32000  # the plugin failed; the message says why
INVALID_SPEC = -32010  # data: {"Problems": [[path, fault], ...]}
NOT_LEADER = -32011  # data: {"Leader": location or null}
GROUP_NOT_FOUND = -32012
UNSUPPORTED = -32013  # the plugin does not implement the interface

# A handshake is small: a plugin that does not answer it this fast is not there.
HANDSHAKE_TIMEOUT = 3.0

# Calls that may be repeated safely when a reply is lost.
IDEMPOTENT = frozenset(
    {
        "Handshake.Implements",
        "Plugin.Implements",
        "Instance.Validate",
        "Instance.DescribeInstances",
        "Instance.Sweep",
        "Flavor.Validate",
        "Flavor.Prepare",
        "Flavor.Healthy",
        "Group.DescribeGroup",
        "Group.InspectGroups",
        "Manager.IsLeader",
        "Manager.LeaderLocation",
        "Manager.Status",
    }
)


def param(params: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """`params[key]`, matching the key in any letter case as Go's JSON decoding did."""
    if key in params:
        return params[key]
    wanted = key.lower()
    for name, value in params.items():
        if name.lower() == wanted:
            return value
    return default


def _object(params: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = param(params, key)
    if not isinstance(value, dict):
        raise RpcError(-32602, f"params.{key} must be an object")
    return value


def _string(params: Mapping[str, Any], key: str) -> str:
    value = param(params, key)
    if not isinstance(value, str) or not value:
        raise RpcError(-32602, f"params.{key} must be a non-empty string")
    return value


def _string_map(params: Mapping[str, Any], key: str) -> dict[str, str]:
    """An optional object param (null or missing: empty) as a str -> str dict."""
    value = param(params, key) or {}
    if not isinstance(value, dict):
        raise RpcError(-32602, f"params.{key} must be an object")
    return {str(k): str(v) for k, v in value.items()}


def _plugin_call(call: Callable[[], Any]) -> Any:
    """Run a plugin method, turning its errors into JSON-RPC errors with useful messages."""
    try:
        return call()
    except ValidationError as error:
        problems = [[path, reason] for path, reason in error.problems]
        raise RpcError(INVALID_SPEC, str(error), {"Problems": problems}) from None
    except PluginError as error:
        raise RpcError(PLUGIN_ERROR, str(error)) from None


def implements(plugin: object) -> list[dict[str, str]]:
    """The interfaces a local plugin object implements, as the handshake reports them."""
    apis = []
    if isinstance(plugin, InstancePlugin):
        apis.append(dict(INSTANCE_API))
    if isinstance(plugin, FlavorPlugin):
        apis.append(dict(FLAVOR_API))
    return apis


def plugin_handlers(plugin: InstancePlugin | FlavorPlugin) -> dict[str, Handler]:
    """Handlers that serve `plugin` (instance, flavor or both) under InfraKit's method names."""
    handlers: dict[str, Handler] = {}
    apis = implements(plugin)
    handlers["Handshake.Implements"] = lambda _p: {"APIs": apis}
    handlers["Plugin.Implements"] = handlers["Handshake.Implements"]
    if isinstance(plugin, InstancePlugin):
        handlers.update(_instance_handlers(plugin))
    if isinstance(plugin, FlavorPlugin):
        handlers.update(_flavor_handlers(plugin))
    return handlers


def _instance_handlers(plugin: InstancePlugin) -> dict[str, Handler]:
    def validate(p: dict[str, Any]) -> Any:
        _plugin_call(lambda: plugin.validate(param(p, "Properties")))
        return {"OK": True}

    def provision(p: dict[str, Any]) -> Any:
        spec = Spec.from_json(_object(p, "Spec"))
        return {"ID": _plugin_call(lambda: plugin.provision(spec))}

    def destroy(p: dict[str, Any]) -> Any:
        instance = _string(p, "Instance")
        _plugin_call(lambda: plugin.destroy(instance))
        return {"OK": True}

    def describe(p: dict[str, Any]) -> Any:
        tags = _string_map(p, "Tags")
        found = _plugin_call(lambda: plugin.describe_instances(tags))
        return {"Descriptions": [d.to_json() for d in found]}

    def label(p: dict[str, Any]) -> Any:
        instance = _string(p, "Instance")
        labels = _object(p, "Labels")
        _plugin_call(lambda: plugin.label(instance, {str(k): str(v) for k, v in labels.items()}))
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
            tags = _string_map(p, "Tags")
            return {"Swept": _plugin_call(lambda: sweepable.sweep(tags))}

        handlers["Instance.Sweep"] = sweep
    return handlers


def _flavor_handlers(plugin: FlavorPlugin) -> dict[str, Handler]:
    def allocation(p: dict[str, Any]) -> AllocationMethod:
        return AllocationMethod.from_json(param(p, "Allocation") or {})

    def validate(p: dict[str, Any]) -> Any:
        _plugin_call(lambda: plugin.validate(param(p, "Properties"), allocation(p)))
        return {"OK": True}

    def prepare(p: dict[str, Any]) -> Any:
        spec = Spec.from_json(_object(p, "Spec"))
        prepared = _plugin_call(lambda: plugin.prepare(param(p, "Properties"), spec, allocation(p)))
        return {"Spec": prepared.to_json()}

    def healthy(p: dict[str, Any]) -> Any:
        instance = Description.from_json(_object(p, "Instance"))
        health = _plugin_call(lambda: plugin.healthy(param(p, "Properties"), instance))
        return {"Health": int(health)}

    def drain(p: dict[str, Any]) -> Any:
        instance = Description.from_json(_object(p, "Instance"))
        _plugin_call(lambda: plugin.drain(param(p, "Properties"), instance))
        return {"OK": True}

    return {
        "Flavor.Validate": validate,
        "Flavor.Prepare": prepare,
        "Flavor.Healthy": healthy,
        "Flavor.Drain": drain,
    }


class RemotePlugin(InstancePlugin, FlavorPlugin, Sweepable):
    """A plugin in another process, reached through a `RemoteRef`.

    It has every method of both contracts (and `sweep`, our extension: a plugin that does not
    serve `Instance.Sweep` has nothing to sweep); `implements()` (the handshake, cached) says
    which interfaces the plugin behind it really serves. Transport failures and remote errors are
    raised as `PluginError` (a remote validation fault as `ValidationError`, path kept), so the
    group treats them like any plugin failure: retried with backoff.
    """

    def __init__(self, name: str, ref: RemoteRef) -> None:
        self.name = name
        self.ref = ref
        self._apis: list[dict[str, str]] | None = None

    def implements(self) -> list[dict[str, str]]:
        if self._apis is None:
            result = self._call("Handshake.Implements", {}, timeout=self._quick())
            self._apis = [dict(api) for api in result.get("APIs") or []]
        return self._apis

    def require(self, interface: str) -> None:
        """Raise ValidationError unless the plugin serves `interface` at our version (PluginError
        if it does not answer)."""
        for api in self.implements():
            if api.get("Name") == interface:
                if api.get("Version") != API_VERSION:
                    raise ValidationError(
                        f"Plugin supports {interface} interface version {api.get('Version')},"
                        f" client requires {API_VERSION}"
                    )
                return
        raise ValidationError(f"Plugin does not support interface {{{interface} {API_VERSION}}}")

    def _quick(self) -> float:
        """The per-attempt timeout of a call that must be answered within HANDSHAKE_TIMEOUT
        in all when the connection is down (a plugin not started yet, or gone)."""
        if self.ref.alive:
            return HANDSHAKE_TIMEOUT
        return HANDSHAKE_TIMEOUT / (1 + self.ref.retries)

    # Instance
    def validate(self, properties: Any, allocation: AllocationMethod | None = None) -> None:
        """Validate on the plugin; while its connection is down it gets HANDSHAKE_TIMEOUT to
        come back (the call is harmless to abandon), so a commit says at once that it does not
        answer, yet one made just after the plugin started still goes through."""
        timeout = None if self.ref.alive else self._quick()
        if allocation is None:
            self._call("Instance.Validate", {"Properties": properties}, timeout=timeout)
        else:
            self._call(
                "Flavor.Validate",
                {"Properties": properties, "Allocation": allocation.to_json()},
                timeout=timeout,
            )

    def provision(self, spec: Spec) -> str:
        return str(self._call("Instance.Provision", {"Spec": spec.to_json()})["ID"])

    def destroy(self, instance_id: str) -> None:
        self._call("Instance.Destroy", {"Instance": instance_id})

    def describe_instances(self, tags: Mapping[str, str]) -> list[Description]:
        result = self._call("Instance.DescribeInstances", {"Tags": dict(tags)})
        return [Description.from_json(d) for d in result.get("Descriptions") or []]

    def label(self, instance_id: str, labels: Mapping[str, str]) -> None:
        self._call("Instance.Label", {"Instance": instance_id, "Labels": dict(labels)})

    def sweep(self, tags: Mapping[str, str]) -> list[str]:
        # A plugin without our extension keeps no remains to sweep.
        result = self._call("Instance.Sweep", {"Tags": dict(tags)}, optional=True) or {}
        return [str(i) for i in result.get("Swept") or []]

    # Flavor
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
        return Health(int(result.get("Health", 0)))

    def drain(self, properties: Any, instance: Description) -> None:
        self._call("Flavor.Drain", {"Properties": properties, "Instance": instance.to_json()})

    def close(self) -> None:
        self.ref.close()

    def _call(
        self,
        method: str,
        params: dict[str, Any],
        timeout: float | None = None,
        optional: bool = False,
    ) -> Any:
        """Call `method`; an `optional` one the plugin does not serve returns None."""
        try:
            return self.ref.call(method, params, timeout=timeout)
        except RemoteError as error:
            if optional and error.code == METHOD_NOT_FOUND:
                return None
            if error.code == INVALID_SPEC:
                raise ValidationError.of(spec_problems(error)) from None
            raise PluginError(f"plugin {self.name!r}: {error.message}") from None
        except (RpcTimeout, RpcClosed) as error:
            raise PluginError(f"plugin {self.name!r}: {error}") from None


def spec_problems(error: RemoteError) -> list[tuple[str, str]]:
    """The (path, fault) pairs of an INVALID_SPEC error; anything malformed is kept as text."""
    data = error.data if isinstance(error.data, dict) else {}
    found = param(data, "Problems")
    problems = []
    for problem in found if isinstance(found, list) else []:
        if isinstance(problem, list | tuple) and len(problem) == 2:
            problems.append((str(problem[0]), str(problem[1])))
        else:
            problems.append(("", str(problem)))
    return problems or [("", error.message)]


def connect_plugin(
    name: str,
    endpoint: str,
    timeout: float = 30.0,
    on_change: Callable[[bool, str], None] | None = None,
) -> RemotePlugin:
    """A `RemotePlugin` for the plugin served at `endpoint`.

    `on_change(up, reason)` hears when the connection to the plugin is lost or back (ZMTP
    heartbeats notice a peer that stops answering); it must return at once.
    """
    ref = RemoteRef(
        endpoint,
        timeout=timeout,
        idempotent=IDEMPOTENT,
        name=f"plugin-{name}",
        on_down=(lambda reason: on_change(False, reason)) if on_change else None,
        on_up=(lambda reason: on_change(True, reason)) if on_change else None,
    )
    return RemotePlugin(name, ref)


def group_handlers(runtime: Runtime) -> dict[str, Handler]:
    """The manager's API: InfraKit's Group methods plus Manager.*, served by a runtime."""
    from infrakit.manager.actor import GroupCannotRunError, GroupNotFoundError, NotLeaderError

    def guarded(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except SpecError as error:
            raise RpcError(
                INVALID_SPEC, str(error), {"Problems": [list(p) for p in error.problems]}
            ) from None
        except NotLeaderError as error:
            raise RpcError(NOT_LEADER, str(error), {"Leader": runtime.leader_location()}) from None
        except GroupNotFoundError as error:
            raise RpcError(GROUP_NOT_FOUND, str(error)) from None
        except (GroupCannotRunError, PluginError) as error:
            raise RpcError(PLUGIN_ERROR, str(error)) from None

    def commit(p: dict[str, Any]) -> Any:
        spec = _object(p, "Spec")
        pretend = bool(param(p, "Pretend", False))
        return {"ID": spec.get("ID"), "Details": guarded(lambda: runtime.commit(spec, pretend))}

    def free(p: dict[str, Any]) -> Any:
        group_id = _string(p, "ID")
        guarded(lambda: runtime.free(group_id))
        return {"OK": True}

    def describe(p: dict[str, Any]) -> Any:
        group_id = _string(p, "ID")
        return {"Description": guarded(lambda: runtime.describe(group_id))}

    def destroy(p: dict[str, Any]) -> Any:
        group_id = _string(p, "ID")
        guarded(lambda: runtime.start_destroy(group_id))
        return {"OK": True}

    def inspect(_p: dict[str, Any]) -> Any:
        return {"Groups": guarded(runtime.inspect)}

    def status(_p: dict[str, Any]) -> Any:
        return guarded(runtime.status)

    return {
        "Handshake.Implements": lambda _p: {"APIs": [dict(GROUP_API), dict(MANAGER_API)]},
        "Plugin.Implements": lambda _p: {"APIs": [dict(GROUP_API), dict(MANAGER_API)]},
        "Group.CommitGroup": commit,
        "Group.FreeGroup": free,
        "Group.DescribeGroup": describe,
        "Group.DestroyGroup": destroy,
        "Group.InspectGroups": inspect,
        "Manager.IsLeader": lambda _p: {"Leader": runtime.is_leader()},
        "Manager.LeaderLocation": lambda _p: {"Location": runtime.leader_location()},
        "Manager.Status": status,
    }
