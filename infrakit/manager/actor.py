"""ManagerActor: commits, frees and destroys groups; acts only while it leads.

It supervises a LeaderActor (its first child) and one GroupSupervisor per committed group. A
commit is validated whole, stored (so it survives a crash), then handed to the group. On gaining
leadership it loads the store, starts every group (they adopt their instances by tags) and
applies the cluster file's groups; on losing it, it stops every group before anything else.
It publishes its records to `Views`, which is what operators' questions are answered from: the
manager never waits on a group, and nobody waits on the manager to read.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pykka

from actors import Backoff, ChildSpec, LeaderActor, Restart, Supervisor, tell_later
from actors.election import Election
from actors.owner import Member, Owned, OwnerActor, Ownership
from actors.workpool import WorkPool
from infrakit import events
from infrakit import rollout as rollouts
from infrakit.confighash import config_hash
from infrakit.group.instance import WantLook
from infrakit.group.plan import NO_HOLDS, Holds, commit_plan, describe_commit
from infrakit.group.reconciler import DestroyAll, Hooks, SetHolds, Update
from infrakit.group.supervisor import GroupSupervisor
from infrakit.manager import maintenance
from infrakit.manager.revisions import History, Revision, describe_change
from infrakit.manager.routing import elsewhere, route
from infrakit.manager.store import Store, StoreFenced
from infrakit.manager.validation import validate_with_plugins
from infrakit.rollout import Rollout
from infrakit.spec import (
    DEFAULT_MAX_GROUP_SIZE,
    GroupSpec,
    SpecError,
    parse_group,
    plugin_name,
)
from infrakit.spi import Description, FlavorPlugin, InstancePlugin, PluginError
from infrakit.spi.group import Caller, NotOwnerError, RevisionError
from infrakit.spi.group import (  # the Group API's errors, still importable from here
    GroupCannotRunError as GroupCannotRunError,
)
from infrakit.spi.group import (
    GroupNotFoundError as GroupNotFoundError,
)
from infrakit.spi.group import (
    NotLeaderError as NotLeaderError,
)
from infrakit.spi.group import (
    not_leader as not_leader,
)
from infrakit.views import GroupRecord, Views

log = logging.getLogger(__name__)

LEADER = "leader"
OWNER = "owner"  # shared mode: shares the groups out among the live managers
CALL_TIMEOUT = 30.0
# Why a group is not in the store any more, kept for the cluster file's groups so that an
# unedited cluster file never brings back a group that was destroyed or freed.
REMOVED_DESTROYED = "destroyed"
REMOVED_FREED = "freed"
FILE_GROUP_RETRY = 5.0  # seconds before a cluster file's group waiting on a plugin is retried
UNKNOWN = Caller("unknown")  # a change whose client said nothing of who it is
CLUSTER_FILE = Caller("cluster file")
ON_FAILURE = Caller("OnFailure")


class ClusterIdMismatch(RuntimeError):
    """The cluster file names a cluster ID other than the one the store was made with."""


@dataclass(frozen=True)
class _Leadership:
    leader: bool


@dataclass(frozen=True)
class _RolledBack:
    spec: GroupSpec
    rollout: Rollout


@dataclass(frozen=True)
class _Progress:
    """A group's rolling update moved on (or ended: None), for the spec of `config_hash`."""

    group_id: str
    config_hash: str
    rollout: Rollout | None


@dataclass(frozen=True)
class _Destroyed:
    group_id: str


@dataclass(frozen=True)
class _ApplyFileGroup:
    """Try again to commit a cluster file's group whose plugin did not answer."""

    spec: GroupSpec


