"""The group plugin contract on the wire: InfraKit's `Group.*` and our `Manager.*` handlers
serving a `GroupPlugin` (a runtime's), and `GroupClient`, which calls one and raises its
errors as the same typed errors: `SpecError` with every fault, `NotLeaderError` naming the
leader, `GroupNotFoundError`; `PluginError` for the rest (`GroupCannotRunError` too, which
travels as a plugin error)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from actors.rpc_caller import authenticated_user
from actors.rpc_errors import INVALID_PARAMS, METHOD_NOT_FOUND, RemoteError, RpcError
from infrakit.spi.errors import PluginError, SpecError
from infrakit.spi.group import (
    PROCESSES,
    ActivityHistory,
    Caller,
    GroupCannotRunError,
    GroupID,
    GroupNotFoundError,
    GroupPlugin,
    GroupStateError,
    Maintenance,
    NotLeaderError,
    NotOwnerError,
    RecentEvents,
    RevisionError,
    Revisions,
)
from infrakit.wire.common import (
    BAD_REVISION,
    GROUP_NOT_FOUND,
    HANDSHAKE,
    INVALID_SPEC,
    NOT_LEADER,
    OLD_HANDSHAKE,
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

if TYPE_CHECKING:
    from infrakit.wire.forward import Forward

FORWARDED = "Forwarded"
"""The param a follower adds to a call it forwards: `{"Who", "Authenticated"}`, the
caller as the follower knew it (docs/protocol.md). A forwarded call is never forwarded again."""

ANSWERED_HERE = frozenset({"Manager.IsLeader", "Manager.LeaderLocation"})
"""What a follower answers itself rather than forwarding (with the handshakes)."""


def group_handlers(plugin: GroupPlugin, forward: Forward | None = None) -> dict[str, Handler]:
    """InfraKit's Group methods plus Manager.*, served by `plugin`. With `forward`, a call that
    `plugin` refuses as a follower is sent on to the leader and its answer returned as it is
    (`Manager.Status` keeps this manager's own view, with the leader's groups)."""
    handlers = _served(plugin)
    if forward is None:
        return handlers
    local = ANSWERED_HERE | {HANDSHAKE, OLD_HANDSHAKE}
    forwarding = {
        method: handler if method in local else _forwarding(method, handler, forward)
        for method, handler in handlers.items()
    }
    forwarding["Manager.Status"] = _status_with_groups(plugin, forward)
    return forwarding


def _forwarding(method: str, handler: Handler, forward: Forward) -> Handler:
    """`handler`, whose refusal as a follower sends the call on to the leader with who made
    it, once: a call that was forwarded already is answered here, refusal and all."""

    def handle(p: dict[str, Any]) -> Any:
        try:
            return handler(p)
        except RpcError as error:
            if error.code != NOT_LEADER or param(p, FORWARDED) is not None:
                raise
            # Shared mode: the group's owner; else wherever the forwarder knows the leader is.
            where = error.data.get("Owner") if isinstance(error.data, dict) else None
        who = _caller(p)
        vouched = {"Who": who.name, "Authenticated": who.authenticated} if who else {}
        return forward(method, {**p, FORWARDED: vouched}, where if isinstance(where, str) else None)

    return handle


def _status_with_groups(plugin: GroupPlugin, forward: Forward) -> Handler:
    """`Manager.Status` of this manager; a follower's carries the leader's `Groups` (what
    `group ls` and `--wait` read), in shared mode every owner's, or says in `GroupsError` why
    it could not get them."""

    def status(p: dict[str, Any]) -> Any:
        mine = plugin_call(plugin.status)
        if param(p, FORWARDED) is not None:
            return mine
        if mine.get("Mode") == "shared":
            return _with_every_owners_groups(mine, forward)
        if mine.get("Leader"):
            return mine
        try:
            theirs = forward("Manager.Status", {FORWARDED: {}})
        except RpcError as error:
            return {**mine, "GroupsError": error.message}
        groups = param(theirs, "Groups") if isinstance(theirs, dict) else None
        return {**mine, "Groups": groups if isinstance(groups, list) else []}

    return status


def _with_every_owners_groups(mine: dict[str, Any], forward: Forward) -> dict[str, Any]:
    """Shared mode: this manager's status with the `Groups` of every other owner (asked one
    after the other), so that `group ls` on any manager lists every group."""
    owners = mine.get("Owners")
    others = sorted(set(owners.values()) if isinstance(owners, dict) else set())
    groups = list(mine.get("Groups") or [])
    failed = []
    for location in others:
        if location == mine.get("Location"):
            continue
        try:
            theirs = forward("Manager.Status", {FORWARDED: {}}, location)
        except RpcError as error:
            failed.append(f"{location}: {error.message}")
            continue
        found = param(theirs, "Groups") if isinstance(theirs, dict) else None
        groups.extend(g for g in found or [] if isinstance(g, dict))
    result = {**mine, "Groups": sorted(groups, key=lambda g: str(g.get("ID")))}
    if failed:
        result["GroupsError"] = "; ".join(failed)
    return result


def _served(plugin: GroupPlugin) -> dict[str, Handler]:
    """The handlers serving `plugin` itself, a follower's refusals included."""

    def guarded(call: Callable[[], Any]) -> Any:
        try:
            return plugin_call(call)
        except NotOwnerError as error:  # shared mode: the group's owner, not the leader
            raise RpcError(
                NOT_LEADER, str(error), {"Leader": error.leader, "Owner": error.leader}
            ) from None
        except NotLeaderError as error:
            raise RpcError(NOT_LEADER, str(error), {"Leader": error.leader}) from None
        except GroupNotFoundError as error:
            raise RpcError(GROUP_NOT_FOUND, str(error)) from None
        except (GroupCannotRunError, GroupStateError) as error:
            raise RpcError(PLUGIN_ERROR, str(error)) from None
        except RevisionError as error:
            raise RpcError(BAD_REVISION, str(error), {"Current": error.current}) from None

    def commit(p: dict[str, Any]) -> Any:
        spec = object_param(p, "Spec")
        pretend = bool(param(p, "Pretend", False))
        if isinstance(plugin, Revisions):
            keeper = plugin
            expect, who = _expected(p), _caller(p)
            done = guarded(lambda: keeper.commit_revision(spec, pretend, expect, who))
            return {"ID": spec.get("ID"), **done}
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

    extra: dict[str, Handler] = {}
    if isinstance(plugin, RecentEvents):
        source = plugin

        def recent(p: dict[str, Any]) -> Any:
            since, after, group = _recent_params(p)
            return guarded(lambda: source.recent_events(since, group, after))

        extra["Events.Recent"] = recent
    if isinstance(plugin, ActivityHistory):
        history = plugin

        def activity(p: dict[str, Any]) -> Any:
            group_id = string_param(p, "ID")
            limit = param(p, "Limit")
            if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
                raise RpcError(INVALID_PARAMS, "params.Limit must be a whole number or null")
            if limit is not None and limit < 1:
                raise RpcError(INVALID_PARAMS, "params.Limit must be 1 or more")
            return {"Activity": guarded(lambda: history.group_activity(group_id, limit))}

        extra["Group.Activity"] = activity
    if isinstance(plugin, Revisions):
        extra.update(_revision_handlers(plugin, guarded))
    if isinstance(plugin, Maintenance):
        extra.update(_maintenance_handlers(plugin, guarded))
    return {
        **extra,
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


def _revision_handlers(
    plugin: Revisions, guarded: Callable[[Callable[[], Any]], Any]
) -> dict[str, Handler]:
    """Group.History, Rollback, Pause, Resume and Scale (ours: docs/protocol.md)."""

    def history(p: dict[str, Any]) -> Any:
        group_id = string_param(p, "ID")
        return guarded(lambda: plugin.group_history(group_id))

    def rollback(p: dict[str, Any]) -> Any:
        group_id, to = string_param(p, "ID"), _revision_param(p, "To")
        expect, who = _expected(p), _caller(p)
        return {"ID": group_id, **guarded(lambda: plugin.rollback_group(group_id, to, expect, who))}

    def pause(p: dict[str, Any]) -> Any:
        group_id, who = string_param(p, "ID"), _caller(p)
        return guarded(lambda: plugin.pause_group(group_id, who))

    def resume(p: dict[str, Any]) -> Any:
        group_id, who = string_param(p, "ID"), _caller(p)
        return guarded(lambda: plugin.resume_group(group_id, who))

    def scale(p: dict[str, Any]) -> Any:
        group_id = string_param(p, "ID")
        size = param(p, "Size")
        if not _number(size) or not isinstance(size, int) or size < 0:
            raise RpcError(INVALID_PARAMS, "params.Size must be an integer, 0 or more")
        expect, who = _expected(p), _caller(p)
        done = guarded(lambda: plugin.scale_group(group_id, size, expect, who))
        return {"ID": group_id, **done}

    return {
        "Group.History": history,
        "Group.Rollback": rollback,
        "Group.Pause": pause,
        "Group.Resume": resume,
        "Group.Scale": scale,
    }


def _maintenance_handlers(
    plugin: Maintenance, guarded: Callable[[Callable[[], Any]], Any]
) -> dict[str, Handler]:
    """Group.Promote, Group.Suspend and Group.Standby (ours: docs/protocol.md)."""

    def promote(p: dict[str, Any]) -> Any:
        group_id, who = string_param(p, "ID"), _caller(p)
        return guarded(lambda: plugin.promote_group(group_id, who))

    def suspend(p: dict[str, Any]) -> Any:
        group_id, who = string_param(p, "ID"), _caller(p)
        processes = param(p, "Processes")
        if not isinstance(processes, list) or not processes:
            raise RpcError(INVALID_PARAMS, f"params.Processes must list some of {_PROCESSES}")
        for index, name in enumerate(processes):
            if name not in PROCESSES:
                raise RpcError(
                    INVALID_PARAMS, f"params.Processes[{index}] must be one of {_PROCESSES}"
                )
        on = _flag(p, "Suspend", True)
        return guarded(lambda: plugin.suspend_group(group_id, processes, on, who))

    def standby(p: dict[str, Any]) -> Any:
        group_id, logical_id, who = string_param(p, "ID"), string_param(p, "LogicalID"), _caller(p)
        on = _flag(p, "Standby", True)
        return guarded(lambda: plugin.standby_instance(group_id, logical_id, on, who))

    return {"Group.Promote": promote, "Group.Suspend": suspend, "Group.Standby": standby}


_PROCESSES = ", ".join(PROCESSES)


def _flag(p: dict[str, Any], key: str, default: bool) -> bool:
    value = param(p, key, default)
    if not isinstance(value, bool):
        raise RpcError(INVALID_PARAMS, f"params.{key} must be true or false")
    return value


def _revision_param(p: dict[str, Any], key: str) -> int | None:
    """An optional revision number param (null or missing: None), or invalid params."""
    value = param(p, key)
    if value is None:
        return None
    if not _number(value) or not isinstance(value, int) or value < 0:
        raise RpcError(INVALID_PARAMS, f"params.{key} must be a revision number (1, 2, ...)")
    return value


def _expected(p: dict[str, Any]) -> int | None:
    return _revision_param(p, "ExpectRevision")


def _caller(p: dict[str, Any]) -> Caller | None:
    """Who makes the call: the CURVE key's name the server authenticated, else the user name
    the client says it runs as (`User`, not checked), else nobody known. A forwarded call is
    the original caller's, as the follower vouches (`_vouched`)."""
    forwarded = param(p, FORWARDED)
    if forwarded is not None:
        return _vouched(forwarded)
    user = authenticated_user()
    if user is not None:
        return Caller(user, authenticated=True)
    claimed = param(p, "User")
    if claimed is None:
        return None
    if not isinstance(claimed, str) or not claimed or len(claimed) > 256:
        raise RpcError(INVALID_PARAMS, "params.User must be a user name (a short string)")
    return Caller(claimed)


def _vouched(forwarded: Any) -> Caller | None:
    """The caller a follower forwards for. Its `Authenticated` stands only if the follower's
    own connection was authenticated (its CURVE key is one this manager authorizes: trusted to
    vouch, as it is trusted to commit anything); otherwise the name is recorded unchecked."""
    if not isinstance(forwarded, dict):
        raise RpcError(INVALID_PARAMS, f"params.{FORWARDED} must be an object")
    who = param(forwarded, "Who")
    if who is None:
        return None
    if not isinstance(who, str) or not who or len(who) > 256:
        raise RpcError(INVALID_PARAMS, f"params.{FORWARDED}.Who must be a user name")
    vouched = param(forwarded, "Authenticated") is True and authenticated_user() is not None
    return Caller(who, authenticated=vouched)


def _recent_params(p: dict[str, Any]) -> tuple[float, int, str | None]:
    """`Events.Recent`'s `Since` (seconds), `After` and `Group`, or invalid params naming the
    one that is wrong."""
    since = param(p, "Since", 0)
    if not _number(since) or not math.isfinite(since) or since < 0:
        raise RpcError(INVALID_PARAMS, "params.Since must be a number of seconds, 0 or more")
    after = param(p, "After", 0)
    if not _number(after) or not isinstance(after, int):
        raise RpcError(INVALID_PARAMS, "params.After must be an integer")
    group = param(p, "Group")
    if group is not None and not isinstance(group, str):
        raise RpcError(INVALID_PARAMS, "params.Group must be a string or null")
    return float(since), after, group or None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class GroupClient(Client, GroupPlugin, RecentEvents, ActivityHistory, Revisions, Maintenance):
    """The Group and Manager API of a runtime in another process (or of Go InfraKit's manager,
    which serves no `Manager.Status` nor `Manager.LeaderLocation`: those raise `Unsupported`).
    Messages are the server's own, whole: they are written for operators."""

    IDEMPOTENT = Client.IDEMPOTENT | {
        "Group.DescribeGroup",
        "Group.InspectGroups",
        "Manager.IsLeader",
        "Manager.LeaderLocation",
        "Manager.Status",
        "Events.Recent",
        "Group.Activity",
        "Group.History",
        "Group.Pause",
        "Group.Resume",
        "Group.Suspend",
        "Group.Standby",
    }

    def commit_group(self, spec: Mapping[str, Any], pretend: bool = False) -> str:
        result = self._call("Group.CommitGroup", {"Spec": spec, "Pretend": pretend})
        return str(_field(result, "Details"))

    def commit_revision(
        self,
        spec: Mapping[str, Any],
        pretend: bool = False,
        expect_revision: int | None = None,
        who: Caller | None = None,
    ) -> dict[str, Any]:
        params = {"Spec": spec, "Pretend": pretend, **_changer(expect_revision, who)}
        return _object(self._call("Group.CommitGroup", params))

    def group_history(self, group_id: GroupID) -> dict[str, Any]:
        return _object(self._call("Group.History", {"ID": group_id}))

    def rollback_group(
        self,
        group_id: GroupID,
        to: int | None = None,
        expect_revision: int | None = None,
        who: Caller | None = None,
    ) -> dict[str, Any]:
        params = {"ID": group_id, "To": to, **_changer(expect_revision, who)}
        return _object(self._call("Group.Rollback", params))

    def pause_group(self, group_id: GroupID, who: Caller | None = None) -> dict[str, Any]:
        return _object(self._call("Group.Pause", {"ID": group_id, **_changer(None, who)}))

    def resume_group(self, group_id: GroupID, who: Caller | None = None) -> dict[str, Any]:
        return _object(self._call("Group.Resume", {"ID": group_id, **_changer(None, who)}))

    def scale_group(
        self,
        group_id: GroupID,
        size: int,
        expect_revision: int | None = None,
        who: Caller | None = None,
    ) -> dict[str, Any]:
        params = {"ID": group_id, "Size": size, **_changer(expect_revision, who)}
        return _object(self._call("Group.Scale", params))

    def promote_group(self, group_id: GroupID, who: Caller | None = None) -> dict[str, Any]:
        return _object(self._call("Group.Promote", {"ID": group_id, **_changer(None, who)}))

    def suspend_group(
        self, group_id: GroupID, processes: list[str], suspend: bool, who: Caller | None = None
    ) -> dict[str, Any]:
        params = {"ID": group_id, "Processes": processes, "Suspend": suspend}
        return _object(self._call("Group.Suspend", {**params, **_changer(None, who)}))

    def standby_instance(
        self, group_id: GroupID, logical_id: str, standby: bool, who: Caller | None = None
    ) -> dict[str, Any]:
        params = {"ID": group_id, "LogicalID": logical_id, "Standby": standby}
        return _object(self._call("Group.Standby", {**params, **_changer(None, who)}))

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

    def recent_events(
        self, since: float, group: GroupID | None = None, after: int = 0
    ) -> dict[str, Any]:
        replay = self._call("Events.Recent", {"Since": since, "Group": group, "After": after})
        return replay if isinstance(replay, dict) else {}

    def group_activity(self, group_id: GroupID, limit: int | None = None) -> list[dict[str, Any]]:
        entries = _field(self._call("Group.Activity", {"ID": group_id, "Limit": limit}), "Activity")
        return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []

    def _error(self, error: RemoteError) -> Exception:
        data = error.data if isinstance(error.data, dict) else {}
        if error.code == NOT_LEADER:
            leader = param(data, "Leader")
            return NotLeaderError(error.message, leader if isinstance(leader, str) else None)
        if error.code == GROUP_NOT_FOUND:
            return GroupNotFoundError(error.message)
        if error.code == INVALID_SPEC:
            return SpecError(spec_problems(error))
        if error.code == BAD_REVISION:
            current = param(data, "Current")
            return RevisionError(error.message, current if isinstance(current, int) else None)
        if error.code == METHOD_NOT_FOUND:
            return Unsupported(error.message)
        return PluginError(error.message)


def _changer(expect_revision: int | None, who: Caller | None) -> dict[str, Any]:
    """The optional params of a change: the revision it expects, and the user it is made by
    (a server with CURVE keys records the key's name instead)."""
    params: dict[str, Any] = {}
    if expect_revision is not None:
        params["ExpectRevision"] = expect_revision
    if who is not None:
        params["User"] = who.name
    return params


def _object(result: Any) -> dict[str, Any]:
    return result if isinstance(result, dict) else {}


def _field(result: Any, key: str) -> Any:
    """`result[key]` (any letter case, as Go's JSON decoding), or None if `result` is not an
    object."""
    return param(result, key) if isinstance(result, dict) else None
