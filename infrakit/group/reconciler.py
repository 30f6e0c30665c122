"""Reconciler: one group's loop of look, plan and tell, on its own thread.

A look lists the group's instances (one DescribeInstances), asks the pure planner what to do,
and tells each instance actor what concerns it. Looks run every `Health.Interval`, or every
`Health.Resync` when the instance plugin reports changes itself; in between, a change the
plugin reports costs what changed: a vanished instance is told to the one actor that owned it.
Health is the actors' own business; the reconciler only decides whether replacing an unhealthy
instance is allowed. Actors are started and stopped by the group's supervisor, on request.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import replace as dataclass_replace
from typing import Any

import pykka

from actors import CircuitBreaker, SupervisedActor, tell_later
from actors.scheduler import Handle
from infrakit import events
from infrakit.duration import format_duration
from infrakit.group import plan as planner
from infrakit.group.instance import (
    FirstStart,
    Gone,
    GroupContext,
    HoldsLifted,
    Observe,
    Release,
    Replace,
    ReportAgain,
    Retire,
    SetSpec,
    StatusReport,
    WantLook,
)
from infrakit.group.plan import NO_HOLDS, Holds, Observation, Phase, SlotStatus
from infrakit.rollout import Rollout
from infrakit.rollout import rollback as rollback_of
from infrakit.spec import TAG_PROTECTED, GroupSpec
from infrakit.spi import Description, PluginError
from infrakit.spi.instance import (
    TAG_CLUSTER,
    TAG_GROUP,
    TAG_LOGICAL_ID,
    TAG_MOVING_TO,
    Changes,
    Sweepable,
)
from infrakit.views import GroupRecord, GroupView, Views

log = logging.getLogger(__name__)

# A look asked for by an actor waits this long, so that a burst becomes one look.
LOOK_SOON = 0.05
# An instance that appeared unasked is looked at after this long, unless an actor of ours
# reports it first (the plugin often sees our own provisions before the actor reports them).
UNKNOWN_GRACE = 0.5

_NEEDS_NEWS = frozenset({Phase.FAILING, Phase.UNHEALTHY})
_UNDER_WAY = frozenset({Phase.PROVISIONING, Phase.STARTING, Phase.REPLACING, Phase.RETIRING})


# Messages from the group's supervisor and the manager.


@dataclass(frozen=True)
class Update:
    """A new spec (already validated and stored) and the rollout stored with it."""

    spec: GroupSpec
    rollout: Rollout | None


@dataclass(frozen=True)
class SetHolds:
    """What an operator now holds the group back from (already stored)."""

    holds: Holds


@dataclass(frozen=True)
class DestroyAll:
    """Drain and destroy every instance; keep trying until none is left."""


@dataclass(frozen=True)
class Children:
    """The instance actors the supervisor has, by logical ID (told to a new reconciler)."""

    refs: tuple[tuple[str, pykka.ActorRef[Any] | None], ...]


@dataclass(frozen=True)
class InstanceUp:
    """The supervisor (re)started the actor of `logical_id`."""

    logical_id: str
    ref: pykka.ActorRef[Any]
    restarted: bool


@dataclass(frozen=True)
class StartInstances:
    """Asks the supervisor to start these instance actors: (logical ID, constructor args)."""

    actors: tuple[tuple[str, tuple[Any, ...]], ...]


@dataclass(frozen=True)
class StopInstance:
    """Asks the supervisor to stop (and forget) the actor of `logical_id`."""

    logical_id: str


@dataclass(frozen=True)
class Hello:
    """A new reconciler asks the supervisor which actors exist."""


@dataclass(frozen=True)
class PluginSaid:
    """The instance plugin signalled a change it could not name: look at once."""


@dataclass(frozen=True)
class PluginChanged:
    """The instance plugin named what changed."""

    changes: Changes


@dataclass(frozen=True)
class _Tick:
    """Time to look at the group."""


@dataclass(frozen=True)
class _Unknowns:
    """Time to see whether instances that appeared unasked are still unknown."""


class Hooks:
    """What the reconciler tells the world: rollout progress to store, a rollback to commit,
    and the group's destruction."""

    def __init__(
        self,
        on_progress: Callable[[str, str, Rollout | None], None] | None = None,
        on_rollback: Callable[[GroupSpec, Rollout], None] | None = None,
        on_destroyed: Callable[[str], None] | None = None,
    ) -> None:
        self.on_progress = on_progress
        self.on_rollback = on_rollback
        self.on_destroyed = on_destroyed


