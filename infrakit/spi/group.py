"""The group plugin contract: InfraKit's Group API, the Manager API served beside it, and the
errors both raise. A runtime implements it; the wire serves it and calls it (infrakit/wire)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

GroupID = str


class GroupNotFoundError(KeyError):
    """No group of that ID is being watched (InfraKit's words)."""

    def __str__(self) -> str:
        return str(self.args[0])


class NotLeaderError(RuntimeError):
    """This manager does not lead; `leader` is where the leader is, if known (the message says
    it too)."""

    def __init__(self, message: str = "not the leader", leader: str | None = None) -> None:
        super().__init__(message)
        self.leader = leader


class NotOwnerError(NotLeaderError):
    """Shared mode: another manager runs this group; `leader` is where (the wire sends the
    call on there)."""


class GroupCannotRunError(RuntimeError):
    """The group is known but cannot run (its plugin is unknown, its spec refused...)."""


class GroupStateError(RuntimeError):
    """The group is not in a state the request applies to (a promotion with no canary waiting,
    a standby of a logical ID the group does not have); the message says why."""


PROCESSES = ("heal", "launch", "terminate", "rollout")
"""What an operator may suspend in a group (AWS ASG's suspended processes)."""


class RevisionError(ValueError):
    """A revision that cannot be used: a stale expected revision (optimistic concurrency: the
    group moved on since the caller looked), or one the history does not hold. `current` is
    the group's revision now (the message names it too)."""

    def __init__(self, message: str, current: int | None = None) -> None:
        super().__init__(message)
        self.current = current

    def __str__(self) -> str:
        return str(self.args[0])


class Caller(NamedTuple):
    """Who asks for a change, as a revision records it: the CURVE key's name (`authenticated`),
    or the user name a client says it runs as (not checked), or a name the runtime gives its
    own changes ("cluster file", "OnFailure")."""

    name: str
    authenticated: bool = False


def not_leader(location: str | None) -> NotLeaderError:
    """The error a follower answers with, naming the leader's location when it is known."""
    if location:
        return NotLeaderError(f"not the leader; the leader is at {location}", location)
    return NotLeaderError()


@runtime_checkable
class GroupPlugin(Protocol):
    """Keeps groups of instances as their specs say. Every method may raise `NotLeaderError`
    (only the leader acts and answers about groups), `PluginError` when something it needs
    fails, and those that name a group `GroupNotFoundError` when it is not watched."""

    # InfraKit's Group API

    def commit_group(self, spec: Mapping[str, Any], pretend: bool = False) -> str:
        """Create or change the group `spec` (InfraKit's JSON) describes; return what that does
        in InfraKit's words (`Managing 3 instances`). With `pretend`, only say it. Raises
        `SpecError` with every fault of a refused spec."""
        ...

    def free_group(self, group_id: GroupID) -> None:
        """Stop watching the group; its instances keep running."""

    def describe_group(self, group_id: GroupID) -> dict[str, Any]:
        """`{"Instances": [Description], "Converged": bool, "Conditions": [str]}`, as the
        group's last look found it; an instance may carry its flavor's `Status`."""
        ...

    def destroy_group(self, group_id: GroupID) -> None:
        """Begin draining and destroying every instance of the group, then forget it; returns at
        once. Raises `GroupCannotRunError` for a group that cannot run to be destroyed."""

    def inspect_groups(self) -> list[dict[str, Any]]:
        """Every committed group spec, as JSON."""
        ...

    # The Manager API (ours, beside Go InfraKit's Manager.IsLeader)

    def is_leader(self) -> bool:
        """Whether this manager leads now. Never raises `NotLeaderError`."""
        ...

    def leader_location(self) -> str | None:
        """Where the leader can be reached, if known. Never raises `NotLeaderError`."""
        ...

    def status(self) -> dict[str, Any]:
        """This manager's view of itself: leadership, location, plugins, a summary per group
        (docs/protocol.md, `Manager.Status`). Never raises `NotLeaderError`."""
        ...


@runtime_checkable
class RecentEvents(Protocol):
    """A Group API that also replays its recent lifecycle events (ours: `Events.Recent`)."""

    def recent_events(
        self, since: float, group: GroupID | None = None, after: int = 0
    ) -> dict[str, Any]:
        """`{"Events": [event], "Capacity", "MaxAge", "Oldest", "Truncated"}`: the events of
        the last `since` seconds (of `group` only, if given) numbered above `after`, oldest
        first, and what the buffer keeps (docs/protocol.md). May raise `NotLeaderError`."""
        ...


@runtime_checkable
class Revisions(Protocol):
    """A Group API that keeps each group's revisions (ours, docs/protocol.md): every real
    commit is numbered and kept with who made it, and may be checked against the revision the
    caller expects (a stale one raises `RevisionError`). The group methods may raise what
    `GroupPlugin`'s do."""

    def commit_revision(
        self,
        spec: Mapping[str, Any],
        pretend: bool = False,
        expect_revision: int | None = None,
        who: Caller | None = None,
    ) -> dict[str, Any]:
        """`commit_group`, recorded: `{"Details": sentence, "Revision": number now}`."""
        ...

    def group_history(self, group_id: GroupID) -> dict[str, Any]:
        """`{"ID", "Revision", "Paused", "Revisions": [...]}`, the newest revision last."""
        ...

    def rollback_group(
        self,
        group_id: GroupID,
        to: int | None = None,
        expect_revision: int | None = None,
        who: Caller | None = None,
    ) -> dict[str, Any]:
        """Commit revision `to` again (default: the latest earlier one that fully rolled
        out), as a new revision; `{"Details", "Revision"}`."""
        ...

    def pause_group(self, group_id: GroupID, who: Caller | None = None) -> dict[str, Any]:
        """Take no more rolling-update steps until resumed (self-healing goes on)."""
        ...

    def resume_group(self, group_id: GroupID, who: Caller | None = None) -> dict[str, Any]:
        """Go on with the rolling update (one paused by an operator or by a failure)."""
        ...

    def scale_group(
        self,
        group_id: GroupID,
        size: int,
        expect_revision: int | None = None,
        who: Caller | None = None,
    ) -> dict[str, Any]:
        """Set a Size group's size, as a revision of its own (no rolling update)."""
        ...


@runtime_checkable
class ActivityHistory(Protocol):
    """A Group API that also says what it did to each group and why (ours: `Group.Activity`)."""

    def group_activity(self, group_id: GroupID, limit: int | None = None) -> list[dict[str, Any]]:
        """`[{"Time", "What", "Cause", "Kind", "LogicalID", "Instance"}]`, oldest first: the
        last `limit` entries if given (docs/protocol.md). May raise `NotLeaderError`, and
        `GroupNotFoundError` for a group neither watched nor with a history."""
        ...


@runtime_checkable
class Maintenance(Protocol):
    """A Group API that lets an operator steer a group by hand (ours, docs/protocol.md):
    promote a rollout's canaries, suspend and unsuspend processes, put an instance in standby.
    Each answers `{"ID", ..., "Details"}`, is stored (a restart or a new leader keeps it), and
    may raise what `GroupPlugin`'s methods do, and `GroupStateError`."""

    def promote_group(self, group_id: GroupID, who: Caller | None = None) -> dict[str, Any]:
        """Let a rollout whose canaries are healthy roll the rest."""
        ...

    def suspend_group(
        self, group_id: GroupID, processes: list[str], suspend: bool, who: Caller | None = None
    ) -> dict[str, Any]:
        """Suspend (or, `suspend` false, resume) `processes`, of `PROCESSES`;
        `{"ID", "Suspended": [...], "Details"}`."""
        ...

    def standby_instance(
        self, group_id: GroupID, logical_id: str, standby: bool, who: Caller | None = None
    ) -> dict[str, Any]:
        """Put the logical instance in standby (or take it out); `{"ID", "LogicalID",
        "Standby": [...], "Details"}`."""
        ...
