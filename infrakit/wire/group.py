"""The group plugin contract on the wire: InfraKit's `Group.*` and our `Manager.*` handlers
serving a `GroupPlugin` (a runtime's), and `GroupClient`, which calls one and raises its
errors as the same typed errors: `SpecError` with every fault, `NotLeaderError` naming the
leader, `GroupNotFoundError`; `PluginError` for the rest (`GroupCannotRunError` too, which
travels as a plugin error)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from actors.rpc_errors import METHOD_NOT_FOUND, RemoteError, RpcError
from infrakit.spi.errors import PluginError, SpecError
from infrakit.spi.group import (
    GroupCannotRunError,
    GroupID,
    GroupNotFoundError,
    GroupPlugin,
    NotLeaderError,
)
from infrakit.wire.common import (
    GROUP_NOT_FOUND,
    INVALID_SPEC,
    NOT_LEADER,
    PLUGIN_ERROR,
    Client,
    Handler,
    Unsupported,
    api,
    handshake,
    object_param,
    param,
    plugin_call,
    spec_problems,
    string_param,
)


def group_handlers(plugin: GroupPlugin) -> dict[str, Handler]:
    """InfraKit's Group methods plus Manager.*, served by `plugin`."""

    def guarded(call: Callable[[], Any]) -> Any:
        try:
            return plugin_call(call)
        except NotLeaderError as error:
            raise RpcError(NOT_LEADER, str(error), {"Leader": error.leader}) from None
        except GroupNotFoundError as error:
            raise RpcError(GROUP_NOT_FOUND, str(error)) from None
        except GroupCannotRunError as error:
            raise RpcError(PLUGIN_ERROR, str(error)) from None

    def commit(p: dict[str, Any]) -> Any:
        spec = object_param(p, "Spec")
        pretend = bool(param(p, "Pretend", False))
        details = guarded(lambda: plugin.commit_group(spec, pretend))
        return {"ID": spec.get("ID"), "Details": details}

    def free(p: dict[str, Any]) -> Any:
        group_id = string_param(p, "ID")
        guarded(lambda: plugin.free_group(group_id))
        return {"OK": True}

    def describe(p: dict[str, Any]) -> Any:
        group_id = string_param(p, "ID")
        return {"Description": guarded(lambda: plugin.describe_group(group_id))}

    def destroy(p: dict[str, Any]) -> Any:
        group_id = string_param(p, "ID")
        guarded(lambda: plugin.destroy_group(group_id))
        return {"OK": True}

    return {
        **handshake([api("Group"), api("Manager")]),
        "Group.CommitGroup": commit,
        "Group.FreeGroup": free,
        "Group.DescribeGroup": describe,
        "Group.DestroyGroup": destroy,
        "Group.InspectGroups": lambda _p: {"Groups": guarded(plugin.inspect_groups)},
        "Manager.IsLeader": lambda _p: {"Leader": plugin.is_leader()},
        "Manager.LeaderLocation": lambda _p: {"Location": plugin.leader_location()},
        "Manager.Status": lambda _p: guarded(plugin.status),
    }


class GroupClient(Client, GroupPlugin):
    """The Group and Manager API of a runtime in another process (or of Go InfraKit's manager,
    which serves no `Manager.Status` nor `Manager.LeaderLocation`: those raise `Unsupported`).
    Messages are the server's own, whole: they are written for operators."""

    IDEMPOTENT = Client.IDEMPOTENT | {
        "Group.DescribeGroup",
        "Group.InspectGroups",
        "Manager.IsLeader",
        "Manager.LeaderLocation",
        "Manager.Status",
    }

    def commit_group(self, spec: Mapping[str, Any], pretend: bool = False) -> str:
        result = self._call("Group.CommitGroup", {"Spec": spec, "Pretend": pretend})
        return str(_field(result, "Details"))

    def free_group(self, group_id: GroupID) -> None:
        self._call("Group.FreeGroup", {"ID": group_id})

    def describe_group(self, group_id: GroupID) -> dict[str, Any]:
        description = _field(self._call("Group.DescribeGroup", {"ID": group_id}), "Description")
        return description if isinstance(description, dict) else {}

    def destroy_group(self, group_id: GroupID) -> None:
        self._call("Group.DestroyGroup", {"ID": group_id})

    def inspect_groups(self) -> list[dict[str, Any]]:
        groups = _field(self._call("Group.InspectGroups", {}), "Groups")
        if not isinstance(groups, list):
            return []
        return [spec for spec in groups if isinstance(spec, dict)]

    def is_leader(self) -> bool:
        return bool(_field(self._call("Manager.IsLeader", {}), "Leader"))

    def leader_location(self) -> str | None:
        location = _field(self._call("Manager.LeaderLocation", {}), "Location")
        return str(location) if location else None

    def status(self) -> dict[str, Any]:
        status = self._call("Manager.Status", {})
        return status if isinstance(status, dict) else {}

    def _error(self, error: RemoteError) -> Exception:
        data = error.data if isinstance(error.data, dict) else {}
        if error.code == NOT_LEADER:
            leader = param(data, "Leader")
            return NotLeaderError(error.message, leader if isinstance(leader, str) else None)
        if error.code == GROUP_NOT_FOUND:
            return GroupNotFoundError(error.message)
        if error.code == INVALID_SPEC:
            return SpecError(spec_problems(error))
        if error.code == METHOD_NOT_FOUND:
            return Unsupported(error.message)
        return PluginError(error.message)


def _field(result: Any, key: str) -> Any:
    """`result[key]` (any letter case, as Go's JSON decoding), or None if `result` is not an
    object."""
    return param(result, key) if isinstance(result, dict) else None