class Reconciler(SupervisedActor):
    """Keeps one group's instances equal to its spec: looks, plans, and tells its actors."""

    def __init__(
        self,
        views: Views,
        context: GroupContext,
        supervisor: pykka.ActorRef[Any],
        breaker: CircuitBreaker,
        hooks: Hooks,
        told_of_changes: bool,
        first_record: GroupRecord,
    ) -> None:
        super().__init__()
        # The spec, the destroy mark and the rollout come from the manager's published record,
        # so that a restarted reconciler starts from the latest commit (or from the group's
        # first record, if the manager has stepped down and is about to stop the group).
        record = views.records().get(context.group_id, first_record)
        self.views = views
        self.context = context
        self.supervisor = supervisor
        self.breaker = breaker
        self.hooks = hooks
        self.told_of_changes = told_of_changes
        self.spec: GroupSpec = record.spec
        self.rollout: Rollout | None = record.rollout
        self.destroying = record.destroying
        self.holds: Holds = record.holds
        context.board.holds = NO_HOLDS if self.destroying else self.holds
        self.status: dict[str, SlotStatus] = {}
        self.refs: dict[str, pykka.ActorRef[Any] | None] = {}
        self._sent: dict[str, Observation] = {}
        self._owner: dict[str, str] = {}  # instance ID -> logical ID, from the actors' reports
        self._unknown: dict[str, float] = {}  # appeared unasked -> when
        self._dirty = True  # something happened since the last plan
        self._running = 0  # how many of `status` are RUNNING
        self.converged = False
        self.members: list[Description] = []
        self._held: tuple[str, ...] = ()
        self._protected: tuple[str, ...] = ()
        self._notes: dict[str, str] = {}  # logical ID -> its last drain abandoned, until a commit
        self._describe_failing: str | None = None
        self._sweep_failed: str | None = None
        self._foreign: frozenset[str] = frozenset()
        # Scale-in: why the plugin cannot relabel (then the highest slots go, until a commit);
        # instances moved, by ID, until a look shows their new tag; why each target was freed.
        self._cannot_move: str | None = None
        self._moved: dict[str, str] = {}
        self._freed: dict[str, str] = {}
        self._timer: Handle | None = None
        self._next_tick = 0.0
        self._tick_cost = 0.0
        self._ready = False  # until the supervisor said which actors exist
        self.looked_at: float | None = None
        self._looked_at_wall: float | None = None

    # -- Pykka hooks ---------------------------------------------------------------------

    def on_start(self) -> None:
        self.context.reconciler.ref = self.actor_ref
        self.supervisor.tell(Hello())
        self._publish_view()
        rollout = self.rollout
        if rollout is not None and rollout.paused is not None:
            self._event(
                events.UPDATE_PAUSED,
                f"rolling update still paused at {rollout.done}/{rollout.total}:"
                f" {rollout.paused}; commit the spec again to resume",
            )
        elif rollout is not None and rollout.total:
            self._event(
                events.ROLLING, f"resuming rolling update at {rollout.done}/{rollout.total}"
            )

    def on_stop(self) -> None:
        self._quiet()

    def on_failure(self, *exc_info: Any) -> None:
        self._quiet()

    def on_receive(self, message: Any) -> Any:
        if not isinstance(message, _Tick | WantLook | _Unknowns | PluginChanged):
            self._dirty = True  # (a change the plugin names is news only if it is: below)
        if isinstance(message, StatusReport):
            self._status_report(message)
        elif isinstance(message, _Tick):
            self._tick()
        elif isinstance(message, WantLook):
            self._look_soon()
        elif isinstance(message, PluginChanged):
            self._changed(message.changes)
        elif isinstance(message, PluginSaid):
            self._look_soon(0.005)
        elif isinstance(message, _Unknowns):
            # While the group converges, what appears is most likely its own actors' work
            # (the plugin often names it before the actor reports it), and the look that
            # says "converged" will see the rest: only a converged group looks at once.
            if self._unknown and self.converged:
                self._look_soon(0.0)
            self._unknown.clear()
        elif isinstance(message, InstanceUp):
            self._instance_up(message)
        elif isinstance(message, Children):
            self._children(message)
        elif isinstance(message, Update):
            self._update(message.spec, message.rollout)
        elif isinstance(message, DestroyAll):
            self._destroy_all()
        elif isinstance(message, SetHolds):
            self._set_holds(message.holds)
        else:
            return super().on_receive(message)
        return None

    # -- what the manager and the supervisor say ------------------------------------------

    def _children(self, message: Children) -> None:
        """The actors that exist (none for a new group): ask each to report, then look."""
        for lid, ref in message.refs:
            self.refs[lid] = ref
            self._set_status(lid, SlotStatus(Phase.PENDING))
            if ref is not None:
                self._tell(ref, ReportAgain())
        self._ready = True
        self._schedule(0.0)

    def _instance_up(self, message: InstanceUp) -> None:
        self.refs[message.logical_id] = message.ref
        # It was started with the spec of the look that asked for it (a restart: of its
        # first start); a commit since then reached only the actors that were up.
        previous = self.rollout.previous if self.rollout is not None else None
        self._tell(message.ref, SetSpec(self.spec, previous))
        if message.restarted:
            self._set_status(message.logical_id, SlotStatus(Phase.PENDING))
            self._sent.pop(message.logical_id, None)
            self._look_soon()

    def _update(self, spec: GroupSpec, rollout: Rollout | None) -> None:
        """Take a new spec: scale, roll, or resume a paused rollout. A commit supersedes a
        destroy in progress: the group then converges to `spec`."""
        old = self.rollout
        if _resumes(old, rollout) and old is not None:
            self._event(events.ROLLING, f"rolling update resumed at {old.done}/{old.total}")
        self.spec, self.rollout = spec, rollout
        self._notes.clear()
        self._cannot_move = None  # a commit tries moving again
        if self.destroying:
            self.destroying = False
            self._apply_holds(lifted=False)
        self.converged = False  # until a look at the group says otherwise
        previous = rollout.previous if rollout is not None else None
        for lid, ref in self.refs.items():
            if ref is not None:
                self._tell(ref, SetSpec(spec, previous))
            self._sent.pop(lid, None)
        self._publish_view()
        self._schedule(0.0)

    def _set_holds(self, holds: Holds) -> None:
        """Take an operator's holds; a hold lifted is told to every actor, whose work may have
        waited on it. A destroy ignores them (a commit that supersedes it restores them)."""
        old, self.holds = self.holds, holds
        lifted = old.suspended - holds.suspended or old.standby - holds.standby
        self._apply_holds(lifted=bool(lifted))
        self.converged = False
        self._publish_view()
        self._schedule(0.0)

    def _apply_holds(self, lifted: bool) -> None:
        self.context.board.holds = NO_HOLDS if self.destroying else self.holds
        if lifted:
            for ref in self.refs.values():
                if ref is not None:
                    self._tell(ref, HoldsLifted())

    def _destroy_all(self) -> None:
        lifted = not self.destroying and self.holds != NO_HOLDS
        self.destroying = True
        self._apply_holds(lifted)
        self.converged = False
        self._publish_view()
        self._schedule(0.0)

    def _destroyed(self) -> bool:
        return self.destroying and not self.members and not self.status and self.converged

    # -- what the actors and the plugin say -----------------------------------------------

    def _status_report(self, message: StatusReport) -> None:
        lid = message.logical_id
        if lid not in self.refs and lid not in self.status:
            return  # from an actor that has since been stopped
        old = self.status.get(lid)
        if message.status.note and self._notes.get(lid) != message.status.note:
            self._notes[lid] = message.status.note
            self._publish_view()
        if (
            old is not None
            and old.instance_id
            and old.instance_id != message.status.instance_id
            and self._owner.get(old.instance_id) == lid
        ):
            del self._owner[old.instance_id]
        if message.status.phase is Phase.RETIRED:
            self._set_status(lid, None)
            self.refs.pop(lid, None)
            self._sent.pop(lid, None)
            self._tell(self.supervisor, StopInstance(lid))
            self._look_soon()
            return
        self._set_status(lid, message.status)
        if message.status.instance_id:
            self._owner[message.status.instance_id] = lid
            self._unknown.pop(message.status.instance_id, None)
        phase = message.status.phase
        if phase is Phase.RUNNING:
            if not self.converged:
                if self._running == len(self.status):
                    self._look_soon(spaced=False)  # perhaps the last one: say so promptly
                elif self.rollout is not None:
                    self._look_soon()  # the rollout may go on
        elif phase in _UNDER_WAY:
            # Its actor sees to it (provisioning a new or vanished instance, replacing or
            # retiring as told): nothing to decide until it is done. A converged group is
            # confirmed by a look once every instance put back is running again.
            if self.converged:
                self.converged = False
                self._publish_view()
        else:
            self._look_soon()  # unhealthy, failing, pending: a decision to make

    def _changed(self, changes: Changes) -> None:
        """Tell each vanished instance's owner at once; look at instances nobody owns if no
        actor claims them soon, and at everything if the plugin cannot say what changed."""
        if changes.whole:
            self._dirty = True
            self._look_soon(0.005)
            return
        for instance_id in changes.gone:
            lid = self._owner.get(instance_id)
            ref = self.refs.get(lid) if lid is not None else None
            if ref is not None:
                self._dirty = True
                self._tell(ref, Gone(instance_id))
        now = time.monotonic()
        fresh = [i for i in changes.appeared if i not in self._owner and i not in self._unknown]
        for instance_id in fresh:
            self._unknown[instance_id] = now
        if fresh:
            self._dirty = True
            tell_later(self.actor_ref, UNKNOWN_GRACE, _Unknowns())

    def _set_status(self, lid: str, status: SlotStatus | None) -> None:
        """Record (or, with None, forget) an actor's status, counting those running."""
        old = self.status.pop(lid, None) if status is None else self.status.get(lid)
        if old is not None and old.phase is Phase.RUNNING:
            self._running -= 1
        if status is not None:
            self.status[lid] = status
            if status.phase is Phase.RUNNING:
                self._running += 1

    # -- the loop -------------------------------------------------------------------------

    def _tick(self) -> None:
        self._timer = None
        if not self._ready:
            return
        if not self.context.fence():
            # A deposed leader, or a former owner (shared mode) thawed after its lease ran
            # out, about to stop this group: it looks at nothing, so adopts and tells nothing.
            self._schedule(self.spec.properties.health.interval)
            return
        started = time.monotonic()
        cpu = time.thread_time()  # a look's cost is its own work, not its wait for the GIL
        spec = self.spec.resized(0) if self.destroying else self.spec
        every = spec.properties.health.look_every(self.told_of_changes and not self.destroying)
        try:
            described = self.context.instance_plugin.describe_instances({TAG_GROUP: spec.id})
        except PluginError as error:
            if self._describe_failing is None:
                self._event(events.DESCRIBE_FAILED, f"cannot list instances: {error}")
            self._describe_failing = f"cannot list instances: {error}"
            self.views.look_failed(spec.id)
            self._publish_view()
            self._schedule(spec.properties.health.interval)
            return
        self._describe_failing = None
        members = self._as_moved(self._ours(described))
        self._unknown.clear()
        # Nothing happened and nothing changed: nothing to plan or tell (a plugin returns the
        # same description objects for unchanged instances, so this is cheap).
        quiet = self.converged and not self._dirty and members == self.members
        if not quiet:
            self._dirty = False
            self.members = members
            holds = NO_HOLDS if self.destroying else self.holds
            plan = planner.plan(
                spec,
                members,
                self.status,
                now=time.time(),
                rollout=self.rollout,
                holds=holds,
                can_move=self._cannot_move is None,
            )
            if not self._move(plan):
                # A Label failed, perhaps after it took effect: act on a fresh look only.
                self._dirty = True
                self._schedule(0.0)
                return
            self._start(plan, spec, started)
            self._dispatch(plan, started)
            self._follow_rollout(spec, plan)
            self._track_health(plan)
            self._track_protected(plan)
            if plan.converged and not self.converged:
                what = "destroyed" if self.destroying else _instances(len(members))
                self._event(events.CONVERGED, f"converged: {what}")
            self.converged = plan.converged
        self._looked(started, publish=not quiet)
        self._finish_destroy(spec.id)  # a failed sweep is tried again at every look
        self._tick_cost = time.thread_time() - cpu
        if quiet:
            every = max(every, 20 * self._tick_cost)  # resyncs: at most 5 % of a core
        elif not self.converged:
            # Look every Interval, but never so often that looking crowds out the work it
            # looks at (actors report what needs deciding, and the look that says "converged"
            # comes as soon as the last one runs).
            every = max(spec.properties.health.interval, 10 * self._tick_cost)
        self._schedule(every)

    def _start(self, plan: planner.Plan, spec: GroupSpec, started: float) -> None:
        """Ask the supervisor for the actors the plan starts; each acts on this look at once."""
        if not plan.start:
            return
        actors = []
        previous = self.rollout.previous if self.rollout is not None else None
        existed = self.looked_at is None  # the first look: slots the group had before
        for lid in plan.start:
            observe = Observe(plan.observations.get(lid, Observation(None)), started)
            first = FirstStart(observe, existed=existed)
            actors.append((lid, (self.context, spec, lid, first, previous)))
            self._set_status(lid, SlotStatus(Phase.PENDING))
            self.refs.setdefault(lid, None)
            self._sent[lid] = plan.observations.get(lid, Observation(None))
        # A supervisor stopped meanwhile (the group handed on) stops this reconciler next.
        self._tell(self.supervisor, StartInstances(tuple(actors)))

    def _dispatch(self, plan: planner.Plan, taken_at: float) -> None:
        for lid, observation in plan.observations.items():
            report = self.status.get(lid)
            ref = self.refs.get(lid)
            if ref is None or report is None:
                continue
            # An actor hears the same news once, unless it waits on news (failing, unhealthy).
            # A pending one that was given this very observation when it started (or since)
            # has it: 10,000 new actors are not told again what they were made with.
            if report.phase not in _NEEDS_NEWS and self._sent.get(lid) == observation:
                continue
            self._sent[lid] = observation
            self._tell(ref, Observe(observation, taken_at))
        victims = dict(plan.victims)
        for lid in plan.retire:
            ref = self.refs.get(lid)
            if ref is not None:
                if lid in victims:
                    self._say_victim(lid, victims[lid], plan)
                self._tell(ref, Retire())
                self._set_status(lid, SlotStatus(Phase.RETIRING))
        for lid in plan.release:
            ref = self.refs.get(lid)
            if ref is not None:
                self._tell(ref, Release())
                self._set_status(lid, SlotStatus(Phase.RETIRING))
        for lid, reason in plan.replace:
            ref = self.refs.get(lid)
            if ref is None:
                continue
            surge = lid in plan.surge
            self._tell(ref, Replace(reason, surge=surge))
            if surge:  # the old instance serves on until the new one is ready
                old = plan.observations[lid].owned
                outgoing = old.id if old is not None else None
                status = SlotStatus(Phase.PROVISIONING, reason=reason, outgoing=outgoing)
            else:
                status = SlotStatus(Phase.REPLACING, reason=reason)
            self._set_status(lid, status)

    def _follow_rollout(self, spec: GroupSpec, plan: planner.Plan) -> None:
        """Say how the rolling update goes, roll back if it failed and may, and hand every
        change of its state to the manager to store."""
        old, new = self.rollout, plan.rollout
        if plan.failed is not None and new is not None and new.paused is None:
            self._roll_back(plan.failed, new)
            return
        self.rollout = new
        if new is not None and (old is None or not old.total) and new.total:
            self._event(
                events.UPDATE_STARTED,
                f"rolling update of {_instances(new.total - new.done)} to config"
                f" {spec.config_hash[:8]} ({_pace(spec)})",
            )
        if new is not None and new.paused is not None and (old is None or old.paused is None):
            self._event(
                events.UPDATE_PAUSED,
                f"rolling update paused at {new.done}/{new.total}: {new.paused};"
                " commit the spec again to resume",
            )
        elif new is not None and old is not None and new.done != old.done and old.total:
            if new.paused is not None:  # a replacement in flight when it paused came good
                self._event(events.UPDATE_PAUSED, _done_while_paused(new.done, new.total))
            else:
                self._event(events.ROLLING, f"rolling {new.done}/{new.total}")
        if new is None and old is not None and old.total:
            if old.paused is not None:
                self._event(events.UPDATE_PAUSED, _done_while_paused(old.total, old.total))
            else:
                self._event(events.ROLLING, f"rolling {old.total}/{old.total}")
            self._event(events.UPDATE_DONE, f"rolling update done: {_instances(old.total)}")
        self._follow_canary(spec, old, new)
        if new != old and self.hooks.on_progress is not None:
            self.hooks.on_progress(spec.id, spec.config_hash, new)

    def _follow_canary(self, spec: GroupSpec, old: Rollout | None, new: Rollout | None) -> None:
        """Say when the canaries are healthy and the rollout waits, and when AutoPromote
        promotes them."""
        if new is None or new.paused is not None:
            return
        if new.waiting_for_promotion and (old is None or not old.waiting_for_promotion):
            words = canary_words(spec, new)
            self._event(events.CANARY, words or "canaries healthy")
        elif new.promoted and old is not None and old.waiting_for_promotion and not old.promoted:
            rest = new.total - new.done
            self._event(
                events.CANARY,
                f"canaries promoted by AutoPromote: rolling the other {_instances(rest)}",
            )

    def _roll_back(self, failed: tuple[str, str], rollout: Rollout) -> None:
        lid, why = failed
        back = rollback_of(rollout, time.time())
        assert back is not None  # the planner pauses a rollout that cannot roll back
        spec, reverse = back
        self._event(
            events.UPDATE_PAUSED,
            f"rolling update failed: {lid} {why}; rolling back to config {spec.config_hash[:8]}",
        )
        if self.hooks.on_rollback is not None:
            self.hooks.on_rollback(spec, reverse)  # stored, then told back to us as an update
        self._update(spec, reverse)

    def _move(self, plan: planner.Plan) -> bool:
        """Carry out the plan's scale-in moves: a survivor whose target slot is empty is
        relabelled into it, and its old slot's actor released (it leaves, destroying nothing);
        one whose target's victim goes now is first tagged with its target, which proves that
        the plugin can relabel before anything is destroyed. False if a Label failed: the
        group then removes its highest slots instead (until the next commit)."""
        if not plan.moves or not self.context.fence():
            return True
        victims = dict(plan.victims)
        for move in plan.moves:
            if move.ready:
                labels = {TAG_LOGICAL_ID: move.target, TAG_MOVING_TO: move.target}
            elif move.target in victims:
                labels = {TAG_MOVING_TO: move.target}
            else:
                continue  # the target's victim is on its way out
            try:
                self.context.instance_plugin.label(move.instance, labels)
            except PluginError as error:
                self._cannot_move = str(error)
                self._event(
                    events.MOVE_REFUSED,
                    f"cannot move {move.source} ({move.instance}) to {move.target}: the instance"
                    f" plugin cannot relabel ({error}); scaling in by removing the highest slots",
                )
                self._publish_view()
                return False
            if not move.ready:
                self._freed[move.target] = move.why
                continue
            why = self._freed.pop(move.target, move.why)
            self._moved[move.instance] = move.target
            self._event(
                events.MOVED,
                f"moved {move.source} ({move.instance}) to {move.target}: {why}",
                logical_id=move.target,
                instance=move.instance,
            )
            ref = self.refs.get(move.source)
            if ref is not None:
                self._tell(ref, Release())
                self._set_status(move.source, SlotStatus(Phase.RETIRING))
            self._look_soon()
        return True

    def _as_moved(self, members: list[Description]) -> list[Description]:
        """`members` with the instances this reconciler moved carrying their new slot, until
        the plugin's own description says so (a plugin may describe tags a little late)."""
        if not self._moved:
            return members
        seen = {member.id: member for member in members}
        for instance_id, lid in list(self._moved.items()):
            found = seen.get(instance_id)
            if found is None or found.tags.get(TAG_LOGICAL_ID) == lid:
                del self._moved[instance_id]
        if not self._moved:
            return members
        return [
            dataclass_replace(m, tags={**m.tags, TAG_LOGICAL_ID: self._moved[m.id]})
            if m.id in self._moved
            else m
            for m in members
        ]

    def _say_victim(self, lid: str, why: str, plan: planner.Plan) -> None:
        owned = plan.observations[lid].owned if lid in plan.observations else None
        instance = owned.id if owned is not None else None
        what = f"{lid} ({instance})" if instance else lid
        self._event(
            events.SCALE_IN,
            f"scale-in removes {what}: {why}",
            logical_id=lid,
            instance=instance,
        )

    def _track_protected(self, plan: planner.Plan) -> None:
        """Say (once per change) that scale-in leaves protected instances in place."""
        if plan.protected_held and plan.protected_held != self._protected:
            self._event(
                events.PROTECTED_HELD,
                f"not removing {', '.join(plan.protected_held)} to scale in: protected"
                f" ({TAG_PROTECTED}=true)",
            )
        self._protected = plan.protected_held

    def _track_health(self, plan: planner.Plan) -> None:
        if plan.unhealthy_held and plan.unhealthy_held != self._held:
            size = len(self.spec.logical_ids())
            if self.rollout is not None and self.rollout.paused is not None:
                why = "the rolling update is paused"
            else:
                why = (
                    f"more than MaxUnhealthy ({self.spec.properties.health.max_unhealthy}):"
                    " this looks like a wider problem"
                )
            self._event(
                events.UNHEALTHY_HELD,
                f"{len(plan.unhealthy_held)} of {size} instances unhealthy, not replacing"
                f" them: {why}",
            )
        self._held = plan.unhealthy_held

    def _finish_destroy(self, group_id: str) -> None:
        """Once a destroy has left nothing live, sweep what dead instances left of the group
        (stopped containers, directories...), then say the group is gone. A failed sweep is
        reported (once) and tried again at the next look; the group stays until it succeeds."""
        if not self._destroyed() or self.hooks.on_destroyed is None:
            return
        plugin = self.context.instance_plugin
        if isinstance(plugin, Sweepable):
            try:  # this cluster's only, as another cluster's instances are left alone
                swept = plugin.sweep({TAG_GROUP: group_id, TAG_CLUSTER: self.context.cluster_id})
            except PluginError as error:
                message = f"cannot sweep what is left of the group (trying again): {error}"
                if message != self._sweep_failed:
                    self._event(events.DESTROY_FAILED, message)
                self._sweep_failed = message
                return
            if swept:
                self._event(events.DESTROYED, f"swept what was left of {', '.join(swept)}")
        self.hooks.on_destroyed(group_id)

    def _ours(self, described: list[Description]) -> list[Description]:
        """The members that belong to this cluster: carrying our cluster ID, or none at all
        (made before cluster IDs, or by Go InfraKit: adopted, and labelled when adopted).
        Another cluster's instances are left alone, and reported once per cluster."""
        cluster_id = self.context.cluster_id
        ours: list[Description] = []
        foreign: dict[str, int] = {}
        for member in described:
            cluster = member.tags.get(TAG_CLUSTER)
            if cluster is None or cluster == cluster_id:
                ours.append(member)
            else:
                foreign[cluster] = foreign.get(cluster, 0) + 1
        for cluster in sorted(foreign.keys() - self._foreign):
            self._event(
                events.FOREIGN,
                f"{foreign[cluster]} instances of this group belong to cluster {cluster!r}, not"
                f" to this one ({cluster_id!r}): leaving them alone",
            )
        self._foreign = frozenset(foreign)
        return ours

    # -- the view -------------------------------------------------------------------------

    def _looked(self, started: float, publish: bool = True) -> None:
        self.looked_at = started
        self._looked_at_wall = time.time() - (time.monotonic() - started)
        if publish:
            self._publish_view()
        else:
            self.views.looked(self.context.group_id, started, self._looked_at_wall)

    def _publish_view(self) -> None:
        """Publish what the group looks like now, for operators' questions."""
        phases: dict[str, int] = {}
        for report in self.status.values():
            phases[report.phase.value] = phases.get(report.phase.value, 0) + 1
        rollout = self.rollout
        self.views.publish(
            GroupView(
                spec=self.spec,
                members=tuple(self.members),
                phases=phases,
                converged=self.converged,
                destroying=self.destroying,
                update_total=rollout.total if rollout is not None else 0,
                update_done=rollout.done if rollout is not None else 0,
                paused=rollout.paused if rollout is not None else None,
                breaker=self.breaker,
                failing=phases.get(Phase.FAILING.value, 0),
                conditions=self._conditions(),
                looked_at=self.looked_at,
                looked_at_wall=self._looked_at_wall,
                rollout=rollout,
                slots=dict(self.status),
                canary=canary_words(self.spec, rollout),
                holds=self.holds,
            )
        )

    def _conditions(self) -> tuple[str, ...]:
        """What keeps the group from acting, in words an operator can act on (the breaker's
        state is read live from the view)."""
        found: list[str] = []
        if self._describe_failing is not None:
            found.append(self._describe_failing)
        if self._sweep_failed is not None and self.destroying:
            found.append(self._sweep_failed)
        rollout = self.rollout
        if rollout is not None and rollout.paused is not None:
            found.append(
                f"rolling update paused: {rollout.paused}; commit the spec again to resume"
            )
        canary = canary_words(self.spec, rollout)
        if canary is not None and rollout is not None and rollout.waiting_for_promotion:
            found.append(canary)
        found.extend(holds_words(self.spec.id, self.holds))
        if self._held:
            found.append(f"{len(self._held)} instances unhealthy: not replacing them")
        if self._cannot_move is not None:
            found.append(
                "scale-in removes the highest slots: the instance plugin cannot relabel"
                f" ({self._cannot_move})"
            )
        if self._protected:
            found.append(
                f"{', '.join(self._protected)} kept beyond the group's size: protected"
                f" ({TAG_PROTECTED}=true)"
            )
        found.extend(sorted(set(self._notes.values())))
        return tuple(found)

    # -- helpers ---------------------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._next_tick = time.monotonic() + delay
        self._timer = tell_later(self.actor_ref, delay, _Tick())

    def _look_soon(self, soon: float = LOOK_SOON, spaced: bool = True) -> None:
        """Look again soon, but never so soon that looking crowds out the work it looks at
        (unless there is no work left to crowd out: `spaced=False`)."""
        delay = max(soon, 3 * self._tick_cost) if spaced else soon
        if self._next_tick > time.monotonic() + delay:
            self._schedule(delay)

    def _quiet(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tell(self, ref: pykka.ActorRef[Any], message: Any) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            ref.tell(message)

    def _event(
        self,
        kind: str,
        message: str,
        logical_id: str | None = None,
        instance: str | None = None,
    ) -> None:
        self.context.publish(
            events.Event(
                group=self.spec.id,
                kind=kind,
                message=message,
                logical_id=logical_id,
                instance=instance,
            )
        )

    def __str__(self) -> str:
        return f"Reconciler({self.spec.id})"


def _resumes(old: Rollout | None, new: Rollout | None) -> bool:
    """Whether `new` is `old`, paused, resumed (a commit of the same spec)."""
    if old is None or old.paused is None or new is None:
        return False
    return new.paused is None and new.target == old.target


def canary_words(spec: GroupSpec, rollout: Rollout | None) -> str | None:
    """Where the rollout's canaries are, in an operator's words ("canary 1/1 healthy; waiting
    for `infrakit group promote web`"); None without a canary phase."""
    update = spec.properties.update
    if rollout is None or not update.canary or rollout.rolling_back or rollout.promoted:
        return None
    if rollout.target != spec.config_hash:
        return None
    wanted = min(update.canary, max(rollout.total, len(rollout.canaries)))
    healthy = len([lid for lid in rollout.canaries if lid not in rollout.in_flight])
    if not rollout.waiting_for_promotion:
        return f"canary {healthy}/{wanted} healthy"
    said = f"canary {healthy}/{wanted} healthy; waiting for `infrakit group promote {spec.id}`"
    if update.auto_promote is not None:
        said += f" (AutoPromote after {format_duration(update.auto_promote)})"
    return said


def holds_words(group_id: str, holds: Holds) -> list[str]:
    """What an operator holds the group back from, as conditions."""
    found = []
    if holds.suspended:
        which = ", ".join(p for p in planner.PROCESSES if p in holds.suspended)
        found.append(f"suspended: {which} (`infrakit group unsuspend {group_id} PROCESS`)")
    if holds.standby:
        found.append(
            f"in standby: {', '.join(sorted(holds.standby))} (out of the group's counts,"
            " never replaced nor destroyed by it)"
        )
    return found


def _done_while_paused(done: int, total: int) -> str:
    """The progress of a paused update: never "rolling", which only a resume says again."""
    return f"rolling update paused at {done}/{total}: {done}/{total} done while paused"


def _pace(spec: GroupSpec) -> str:
    """How fast a rollout of `spec` goes, in words: "1 at a time", or its surge and
    unavailability budget."""
    update = spec.properties.update
    size = len(spec.logical_ids())
    surge = update.max_surge_of(size) if spec.is_sized else 0
    unavailable = update.max_unavailable_of(size)
    if not surge:
        return f"{unavailable} at a time"
    return f"up to {surge} extra, at most {unavailable} out of service"


def _instances(count: int) -> str:
    """`count` instances, in a log line's English (plans keep InfraKit's "1 instances")."""
    return f"{count} instance" if count == 1 else f"{count} instances"
