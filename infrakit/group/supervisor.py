"""GroupSupervisor: one group's supervisor, and only that (as OTP's are).

Its children are the group's reconciler (the loop that looks, plans and tells) and one
instance actor per logical instance, which the reconciler asks it to start and stop. It restarts
a child that crashes, one for one: a reconciler that crashes leaves the instance actors alone
(the new one asks who exists and has each report again), and an instance actor that crashes is
restarted and told to the reconciler. Messages for the group from the manager (`Update`,
`DestroyAll`, `WantLook`, `SetHolds`) go on to the reconciler.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import pykka

from actors import Backoff, ChildSpec, CircuitBreaker, Restart, Supervisor
from actors.workpool import WorkPool
from infrakit import events
from infrakit.group.instance import Address, GroupContext, InstanceActor, WantLook
from infrakit.group.reconciler import (
    Children,
    DestroyAll,
    Hello,
    Hooks,
    InstanceUp,
    PluginChanged,
    PluginSaid,
    Reconciler,
    SetHolds,
    StartInstances,
    StopInstance,
    Update,
)
from infrakit.spi import FlavorPlugin, InstancePlugin
from infrakit.spi.instance import Changes, ChangeWatchable, Watchable
from infrakit.views import Views

log = logging.getLogger(__name__)

# Drains of one group that run at once (a hung one holds its place until DrainTimeout, then
# its instance is destroyed anyway and the place is the pool's until the drain returns).
DRAINS_AT_ONCE = 8

# Never a logical ID: those refuse control characters.
RECONCILER = "\x00reconciler"


class GroupSupervisor(Supervisor):
    """Supervises one group's reconciler and instance actors; decides nothing itself."""

    def __init__(
        self,
        group_id: str,
        views: Views,
        instance_plugin: InstancePlugin,
        flavor_plugin: FlavorPlugin,
        publish: Callable[[events.Event], None],
        cluster_id: str,
        health_checks: WorkPool,
        fence: Callable[[], bool] = lambda: True,
        hooks: Hooks | None = None,
    ) -> None:
        super().__init__(max_restarts=50, within=10.0, backoff=Backoff(initial=0.2, maximum=10.0))
        # The manager starts a group only with its record published; a restarted reconciler
        # reads the latest one, and this one if the manager has since stepped down.
        self.record = views.records()[group_id]
        spec = self.record.spec
        self.group_id = group_id
        self.instance_plugin = instance_plugin
        self.breaker = CircuitBreaker(threshold=5, on_change=self._breaker_changed)
        self.publish = publish
        self.context = GroupContext(
            group_id=group_id,
            cluster_id=cluster_id,
            instance_plugin=instance_plugin,
            flavor_plugin=flavor_plugin,
            breaker=self.breaker,
            publish=publish,
            fence=fence,
            reconciler=Address(),
            health_lane=health_checks.lane(spec.properties.health.parallel_checks),
            work_lane=health_checks.lane(DRAINS_AT_ONCE),
        )
        self.views = views
        self.hooks = hooks or Hooks()
        self._unwatch: list[Callable[[], None]] = []

    # -- Pykka hooks ---------------------------------------------------------------------

    def on_start(self) -> None:
        super().on_start()
        address = self.context.reconciler
        plugin = self.instance_plugin

        def said() -> None:
            address.tell(PluginSaid())

        def changed(changes: Changes) -> None:
            address.tell(PluginChanged(changes))

        if isinstance(plugin, ChangeWatchable):
            self._unwatch.append(plugin.watch_changes(changed))
        elif isinstance(plugin, Watchable):
            self._unwatch.append(plugin.watch(said))
        self.start_child(
            ChildSpec(
                name=RECONCILER,
                actor_class=Reconciler,
                args=(
                    self.views,
                    self.context,
                    self.actor_ref,
                    self.breaker,
                    self.hooks,
                    bool(self._unwatch),
                    self.record,
                ),
                restart=Restart.PERMANENT,
            )
        )

    def on_stop(self) -> None:
        self._quiet()
        super().on_stop()

    def on_failure(self, *exc_info: Any) -> None:
        self._quiet()
        super().on_failure(*exc_info)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, StartInstances):
            for lid, args in message.actors:
                self._start_instance(lid, args)
        elif isinstance(message, StopInstance):
            if message.logical_id != RECONCILER:
                self.stop_child(message.logical_id)
        elif isinstance(message, Hello):
            refs = tuple((n, r) for n, r in self.which_children() if n != RECONCILER)
            self.context.reconciler.tell(Children(refs))
        elif isinstance(message, Update | DestroyAll | WantLook | SetHolds):
            self.context.reconciler.tell(message)  # the group's business is the reconciler's
        else:
            return super().on_receive(message)
        return None

    def on_child_restarted(self, name: str, ref: pykka.ActorRef[Any]) -> None:
        if name != RECONCILER:
            self.context.reconciler.tell(InstanceUp(name, ref, restarted=True))

    # -- helpers ---------------------------------------------------------------------------

    def _start_instance(self, lid: str, args: tuple[Any, ...]) -> None:
        if self.has_child(lid):
            return  # already there (a reconciler that started over asked again)
        ref = self.start_child(
            ChildSpec(name=lid, actor_class=InstanceActor, args=args, restart=Restart.TRANSIENT)
        )
        self.context.reconciler.tell(InstanceUp(lid, ref, restarted=False))

    def _quiet(self) -> None:
        for unwatch in self._unwatch:
            with contextlib.suppress(Exception):
                unwatch()
        self._unwatch.clear()

    def _breaker_changed(self, state: str, message: str) -> None:
        self.publish(
            events.Event(
                group=self.group_id,
                kind=events.CIRCUIT,
                message=f"provisioning circuit {state}: {message}",
            )
        )

    def __str__(self) -> str:
        return f"GroupSupervisor({self.group_id})"
