"""GroupSupervisor: keeps one group's instances equal to its spec, for ever.

Every `Health.Interval` (and at once when the instance plugin signals a change) it describes the
group once, asks the pure planner what to do, and tells each InstanceActor what concerns it. It
owns the instance actors (one per logical instance) as a one_for_one supervisor, drives rolling
updates batch by batch, and reports progress as events.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from actors import Backoff, ChildSpec, CircuitBreaker, Restart, Supervisor, tell_later
from actors.scheduler import Handle
from infrakit import events
from infrakit.group import plan as planner
from infrakit.group.instance import (
    FirstStart,
    GroupContext,
    InstanceActor,
    Observe,
    Replace,
    Retire,
    SetSpec,
    StatusReport,
    WantLook,
)
from infrakit.group.plan import Observation, Phase, SlotStatus
from infrakit.spec import GroupSpec
from infrakit.spi import Description, FlavorPlugin, Health, InstancePlugin, PluginError
from infrakit.spi.instance import TAG_CLUSTER, TAG_GROUP, Sweepable, Watchable
from infrakit.views import GroupView, Views

log = logging.getLogger(__name__)

# A look asked for by an actor or a plugin waits this long, so that a burst becomes one look.
LOOK_SOON = 0.05
# A plugin's own signal is a confirmed change, not a burst of actor reports: look at once.
PLUGIN_SAID_SOON = 0.005


_NEEDS_NEWS = frozenset({Phase.PENDING, Phase.FAILING, Phase.UNHEALTHY})


@dataclass(frozen=True)
class _PluginSaid:
    """The instance plugin signalled a change (e.g. a container died): look at once."""


@dataclass(frozen=True)
class _Tick:
    """Time to look at the group."""


class GroupSupervisor(Supervisor):
    """Supervises one group: its instance actors, its reconcile loop and its rolling updates."""

    def __init__(
        self,
        group_id: str,
        views: Views,
        instance_plugin: InstancePlugin,
        flavor_plugin: FlavorPlugin,
        publish: Callable[[events.Event], None],
        cluster_id: str,
        fence: Callable[[], bool] = lambda: True,
        on_rollback: Callable[[GroupSpec], None] | None = None,
        on_destroyed: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(max_restarts=50, within=10.0, backoff=Backoff(initial=0.2, maximum=10.0))
        # Read the spec from the manager's published record, so that a restarted supervisor
        # starts from the latest commit, not from the spec it was first started with.
        record = views.records()[group_id]
        spec = record.spec
        self.views = views
        self.spec = spec
        self.cluster_id = cluster_id
        self.on_destroyed = on_destroyed
        self.previous_spec: GroupSpec | None = None
        self.instance_plugin = instance_plugin
        self.flavor_plugin = flavor_plugin
        self.publish = publish
        self.on_rollback = on_rollback
        self.breaker = CircuitBreaker(threshold=5, on_change=self._breaker_changed)
        self.context = GroupContext(
            group_id=spec.id,
            cluster_id=cluster_id,
            instance_plugin=instance_plugin,
            flavor_plugin=flavor_plugin,
            breaker=self.breaker,
            publish=publish,
            fence=fence,
        )
        self.status: dict[str, SlotStatus] = {}
        self._sent: dict[str, tuple[Observation, Health | None]] = {}
        self.roll_started: dict[str, float] = {}
        self.update_total = 0
        self.update_done = 0
        self.paused: str | None = None
        self.destroying = record.destroying
        self.converged = False
        self.last_plan: planner.Plan | None = None
        self.members: list[Description] = []
        self._held: tuple[str, ...] = ()
        self._describe_failing: str | None = None  # why the last describe failed
        self._foreign: frozenset[str] = frozenset()  # clusters whose instances we saw and left
        self._timer: Handle | None = None
        self._next_tick = 0.0
        self._tick_cost = 0.0
        self.looked_at: float | None = None  # when the last complete look began (monotonic)
        self._looked_at_wall: float | None = None  # the same, as a time of day, for people
        self._dirty = True  # something happened since the last full look
        self._unwatch: Callable[[], None] | None = None
        self._sweep_failed: str | None = None  # the last failed sweep's message

    # -- Pykka hooks ---------------------------------------------------------------------

    def on_start(self) -> None:
        super().on_start()
        if isinstance(self.instance_plugin, Watchable):
            ref = self.actor_ref

            def changed() -> None:
                with contextlib.suppress(pykka.ActorDeadError):
                    ref.tell(_PluginSaid())

            self._unwatch = self.instance_plugin.watch(changed)
        self._schedule(0.0)

    def on_stop(self) -> None:
        self._quiet()
        super().on_stop()

    def on_failure(self, *exc_info: Any) -> None:
        self._quiet()
        super().on_failure(*exc_info)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Tick):
            self._tick()
        elif isinstance(message, StatusReport):
            self._status_report(message)
        elif isinstance(message, WantLook):
            self._look_soon()
        elif isinstance(message, _PluginSaid):
            self._look_soon(PLUGIN_SAID_SOON)
        else:
            return super().on_receive(message)
        return None

    def on_child_restarted(self, name: str, ref: pykka.ActorRef[Any]) -> None:
        self._dirty = True
        self.status[name] = SlotStatus(Phase.PENDING)
        self._sent.pop(name, None)
        self._schedule(LOOK_SOON)

    # -- public API (through a proxy; nobody waits for the answers) ----------------------

    def update(self, spec: GroupSpec) -> None:
        """Take a new spec (already validated): scale, roll, or just resume a paused update.

        A commit supersedes a destroy in progress: the group then converges to `spec`.
        """
        if spec.config_hash != self.spec.config_hash:
            self.previous_spec = self.spec
            self.update_total = self.update_done = 0
        self.spec = spec
        self.destroying = False
        self.paused = None
        self.converged = False  # until a look at the group says otherwise
        self._dirty = True
        for name, ref in self.which_children():
            if ref is not None:
                with contextlib.suppress(pykka.ActorDeadError):
                    ref.tell(SetSpec(spec))
            self._sent.pop(name, None)
        self._publish_view()
        self._schedule(0.0)

    def destroy_all(self) -> None:
        """Drain and destroy every instance of the group; keeps retrying until none is left."""
        self.destroying = True
        self.converged = False
        self._dirty = True
        self._publish_view()
        self._schedule(0.0)

    def destroyed(self) -> bool:
        """True once destroy_all has left no instance and no actor behind."""
        return self.destroying and not self.members and not self.status and self.converged

    def look(self) -> None:
        """Look at the group soon (a caller is waiting on it)."""
        self._look_soon()

    # -- the loop -------------------------------------------------------------------------

    def _tick(self) -> None:
        started = time.monotonic()
        self._timer = None
        spec = self.spec.resized(0) if self.destroying else self.spec
        try:
            described = self.instance_plugin.describe_instances({TAG_GROUP: spec.id})
        except PluginError as error:
            if self._describe_failing is None:
                self._event(events.DESCRIBE_FAILED, f"cannot list instances: {error}")
            self._describe_failing = f"cannot list instances: {error}"
            self._publish_view()
            self._schedule(spec.properties.health.interval)
            return
        self._describe_failing = None
        members = self._ours(described)
        quiet_health = self._quiet_health(spec, members)
        if quiet_health is not None and all(h is Health.HEALTHY for h in quiet_health.values()):
            self._looked(started)
            self._finish_destroy(spec.id)
            self._tick_cost = time.monotonic() - started
            self._schedule(spec.properties.health.interval)
            return
        self._dirty = False
        self.members = members
        plan = planner.plan(
            spec,
            members,
            self.status,
            now=started,
            roll_started=self.roll_started,
            update_paused=self.paused is not None,
        )
        self.last_plan = plan
        for lid in plan.start:
            self.start_child(
                ChildSpec(
                    name=lid,
                    actor_class=InstanceActor,
                    args=(self.context, spec, lid, FirstStart(started)),
                    restart=Restart.TRANSIENT,
                )
            )
            self.status[lid] = SlotStatus(Phase.PENDING)
        # Health found by the quiet check is still true: same members, no reports since.
        health = quiet_health if quiet_health is not None else self._check_health(spec, plan)
        self._dispatch(plan, health, started)
        self._track_update(spec, plan, started)
        self._track_health(plan)
        converged = plan.converged and not self.paused
        if converged and not self.converged:
            what = "destroyed" if self.destroying else f"{len(members)} instances"
            self._event(events.CONVERGED, f"converged: {what}")
        self.converged = converged
        self._looked(started)
        self._finish_destroy(spec.id)
        self._tick_cost = time.monotonic() - started
        self._schedule(spec.properties.health.interval)

    def _finish_destroy(self, group_id: str) -> None:
        """Once destroy_all has left nothing live, sweep what dead instances left of the group
        (stopped containers, directories...), then say the group is gone. A failed sweep is
        reported (once) and tried again at the next look; the group stays until it succeeds."""
        if not self.destroyed() or self.on_destroyed is None:
            return
        if isinstance(self.instance_plugin, Sweepable):
            try:  # this cluster's only, as another cluster's instances are left alone
                swept = self.instance_plugin.sweep(
                    {TAG_GROUP: group_id, TAG_CLUSTER: self.cluster_id}
                )
            except PluginError as error:
                message = f"cannot sweep what is left of the group (trying again): {error}"
                if message != self._sweep_failed:
                    self._event(events.DESTROY_FAILED, message)
                self._sweep_failed = message
                return
            if swept:
                self._event(events.DESTROYED, f"swept what was left of {', '.join(swept)}")
        self.on_destroyed(group_id)

    def _quiet_health(
        self, spec: GroupSpec, members: list[Description]
    ) -> dict[str, Health] | None:
        """Health of every member if nothing changed since a converged look (same members, no
        reports); else None. If they are all healthy there is nothing to plan or tell."""
        if not self.converged or self._dirty or self.last_plan is None or members != self.members:
            return None
        return self._check_health(spec, self.last_plan)

    def _check_health(self, spec: GroupSpec, plan: planner.Plan) -> dict[str, Health]:
        health: dict[str, Health] = {}
        props = spec.properties.flavor.properties
        for lid in spec.logical_ids():
            owned = plan.observations[lid].owned
            report = self.status.get(lid)
            if owned is None or report is None:
                continue
            if report.phase not in (Phase.STARTING, Phase.RUNNING, Phase.UNHEALTHY, Phase.PENDING):
                continue
            try:
                health[lid] = self.flavor_plugin.healthy(props, owned)
            except PluginError as error:
                log.warning("%s: health check of %s failed: %s", lid, owned.id, error)
                health[lid] = Health.UNKNOWN
        return health

    def _dispatch(self, plan: planner.Plan, health: dict[str, Health], taken_at: float) -> None:
        for lid, observation in plan.observations.items():
            report = self.status.get(lid)
            ref = self.child(lid)
            if ref is None or report is None:
                continue
            seen = (observation, health.get(lid))
            # An actor hears the same news once, unless it waits on news (pending, failing)
            # or counts ill-health checks.
            quiet = report.phase not in _NEEDS_NEWS and seen[1] in (Health.HEALTHY, None)
            if quiet and self._sent.get(lid) == seen:
                continue
            self._sent[lid] = seen
            self._tell(ref, Observe(observation, seen[1], taken_at))
        for lid in plan.retire:
            ref = self.child(lid)
            if ref is not None:
                self._tell(ref, Retire())
                self.status[lid] = SlotStatus(Phase.RETIRING)
        for lid, reason in plan.replace:
            ref = self.child(lid)
            if ref is None:
                continue
            self._tell(ref, Replace(reason))
            self.status[lid] = SlotStatus(Phase.REPLACING, reason=reason)
            if reason == planner.REASON_UPDATE:
                self.roll_started[lid] = taken_at

    def _track_update(self, spec: GroupSpec, plan: planner.Plan, now: float) -> None:
        progress = plan.update
        for lid in list(self.roll_started):
            report = self.status.get(lid)
            if report and report.phase is Phase.RUNNING and report.config_hash == spec.config_hash:
                del self.roll_started[lid]
        if progress.failed is not None:
            lid, why = progress.failed
            self.roll_started.pop(lid, None)
            self._update_failed(spec, lid, why)
            return
        if progress.stale and not self.update_total:
            self.update_total, self.update_done = progress.stale, 0
            self._event(
                events.UPDATE_STARTED,
                f"rolling update of {progress.stale} instances to config {spec.config_hash[:8]}"
                f" ({spec.properties.update.max_parallel} at a time)",
            )
        if self.update_total:
            done = max(0, self.update_total - progress.stale)
            if done != self.update_done:
                self.update_done = done
                self._event(events.ROLLING, f"rolling {done}/{self.update_total}")
            if not progress.stale:
                self._event(events.UPDATE_DONE, f"rolling update done: {done} instances")
                self.update_total = self.update_done = 0

    def _update_failed(self, spec: GroupSpec, lid: str, why: str) -> None:
        policy = spec.properties.update.on_failure
        if policy == "rollback" and self.previous_spec is not None:
            back = self.previous_spec
            self._event(
                events.UPDATE_PAUSED,
                f"rolling update failed: {lid} {why};"
                f" rolling back to config {back.config_hash[:8]}",
            )
            self.update(back)
            self.previous_spec = None  # a failed rollback pauses; it never rolls forward again
            if self.on_rollback is not None:
                self.on_rollback(back)
            return
        self.paused = f"{lid} {why}"
        self._event(
            events.UPDATE_PAUSED,
            f"rolling update paused at {self.update_done}/{self.update_total}: {lid} {why};"
            " commit the spec again to resume",
        )

    def _track_health(self, plan: planner.Plan) -> None:
        if plan.unhealthy_held and plan.unhealthy_held != self._held:
            size = len(self.spec.logical_ids())
            self._event(
                events.UNHEALTHY_HELD,
                f"{len(plan.unhealthy_held)} of {size} instances unhealthy, more than"
                f" MaxUnhealthy ({self.spec.properties.health.max_unhealthy}): not replacing"
                " them; this looks like a wider problem",
            )
        self._held = plan.unhealthy_held

    def _status_report(self, message: StatusReport) -> None:
        self._dirty = True
        lid = message.logical_id
        if self.child(lid) is None and lid not in self.status:
            return  # a report from an actor that has since been stopped
        if message.status.phase is Phase.RETIRED:
            self.status.pop(lid, None)
            self._sent.pop(lid, None)
            self.stop_child(lid)
            return
        self.status[lid] = message.status
        if message.status.phase is Phase.RUNNING and not self.converged:
            self._look_soon()  # perhaps the last one we waited for: say so promptly

    def _ours(self, described: list[Description]) -> list[Description]:
        """The members that belong to this cluster: carrying our cluster ID, or none at all
        (made before cluster IDs, or by Go InfraKit: adopted, and labelled when adopted).
        Another cluster's instances are left alone, and reported once per cluster."""
        ours: list[Description] = []
        foreign: dict[str, int] = {}
        for member in described:
            cluster = member.tags.get(TAG_CLUSTER)
            if cluster is None or cluster == self.cluster_id:
                ours.append(member)
            else:
                foreign[cluster] = foreign.get(cluster, 0) + 1
        for cluster in sorted(foreign.keys() - self._foreign):
            self._event(
                events.FOREIGN,
                f"{foreign[cluster]} instances of this group belong to cluster {cluster!r}, not"
                f" to this one ({self.cluster_id!r}): leaving them alone",
            )
        self._foreign = frozenset(foreign)
        return ours

    def _looked(self, started: float) -> None:
        self.looked_at = started
        self._looked_at_wall = time.time() - (time.monotonic() - started)
        self._publish_view()

    def _publish_view(self) -> None:
        """Publish what the group looks like now, for operators' questions."""
        phases: dict[str, int] = {}
        for report in self.status.values():
            phases[report.phase.value] = phases.get(report.phase.value, 0) + 1
        self.views.publish(
            GroupView(
                spec=self.spec,
                members=tuple(self.members),
                phases=phases,
                converged=self.converged,
                destroying=self.destroying,
                update_total=self.update_total,
                update_done=self.update_done,
                paused=self.paused,
                breaker=self.breaker,
                failing=phases.get(Phase.FAILING.value, 0),
                conditions=self._conditions(),
                looked_at=self.looked_at,
                looked_at_wall=self._looked_at_wall,
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
        if self.paused is not None:
            found.append(f"rolling update paused: {self.paused}; commit the spec again to resume")
        if self._held:
            found.append(
                f"{len(self._held)} instances unhealthy, more than MaxUnhealthy: not replacing"
            )
        return tuple(found)

    # -- helpers ---------------------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._next_tick = time.monotonic() + delay
        self._timer = tell_later(self.actor_ref, delay, _Tick())

    def _look_soon(self, soon: float = LOOK_SOON) -> None:
        """Look again soon, but never so soon that looking crowds out the work it looks at."""
        delay = max(soon, 3 * self._tick_cost)
        if self._next_tick > time.monotonic() + delay:
            self._schedule(delay)

    def _quiet(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None

    def _tell(self, ref: pykka.ActorRef[Any], message: Any) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            ref.tell(message)

    def _breaker_changed(self, state: str, message: str) -> None:
        self._event(events.CIRCUIT, f"provisioning circuit {state}: {message}")

    def _event(self, kind: str, message: str) -> None:
        self.publish(events.Event(group=self.spec.id, kind=kind, message=message))

    def __str__(self) -> str:
        return f"GroupSupervisor({self.spec.id})"