class ManagerActor(Supervisor):
    """The manager of a runtime: the store, leadership, and a supervisor per group."""

    def __init__(
        self,
        election: Election,
        store: Store,
        plugins: Mapping[str, InstancePlugin | FlavorPlugin],
        publish: Callable[[events.Event], None],
        views: Views,
        initial_groups: Sequence[GroupSpec] = (),
        leader_poll: float = 1.0,
        cluster_id: str | None = None,
        max_group_size: int = DEFAULT_MAX_GROUP_SIZE,
        health_checks: WorkPool | None = None,
        ownership: Ownership | None = None,
    ) -> None:
        """With `ownership` (shared mode), this manager runs only the groups it owns, as its
        OwnerActor tells it; the election then only keeps this manager's lease alive."""
        children = [
            ChildSpec(LEADER, LeaderActor, args=(election,), kwargs={"interval": leader_poll})
        ]
        if ownership is not None:
            children.append(
                ChildSpec(
                    OWNER,
                    OwnerActor,
                    args=(ownership, store.group_ids),
                    kwargs={"interval": leader_poll},
                )
            )
        super().__init__(
            children=children,
            max_restarts=100,
            within=60.0,
            backoff=Backoff(initial=0.5, maximum=30.0),
        )
        self.election = election
        self.ownership = ownership
        self.store = store
        self.plugins = dict(plugins)
        self.publish = publish
        self.views = views
        self.initial_groups = tuple(initial_groups)
        # Each cluster file group's spec and mark (the hash of the file's version), made once.
        self.file_specs = {s.id: (s, config_hash(s.to_json(), None)) for s in initial_groups}
        self.configured_cluster_id = cluster_id
        self.cluster_id: str | None = None  # known once leading (kept in the store)
        self.max_group_size = max_group_size  # the cluster's Limits.MaxGroupSize
        # Where every group's health checks run (the cluster's Limits.HealthChecks at once).
        self.health_checks = health_checks or WorkPool(64, name="health")
        self.leading = False
        self.records: dict[str, GroupRecord] = {}
        # Group ID -> hash of the cluster file's spec last applied (kept in the store).
        self.file_marks: dict[str, str] = {}
        # Group ID -> its last revisions, and why its rolling updates are held (an operator's
        # pause); both kept in the store with the spec.
        self.histories: dict[str, History] = {}
        self.paused: dict[str, str] = {}
        # Group ID -> what an operator holds it back from (suspended processes, standby).
        self.holds: dict[str, Holds] = {}

    # -- Pykka hooks ---------------------------------------------------------------------

    def on_start(self) -> None:
        super().on_start()
        self._subscribe()

    def on_stop(self) -> None:
        self._step_down()
        super().on_stop()

    def on_failure(self, *exc_info: Any) -> None:
        # Until a restarted manager leads again, nobody here leads: readers must not think so,
        # and the runtime must give up the leader's sockets.
        self._step_down()
        super().on_failure(*exc_info)

    def on_child_restarted(self, name: str, ref: pykka.ActorRef[Any]) -> None:
        if name == (LEADER if self.ownership is None else OWNER):
            self._subscribe()

    def on_receive(self, message: Any) -> Any:
        try:
            return self._receive(message)
        except StoreFenced as error:
            # A deposed leader that does not know it yet (frozen, or cut off past its lease):
            # the store refused its write, as it must. Recovery, not a bug: say so in a line,
            # and have the election find out now rather than at its next campaign.
            if self.ownership is None:
                log.warning("%s: this manager was deposed; standing down", error)
                leader = self.child(LEADER)
                if leader is not None:
                    leader.proxy().campaign_now()
            else:
                log.warning("%s: the group moved to another manager", error)
                owner = self.child(OWNER)
                if owner is not None:
                    owner.proxy().balance_now()
            return None

    def _receive(self, message: Any) -> Any:
        if isinstance(message, _Leadership):
            self._leadership(message.leader)
        elif isinstance(message, Member):
            self._membership(message.active)
        elif isinstance(message, Owned):
            if message.own:
                self._take(message.name)
            else:
                self._hand_over(message.name)
        elif isinstance(message, _RolledBack):
            record = self.records.get(message.spec.id)
            if record is not None and not record.destroying:
                self._rolled_back(message.spec)
                self._store(message.spec, message.rollout)
                self._set_record(replace(record, spec=message.spec, rollout=message.rollout))
        elif isinstance(message, _Progress):
            self._progress(message)
        elif isinstance(message, _Destroyed):
            self._finish_destroy(message.group_id)
        elif isinstance(message, _ApplyFileGroup):
            record = self.records.get(message.spec.id)
            mine = self.ownership is None or self.ownership.holds(message.spec.id)
            if self.leading and mine and (record is None or record.problem):
                self._apply_file_group(message.spec)
        else:
            return super().on_receive(message)
        return None

    # -- public API (through a proxy) -----------------------------------------------------

    def commit(
        self,
        data: Mapping[str, Any] | GroupSpec,
        pretend: bool = False,
        expect_revision: int | None = None,
        who: Caller | None = None,
    ) -> str:
        """Validate, store and apply a group spec; return InfraKit's sentence for it.

        A pretend commit, or one that fails validation, changes nothing at all. A commit of a
        group being destroyed supersedes the destroy: the group converges to the new spec.
        """
        return str(self.commit_revision(data, pretend, expect_revision, who)["Details"])

    def commit_revision(
        self,
        data: Mapping[str, Any] | GroupSpec,
        pretend: bool = False,
        expect_revision: int | None = None,
        who: Caller | None = None,
    ) -> dict[str, Any]:
        """`commit`, as a revision: `{"Details": sentence, "Revision": the group's now}`.
        A stale `expect_revision` raises RevisionError and changes nothing."""
        return self._commit(data, pretend, expect_revision, who or UNKNOWN)

    def _commit(
        self,
        data: Mapping[str, Any] | GroupSpec,
        pretend: bool,
        expect_revision: int | None,
        who: Caller,
        change: str | None = None,
        scaling: bool = False,
        rolling_back: bool = False,
    ) -> dict[str, Any]:
        self._require_leader()
        if isinstance(data, GroupSpec):
            spec = data
        else:
            spec = parse_group(data, max_group_size=self.max_group_size)
        self._require_owner(spec.id)
        self._validate_plugins(spec)
        history = self.histories.get(spec.id, History())
        _check_expected(spec.id, history, expect_revision)
        record = self.records.get(spec.id)
        group = self._group(spec.id)
        current: GroupSpec | None = None
        members: Sequence[Description] = ()
        if record is not None and group is not None:
            # What the group wants now (nothing, while being destroyed) and what it last saw.
            current = record.spec.resized(0) if record.destroying else record.spec
            view = self.views.group(spec.id)
            members = view.members if view else ()
        sentence = describe_commit(current, spec, members)
        real = record is None or record.destroying or record.spec.to_json() != spec.to_json()
        if pretend:
            plan = commit_plan(current, spec, members)
            return {
                "Details": sentence,
                "Revision": history.current,
                "Plan": [change.to_json() for change in plan],
                # A new revision, or instances to change (a paused rollout resumed).
                "Changes": real or any(change.action != "keep" for change in plan),
            }
        now = time.time()
        rollout = None
        if record is not None and group is not None:
            if scaling:  # the same configuration: the rollout, paused or not, stays as it is
                rollout = record.rollout
            else:
                rollout = rollouts.begin(record.spec, spec, record.rollout, now)
        previous = record.rollout if record is not None else None
        started = rollout is not None and (previous is None or not _resumed(previous, rollout))
        if real:
            before = None if record is None or record.destroying else record.spec
            history = history.add(
                spec,
                now,
                who.name,
                who.authenticated,
                change or describe_change(before, spec),
                rolled_out=rollout is None,
            )
            self.histories[spec.id] = history
        if rollout is not None and started:
            rollout = self._shaped(spec, history, rollout, rolling_back)
        why = self.paused.get(spec.id)
        if rollout is not None and rollout.paused is None and why is not None:
            # An operator's pause holds until `resume`; a commit (even InfraKit's "commit
            # again to resume") starts or goes on paused.
            rollout = replace(rollout, paused=why, held=True)
        self._store(spec, rollout)
        self._set_record(GroupRecord(spec, rollout=rollout))
        if group is not None:
            group.tell(Update(spec, rollout))  # nobody waits on the group
        else:
            self._start_group(spec.id)
        message, data = f"committed: {sentence}", {}
        if real:
            message += f" (revision {history.current} by {who.name})"
            data = {"Revision": history.current, "Who": who.name}
        self.publish(events.Event(spec.id, events.COMMITTED, message, data=data))
        return {"Details": sentence, "Revision": history.current}

    def _shaped(
        self, spec: GroupSpec, history: History, rollout: Rollout, rolling_back: bool
    ) -> Rollout:
        """A rollout just begun, as the group's revisions make it: rolled back on failure to
        the last revision that fully rolled out, never rolled back again if it is itself a
        rollback."""
        if rolling_back:
            return replace(rollout, rolling_back=True)
        good = history.last_rolled_out(lambda s: s.config_hash != spec.config_hash)
        return rollout if good is None else replace(rollout, revert=good.spec)

    def history(self, group_id: str) -> dict[str, Any]:
        """The group's revisions (`Group.History`), the newest last."""
        self._require_leader()
        self._require_group(group_id)
        history = self.histories.get(group_id, History())
        return {
            "ID": group_id,
            "Revision": history.current,
            "Paused": self.paused.get(group_id),
            "Revisions": history.to_json(),
        }

    def rollback(
        self,
        group_id: str,
        to: int | None = None,
        expect_revision: int | None = None,
        who: Caller | None = None,
    ) -> dict[str, Any]:
        """Commit an earlier revision's spec again, as a new revision ("rollback to rev N"):
        revision `to`, or the latest earlier one that fully rolled out. A rollback that fails
        pauses; it is never rolled back in turn."""
        self._require_leader()
        record = self._require_group(group_id)
        history = self.histories.get(group_id, History())
        _check_expected(group_id, history, expect_revision)
        target = self._rollback_target(group_id, record.spec, history, to)
        return self._commit(
            target.spec,
            False,
            None,
            who or UNKNOWN,
            change=f"rollback to rev {target.number}",
            rolling_back=True,
        )

    def scale(
        self,
        group_id: str,
        size: int,
        expect_revision: int | None = None,
        who: Caller | None = None,
    ) -> dict[str, Any]:
        """Set a Size group's size, as a revision of its own. The configuration is the same
        (its hash ignores Allocation), so no instance is replaced and a rolling update under
        way stays as it is, paused or not."""
        self._require_leader()
        record = self._require_group(group_id)
        if not record.spec.is_sized:
            raise SpecError(
                [
                    (
                        "Properties.Allocation.LogicalIDs",
                        f"group {group_id!r} lists its logical IDs: scale changes a Size group"
                        " only; edit Allocation.LogicalIDs and commit the spec instead",
                    )
                ]
            )
        data = record.spec.to_json()
        before = len(record.spec.logical_ids())
        data["Properties"]["Allocation"] = {"Size": size}
        return self._commit(
            data,
            False,
            expect_revision,
            who or UNKNOWN,
            change=f"scale {before} -> {size}",
            scaling=True,
        )

    def pause(self, group_id: str, who: Caller | None = None) -> dict[str, Any]:
        """Take no more rolling-update steps in the group until `resume` (stored: a restart
        or a new leader keeps it). Self-healing goes on, as under `kubectl rollout pause`."""
        self._require_leader()
        record = self._require_group(group_id)
        why = f"paused by {(who or UNKNOWN).name}"
        self.paused[group_id] = why
        rollout = record.rollout
        if rollout is not None and rollout.paused is None:
            rollout = replace(rollout, paused=why, held=True)
            details = f"rolling update paused at {rollout.done}/{rollout.total}"
        elif rollout is not None:
            details = f"rolling update already paused: {rollout.paused}"
        else:
            details = "no rolling update under way; the next one waits for resume"
        self._hold(record, rollout, events.UPDATE_PAUSED, f"{why}: {details}")
        return {"ID": group_id, "Paused": True, "Details": details}

    def resume(self, group_id: str, who: Caller | None = None) -> dict[str, Any]:
        """Go on with the group's rolling update, whether an operator or a failure paused it."""
        self._require_leader()
        record = self._require_group(group_id)
        was = self.paused.pop(group_id, None)
        rollout = record.rollout
        if rollout is not None and rollout.paused is not None:
            details = f"rolling update resumed at {rollout.done}/{rollout.total}"
            rollout = rollout.resumed(time.time())
        elif was is not None:
            details = "resumed: no rolling update was under way"
        else:
            details = "nothing to resume: the group was not paused"
        self._hold(
            record, rollout, events.ROLLING, f"resumed by {(who or UNKNOWN).name}: {details}"
        )
        return {"ID": group_id, "Paused": False, "Details": details}

    def promote(self, group_id: str, who: Caller | None = None) -> dict[str, Any]:
        """Let a rollout whose canaries are healthy roll the rest (stored)."""
        self._require_leader()
        record = self._require_group(group_id)
        rollout = maintenance.promotable(record.spec, record.rollout).promote(time.time())
        rest = rollout.total - rollout.done
        details = f"canaries promoted: rolling the other {rest} of {rollout.total}"
        self._hold(record, rollout, events.CANARY, f"{details} (by {(who or UNKNOWN).name})")
        return {"ID": group_id, "Promoted": True, "Details": details}

    def suspend(
        self, group_id: str, processes: Sequence[str], suspend: bool, who: Caller | None = None
    ) -> dict[str, Any]:
        """Suspend processes of the group (or resume them), as AWS ASG does (stored)."""
        self._require_leader()
        record = self._require_group(group_id)
        named = maintenance.processes_of(processes)
        holds = maintenance.suspended(record.holds, named, suspend)
        verb = "suspended" if suspend else "unsuspended"
        details = f"{verb} {', '.join(sorted(named))}; suspended now: " + (
            ", ".join(sorted(holds.suspended)) or "nothing"
        )
        self._set_holds(record, holds, f"{details} (by {(who or UNKNOWN).name})")
        return {"ID": group_id, "Suspended": sorted(holds.suspended), "Details": details}

    def standby(
        self, group_id: str, logical_id: str, standby: bool, who: Caller | None = None
    ) -> dict[str, Any]:
        """Put a logical instance in standby, or take it out (stored)."""
        self._require_leader()
        record = self._require_group(group_id)
        holds = maintenance.stood_by(record.spec, record.holds, logical_id, standby)
        details = (
            f"{logical_id} in standby: out of the group's counts, never replaced nor destroyed"
            " by it"
            if standby
            else f"{logical_id} back in service: counted, replaced and healed again"
        )
        self._set_holds(record, holds, f"{details} (by {(who or UNKNOWN).name})")
        return {
            "ID": group_id,
            "LogicalID": logical_id,
            "Standby": sorted(holds.standby),
            "Details": details,
        }

    def _set_holds(self, record: GroupRecord, holds: Holds, message: str) -> None:
        """Store and apply an operator's holds; a rolling update they stopped is timed
        afresh when they no longer stop it."""
        group_id = record.spec.id
        self.holds[group_id] = holds
        rollout = record.rollout
        if rollout is not None and record.holds.stops_rollouts and not holds.stops_rollouts:
            rollout = rollout.retimed(time.time())
        group = self._group(group_id)
        if group is not None:
            group.tell(SetHolds(holds))
        self._hold(record, rollout, events.HOLDS, message)

    def _hold(self, record: GroupRecord, rollout: Rollout | None, kind: str, message: str) -> None:
        """Store and apply a pause or a resume."""
        marks = {"Destroying": True} if record.destroying else {}
        self._store(record.spec, rollout, **marks)
        self._set_record(replace(record, rollout=rollout))
        group = self._group(record.spec.id)
        if group is not None and not record.destroying and rollout != record.rollout:
            group.tell(Update(record.spec, rollout))
        self.publish(events.Event(record.spec.id, kind, message))

    def _rollback_target(
        self, group_id: str, spec: GroupSpec, history: History, to: int | None
    ) -> Revision:
        if to is None:
            found = history.last_rolled_out(lambda s: s.to_json() != spec.to_json())
            if found is None:
                raise RevisionError(
                    f"group {group_id!r} has no earlier revision that fully rolled out to go"
                    f" back to (it is at revision {history.current}); name one with --to",
                    history.current,
                )
            return found
        found = history.find(to)
        if found is None:
            kept = history.revisions
            range_ = f"{kept[0].number}-{kept[-1].number}" if kept else "none"
            raise RevisionError(
                f"group {group_id!r} has no revision {to}: it keeps revisions {range_}",
                history.current,
            )
        if found.spec.to_json() == spec.to_json():
            raise RevisionError(
                f"group {group_id!r} already runs revision {to}'s spec (it is at revision"
                f" {history.current})",
                history.current,
            )
        return found

    def _rolled_back(self, spec: GroupSpec) -> None:
        """Record OnFailure's rollback to `spec` as a revision of its own."""
        history = self.histories.get(spec.id, History())
        failed = history.current
        back = next(
            (r for r in reversed(history.revisions) if r.spec.to_json() == spec.to_json()),
            None,
        )
        to = f"rev {back.number}" if back is not None else f"config {spec.config_hash[:8]}"
        self.histories[spec.id] = history.add(
            spec,
            time.time(),
            ON_FAILURE.name,
            False,
            f"rollback to {to} (the update of rev {failed} failed)",
        )
        self.publish(
            events.Event(
                spec.id,
                events.COMMITTED,
                f"committed: rollback to {to} (revision {failed + 1} by {ON_FAILURE.name})",
                data={"Revision": failed + 1, "Who": ON_FAILURE.name},
            )
        )

    def free(self, group_id: str) -> None:
        """Stop supervising a group; its instances keep running, untouched."""
        self._require_leader()
        self._require_group(group_id)
        self.stop_child(group_id)
        self._forget(group_id, REMOVED_FREED)
        self.publish(events.Event(group_id, events.FREED, "freed: no longer supervised"))

    def destroy(self, group_id: str) -> None:
        """Start destroying a group: drain and destroy every instance, retrying until done.

        The mark is stored first, so a crash or a new leader carries the destroy on. The group
        is forgotten only when nothing of it is left (`is_managed` turns False).
        """
        self._require_leader()
        record = self._require_group(group_id)
        group = self._group(group_id)
        if group is None:
            raise GroupCannotRunError(
                f"cannot destroy group {group_id!r}: {record.problem}; fix that and commit it"
                " again, or free it (its instances are left as they are)"
            )
        self._store(record.spec, None, Destroying=True)
        self._set_record(replace(record, destroying=True, rollout=None))
        group.tell(DestroyAll())  # nobody waits on the group

    def is_leader(self) -> bool:
        return self.leading

    def look(self, group_id: str) -> None:
        """Ask a group to look at its instances soon."""
        group = self._group(group_id)
        if group is not None:
            group.tell(WantLook())

    # -- leadership ---------------------------------------------------------------------------

    def _subscribe(self) -> None:
        me = self.actor_ref
        if self.ownership is not None:
            owner = self.child(OWNER)
            if owner is not None:
                owner.proxy().subscribe(functools.partial(_tell, me))
            return
        leader = self.child(LEADER)
        if leader is None:
            return

        def changed(leading: bool) -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(_Leadership(leading))

        leader.proxy().subscribe(changed)

    def _leadership(self, leading: bool) -> None:
        if leading == self.leading:
            return
        if not leading:
            self._stop_all("lost leadership: following")
            return
        self._activate("gained leadership: leading")
        self._load()
        for spec in self.initial_groups:
            self._apply_if_edited(spec.id)
        self.views.set_leading(True)  # readers see the groups loaded from now on

    def _activate(self, message: str) -> None:
        """Begin to act: the cluster's ID (made now if the store has none), and the news."""
        self.leading = True
        self.cluster_id = self.store.cluster_id(self.configured_cluster_id or secrets.token_hex(8))
        if self.configured_cluster_id not in (None, self.cluster_id):
            raise ClusterIdMismatch(
                f"the store belongs to cluster {self.cluster_id!r}, but the cluster file says"
                f" Cluster.ID {self.configured_cluster_id!r}; set Cluster.ID to"
                f" {self.cluster_id!r} (a cluster's ID cannot change: its instances carry it)"
            )
        self.publish(events.Event("manager", events.LEADERSHIP, message))

    def _stop_all(self, now: str) -> None:
        """Stop every group before anything else, and lead (or run a share) no more."""
        for group_id in list(self.records):
            self.stop_child(group_id)
        self.records.clear()
        self.histories.clear()  # a new leader may change them: read again when leading
        self.paused.clear()
        self.holds.clear()
        self._step_down(now)

    # -- shared mode: the groups this manager owns ----------------------------------------

    def _membership(self, active: bool) -> None:
        """Shared mode: this manager joined the live managers (it runs the groups it will be
        told it owns) or left them (its lease expired: it runs nothing from now)."""
        if active == self.leading:
            return
        if not active:
            self._stop_all("lost membership: runs no group")
            return
        self._activate("gained membership: runs its share of the groups")
        self.views.set_leading(True)
        for spec in self.initial_groups:
            # A cluster file's group that is not stored yet is made by whichever manager
            # claims it first (then moved where it belongs); a stored one is applied, if
            # edited, by its owner when it takes it.
            if self.store.load_one(spec.id) is None:
                self._apply_if_edited(spec.id)

    def _take(self, group_id: str, apply_file: bool = True) -> None:
        """Run a group this manager owns now: its stored record (where it was: a rolling
        update goes on with the slots done left alone; instances are adopted by their tags),
        then the cluster file's version of it if new or edited."""
        if not self.leading or self.ownership is None or not self.ownership.holds(group_id):
            return
        if group_id not in self.records:
            entry = self.store.load_one(group_id)
            if entry is not None:
                self._load_entry(group_id, entry)
            if group_id in self.records:
                where = self.ownership.location
                self.publish(
                    events.Event(
                        group_id, events.OWNERSHIP, f"took the group over: runs it now ({where})"
                    )
                )
        if apply_file:
            self._apply_if_edited(group_id)

    def _apply_if_edited(self, group_id: str) -> None:
        """Apply the cluster file's version of a group when it is new or was edited since it
        was last applied; otherwise what happened since (a later commit, a destroy, a free,
        all kept in the store) stands."""
        found = self.file_specs.get(group_id)
        if found is None or self.file_marks.get(group_id) == found[1]:
            return
        spec, self.file_marks[group_id] = found
        self._apply_file_group(spec)

    def _hand_over(self, group_id: str) -> None:
        """Stop running a group another manager is to own (or that this one lost), then give
        up its key: the handshake, so that two managers never act on one group."""
        if group_id in self.records:
            self.stop_child(group_id)
            self._drop(group_id)
            self.views.set_records(self.records)
            self.publish(
                events.Event(group_id, events.OWNERSHIP, "handed the group over: stopped here")
            )
        self.file_marks.pop(group_id, None)
        if self.ownership is not None and self.ownership.holds(group_id):
            self.ownership.release(group_id)

    def _require_owner(self, group_id: str) -> None:
        """Shared mode: make sure this manager runs `group_id` (claiming it if nobody owns it:
        a new group; the balancing moves it on if it belongs elsewhere), else refuse with where
        it runs (the wire forwards the call there)."""
        if self.ownership is None:
            return
        if group_id in self.records:
            self._still_ours(group_id)
            return
        location = route(group_id, self.ownership)
        if location is not None:
            raise elsewhere(group_id, location)
        self._take(group_id, apply_file=False)

    def _still_ours(self, group_id: str) -> None:
        """Shared mode: refuse a call about a group this manager runs but no longer owns (its
        lease ran out while it was frozen, say, and it has not stopped the group yet): the
        call goes to the new owner, or the client tries again; it never acts here."""
        assert self.ownership is not None
        if self.ownership.holds(group_id):
            return
        location = route(group_id, self.ownership, lambda: False)  # never claims
        raise elsewhere(group_id, location or "")

    def _apply_file_group(self, spec: GroupSpec) -> None:
        """Commit a cluster file's group. One whose plugin does not answer yet (a launched
        plugin still starting, say) is tried again later; one refused shows why."""
        try:
            self.commit(spec, who=CLUSTER_FILE)
        except PluginError as error:
            log.warning("cannot commit group %r from the cluster file yet: %s", spec.id, error)
            if spec.id not in self.records or self.records[spec.id].problem:
                self._set_record(GroupRecord(spec, problem=f"waiting to commit it: {error}"))
            tell_later(self.actor_ref, FILE_GROUP_RETRY, _ApplyFileGroup(spec))
        except NotOwnerError as error:  # shared mode: its owner applies the file's version
            log.debug("not committing group %r from the cluster file here: %s", spec.id, error)
            self.file_marks.pop(spec.id, None)
        except (SpecError, ValueError, NotLeaderError) as error:
            log.error("cannot commit group %r from the cluster file: %s", spec.id, error)
            if spec.id not in self.records:
                self._set_record(GroupRecord(spec, problem=str(error)))

    def _load(self) -> None:
        try:
            stored = self.store.load()
        except ValueError as error:
            log.error("cannot read the store: %s; starting with no stored groups", error)
            return
        for group_id, entry in stored.items():
            self._load_entry(group_id, entry)

    def _load_entry(self, group_id: str, entry: Mapping[str, Any]) -> None:
        """Take one stored record up: its marks, and the group started where it was."""
        if isinstance(entry.get("FileSpec"), str):
            self.file_marks[group_id] = entry["FileSpec"]
        if entry.get("Removed"):
            return  # remembered only so that the cluster file does not bring it back
        self.histories[group_id] = History.from_json(entry.get("Revisions"), self.max_group_size)
        if isinstance(entry.get("Paused"), str):
            self.paused[group_id] = entry["Paused"]
        if entry.get("Holds") is not None:
            self.holds[group_id] = maintenance.holds_from_json(entry["Holds"])
        try:
            spec = parse_group(
                entry.get("Properties"),
                source=f"stored group {group_id!r}",
                max_group_size=self.max_group_size,
            )
        except SpecError as error:
            log.error("not starting stored group %r: %s", group_id, error)
            return
        rollout = None
        if entry.get("Update") is not None:
            try:
                rollout = Rollout.from_json(entry["Update"], self.max_group_size)
            except ValueError as error:
                log.warning("group %r: ignoring its stored update: %s", group_id, error)
        record = GroupRecord(spec, destroying=bool(entry.get("Destroying")), rollout=rollout)
        try:
            self._validate_plugins(spec)
        except (SpecError, ValueError) as error:
            log.error("not starting stored group %r: %s", group_id, error)
            self._set_record(replace(record, problem=str(error)))
            return
        except PluginError as error:
            # It was valid when committed; a plugin that does not answer yet is the
            # group's condition to report, not a reason to leave it unmanaged.
            log.warning("stored group %r: %s", group_id, error)
        self._set_record(record)
        self._start_group(group_id)

    def _step_down(self, now: str = "lost leadership: stopped") -> None:
        """Lead no more: readers see no groups and no leadership, and hear it once."""
        was_leading, self.leading = self.leading, False
        self.views.set_leading(False)
        self.views.set_records({})
        if was_leading:
            self.publish(events.Event("manager", events.LEADERSHIP, now))

    def _fence(self) -> bool:
        return self.election.is_leader()

    # -- helpers ---------------------------------------------------------------------------

    def _start_group(self, group_id: str) -> None:
        spec = self.records[group_id].spec
        me = self.actor_ref
        assert self.cluster_id is not None  # groups run only while leading

        def rolled_back(back: GroupSpec, rollout: Rollout) -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(_RolledBack(back, rollout))

        def progress(group_id: str, config: str, rollout: Rollout | None) -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(_Progress(group_id, config, rollout))

        def destroyed(group_id: str) -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(_Destroyed(group_id))

        self.start_child(
            ChildSpec(
                name=group_id,
                actor_class=GroupSupervisor,
                args=(
                    group_id,
                    self.views,
                    self.plugins[plugin_name(spec.properties.instance.plugin)],
                    self.plugins[plugin_name(spec.properties.flavor.plugin)],
                    self.publish,
                    self.cluster_id,
                    self.health_checks,
                ),
                kwargs={
                    "fence": (
                        self._fence
                        if self.ownership is None
                        else functools.partial(self.ownership.holds, group_id)
                    ),
                    "hooks": Hooks(
                        on_progress=progress, on_rollback=rolled_back, on_destroyed=destroyed
                    ),
                },
                restart=Restart.PERMANENT,
                shutdown_timeout=60.0,
            )
        )

    def _finish_destroy(self, group_id: str) -> None:
        record = self.records.get(group_id)
        if record is None or not record.destroying:
            return  # freed, or a commit superseded the destroy
        self.stop_child(group_id)
        self._forget(group_id, REMOVED_DESTROYED)
        self.publish(
            events.Event(group_id, events.GROUP_DESTROYED, "destroyed: every instance is gone")
        )

    def _forget(self, group_id: str, why: str) -> None:
        """Drop a group from the records and the store. A group from the cluster file leaves a
        mark of why, so that restarting with the unedited file does not bring it back."""
        self._drop(group_id)  # a group gone loses its history with it
        self.views.set_records(self.records)
        mark = self.file_marks.get(group_id)
        if mark is None:
            self.store.remove(group_id)
            if self.ownership is not None:
                self.ownership.release(group_id)  # nothing left to own
        else:
            self.store.put(group_id, None, FileSpec=mark, Removed=why)

    def _drop(self, group_id: str) -> None:
        """Forget what this manager kept of a group it no longer runs."""
        self.records.pop(group_id, None)
        self.histories.pop(group_id, None)
        self.paused.pop(group_id, None)
        self.holds.pop(group_id, None)

    def _set_record(self, record: GroupRecord) -> None:
        record = replace(record, holds=self.holds.get(record.spec.id, NO_HOLDS))
        history = self.histories.get(record.spec.id)
        revision = history.current if history is not None and history.revisions else None
        if record.revision != revision:
            record = replace(record, revision=revision)
        self.records[record.spec.id] = record
        self.views.set_records(self.records)

    def _progress(self, message: _Progress) -> None:
        """Store a group's rolling update with its spec, so that it resumes after a restart
        or on a new leader. News about a spec since replaced (or a group gone) is dropped."""
        record = self.records.get(message.group_id)
        if record is None or record.destroying or record.rollout == message.rollout:
            return
        if message.config_hash != record.spec.config_hash:
            return
        old = record.rollout
        if message.rollout is None and old is not None and old.paused is None:
            # Finished with nothing paused or failed: a revision OnFailure may go back to.
            history = self.histories.get(message.group_id, History())
            self.histories[message.group_id] = history.rolled_out(message.config_hash)
        self._store(record.spec, message.rollout)
        self._set_record(replace(record, rollout=message.rollout))

    def _store(self, spec: GroupSpec, rollout: Rollout | None = None, **marks: Any) -> None:
        """Write the spec and its rolling update, keeping the mark of the cluster-file version
        it came from."""
        if spec.id in self.file_marks:
            marks["FileSpec"] = self.file_marks[spec.id]
        if rollout is not None:
            marks["Update"] = rollout.to_json()
        history = self.histories.get(spec.id)
        if history is not None and history.revisions:
            marks["Revisions"] = history.to_json()
        if spec.id in self.paused:
            marks["Paused"] = self.paused[spec.id]
        holds = self.holds.get(spec.id, NO_HOLDS)
        if holds != NO_HOLDS:
            marks["Holds"] = holds.to_json()
        self.store.put(spec.id, spec.to_json(), **marks)

    def _group(self, group_id: str) -> pykka.ActorRef[Any] | None:
        return self.child(group_id) if group_id in self.records else None

    def _require_leader(self) -> None:
        if not self.leading:
            raise not_leader(self.election.leader_location())

    def _require_group(self, group_id: str) -> GroupRecord:
        record = self.records.get(group_id)
        if record is not None and self.ownership is not None:
            self._still_ours(group_id)
        if record is None and self.ownership is not None:
            location = route(
                group_id, self.ownership, lambda: self.store.load_one(group_id) is not None
            )
            if location is not None:
                raise elsewhere(group_id, location)
            self._take(group_id, apply_file=False)  # ours, and not told yet
            record = self.records.get(group_id)
        if record is None:
            raise GroupNotFoundError(f"Group '{group_id}' is not being watched")
        return record

    def _validate_plugins(self, spec: GroupSpec) -> None:
        validate_with_plugins(spec, self.plugins)


def _tell(ref: pykka.ActorRef[Any], message: Any) -> None:
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(message)


def _check_expected(group_id: str, history: History, expected: int | None) -> None:
    """Refuse a change made against a revision the group has moved on from (optimistic
    concurrency, like Nomad's check-index)."""
    if expected is not None and expected != history.current:
        raise RevisionError(
            f"group {group_id!r} is at revision {history.current}, not {expected}: it changed"
            f" since; see `infrakit group history {group_id}` and try again",
            history.current,
        )


def _resumed(old: Rollout, new: Rollout) -> bool:
    """Whether `new` is `old` going on (the same target), not a rollout begun afresh."""
    return new.target == old.target
