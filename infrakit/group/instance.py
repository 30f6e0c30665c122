"""InstanceActor: one logical instance's lifecycle, provision -> health -> drain -> destroy.

The group supervisor tells each actor what exists (an `Observe`), and asks it to `Replace` or
`Retire`; the actor makes the plugin calls and reports its phase back (`StatusReport`). Plugin
errors are retried with backoff behind the group's circuit breaker; anything unexpected crashes
the actor, and its supervisor restarts it (it then adopts its instance from the next look).

Observations taken before the actor's last action are ignored: a describe that started before a
provision finished would otherwise make the actor think its new instance is missing and make a
duplicate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from actors import Backoff, CircuitBreaker, tell_later
from actors.pooled import PooledActor
from infrakit import events
from infrakit.duration import format_duration
from infrakit.group.plan import Observation, Phase, SlotStatus, hash_of
from infrakit.spec import GroupSpec
from infrakit.spi import Description, FlavorPlugin, Health, InstancePlugin, PluginError, Spec
from infrakit.spi.instance import TAG_CLUSTER, TAG_CONFIG_HASH, TAG_GROUP, TAG_LOGICAL_ID

log = logging.getLogger(__name__)

_LIVE = (Phase.STARTING, Phase.RUNNING, Phase.UNHEALTHY)


@dataclass(frozen=True)
class GroupContext:
    """What every instance actor of one group shares: plugins, breaker, events and fencing."""

    group_id: str
    cluster_id: str
    instance_plugin: InstancePlugin
    flavor_plugin: FlavorPlugin
    breaker: CircuitBreaker
    publish: Callable[[events.Event], None]
    fence: Callable[[], bool]
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.5, maximum=30.0))


# Messages.


@dataclass(frozen=True)
class Observe:
    """What the group saw for this logical instance, and when the look began (monotonic)."""

    observation: Observation
    health: Health | None
    taken_at: float


@dataclass(frozen=True)
class SetSpec:
    """The group's spec changed: provision with this one from now on."""

    spec: GroupSpec


@dataclass(frozen=True)
class Replace:
    """Drain and destroy the current instance, then provision a new one."""

    reason: str


@dataclass(frozen=True)
class Retire:
    """Leave the group: drain and destroy what this actor owns, then report RETIRED."""


@dataclass(frozen=True)
class _Retry:
    """A backoff delay has passed."""


@dataclass(frozen=True)
class StatusReport:
    """Told to the group supervisor whenever the actor's status changes."""

    logical_id: str
    status: SlotStatus


@dataclass(frozen=True)
class WantLook:
    """Asks the group supervisor for a fresh observation soon."""


class FirstStart:
    """When the first incarnation of an actor may trust observations from.

    A new actor may act on the very look that made the group start it. A restarted one (same
    constructor arguments) must not: its predecessor may have provisioned since that look.
    """

    def __init__(self, at: float) -> None:
        self._at: float | None = at

    def take(self) -> float | None:
        at, self._at = self._at, None
        return at


class InstanceActor(PooledActor):
    """Keeps one logical instance of a group alive.

    A pooled actor (no thread of its own), so that a group of 10,000 costs 10,000 small objects,
    not 10,000 threads; its plugin calls run on the runtime's actor pool.
    """

    def __init__(
        self,
        context: GroupContext,
        spec: GroupSpec,
        logical_id: str,
        first_start: FirstStart | None = None,
    ) -> None:
        super().__init__()
        self.context = context
        self.spec = spec
        self.logical_id = logical_id
        self.phase = Phase.PENDING
        self.reason = ""
        self.owned: Description | None = None
        self.extras: tuple[Description, ...] = ()
        now = time.monotonic()
        trusted_from = first_start.take() if first_start is not None else None
        self.acted_at = now if trusted_from is None else trusted_from
        self.started_at = now
        self.unhealthy_checks = 0
        self.failures = 0
        self.retry_pending = False
        self.retiring = False
        self._reported: SlotStatus | None = None

    # -- Pykka hooks ---------------------------------------------------------------------

    def on_start(self) -> None:
        self._report()

    def on_receive(self, message: object) -> object:
        if isinstance(message, Observe):
            self._observe(message)
        elif isinstance(message, SetSpec):
            self.spec = message.spec
        elif isinstance(message, Replace):
            self._replace(message.reason)
        elif isinstance(message, Retire):
            self._retire()
        elif isinstance(message, _Retry):
            self._retry()
        else:
            return super().on_receive(message)
        return None

    # -- behaviour ------------------------------------------------------------------------

    def _observe(self, message: Observe) -> None:
        observation = message.observation
        if message.taken_at < self.acted_at and not self._shows_mine(observation):
            return  # the look began before our last action and does not show its result
        self.extras = observation.extras
        for extra in observation.extras:
            self._event(events.DUPLICATE, f"destroying duplicate {extra.id}", extra.id)
            self._destroy(extra)
        if self.retiring:
            self.owned = observation.owned
            self._retire()
            return
        if self.phase is Phase.REPLACING:
            self.owned = observation.owned or self.owned  # still waiting to destroy it
        elif observation.owned is None:
            self._missing()
        else:
            self._present(observation.owned, message.health)
        self._report()

    def _shows_mine(self, observation: Observation) -> bool:
        owned = observation.owned
        return owned is not None and self.owned is not None and owned.id == self.owned.id

    def _missing(self) -> None:
        if self.phase in (Phase.REPLACING, Phase.PROVISIONING):
            return
        if self.owned is not None and self.phase in (
            Phase.STARTING,
            Phase.RUNNING,
            Phase.UNHEALTHY,
        ):
            self._event(events.GONE, f"{self.owned.id} is gone; replacing it", self.owned.id)
        self.owned = None
        if self.phase is Phase.FAILING and self.retry_pending:
            return  # wait for the backoff
        self._provision()

    def _present(self, instance: Description, health: Health | None) -> None:
        now = time.monotonic()
        if self.owned is None or self.owned.id != instance.id:
            if self.phase in (Phase.PENDING, Phase.FAILING):
                self._event(events.ADOPTED, f"adopted {instance.id}", instance.id)
                self.started_at = now
                self.unhealthy_checks = 0
                self._label(instance)
            self.phase = Phase.STARTING if self.phase is not Phase.RUNNING else self.phase
        self.owned = instance
        self.retry_pending = False
        in_grace = now - self.started_at < self.spec.properties.health.grace_period
        if health is Health.HEALTHY:
            self.unhealthy_checks = 0
            if self.phase is not Phase.RUNNING:
                self.phase = Phase.RUNNING
                self._event(events.HEALTHY, f"{instance.id} is healthy", instance.id)
        elif health is None or (health is Health.UNKNOWN and in_grace):
            if self.phase not in (Phase.RUNNING, Phase.UNHEALTHY):
                self.phase = Phase.STARTING
        elif not in_grace or self.phase is Phase.RUNNING:
            # Unhealthy, or still unknown after the grace period.
            self.unhealthy_checks += 1
            threshold = self.spec.properties.health.unhealthy_after
            if self.unhealthy_checks >= threshold and self.phase is not Phase.UNHEALTHY:
                self.phase = Phase.UNHEALTHY
                what = "unhealthy" if health is Health.UNHEALTHY else "of unknown health"
                self._event(
                    events.UNHEALTHY,
                    f"{instance.id} {what} for {self.unhealthy_checks} checks",
                    instance.id,
                )

    def _replace(self, reason: str) -> None:
        if self.retiring or self.phase in (Phase.REPLACING, Phase.PROVISIONING):
            return
        self.phase, self.reason = Phase.REPLACING, reason
        self._report()
        if self.owned is not None:
            self._event(events.REPLACING, f"replacing {self.owned.id} ({reason})", self.owned.id)
            if not self._destroy(self.owned):
                self._schedule_retry()
                return
            self.owned = None
        self._provision()
        self._report()

    def _retire(self) -> None:
        self.retiring = True
        if self.phase is not Phase.RETIRING:
            self.phase = Phase.RETIRING
            self._report()
        for instance in (self.owned, *self.extras):
            if instance is not None and not self._destroy(instance):
                self._schedule_retry()
                return
        self.owned, self.extras = None, ()
        self.phase = Phase.RETIRED
        self._report()

    def _retry(self) -> None:
        self.retry_pending = False
        if self.retiring:
            self._retire()
        elif self.phase is Phase.REPLACING:
            self.phase = Phase.STARTING
            self._replace(self.reason)
        elif self.phase is Phase.FAILING:
            # Provision may have half-succeeded: ask for a fresh look rather than provision blind.
            self._ask_for_look()

    # -- plugin calls ---------------------------------------------------------------------

    def _provision(self) -> None:
        context = self.context
        if not context.fence():
            log.warning("%s: not the leader; not provisioning", self.logical_id)
            return
        if not context.breaker.allow():
            self.phase = Phase.FAILING
            self._schedule_retry(context.breaker.retry_in())
            return
        self.phase = Phase.PROVISIONING
        self._report()
        props = self.spec.properties
        spec = Spec(
            properties=props.instance.properties,
            tags={
                TAG_GROUP: context.group_id,
                TAG_CLUSTER: context.cluster_id,
                TAG_CONFIG_HASH: self.spec.config_hash,
                TAG_LOGICAL_ID: self.logical_id,
            },
            logical_id=None if self.spec.is_sized else self.logical_id,
        )
        allocation = props.allocation.method()
        try:
            prepared = context.flavor_plugin.prepare(props.flavor.properties, spec, allocation)
            tags = {**prepared.tags, **spec.tags}  # the group's own tags always win
            instance_id = context.instance_plugin.provision(
                Spec(
                    properties=prepared.properties,
                    tags=tags,
                    init=prepared.init,
                    logical_id=prepared.logical_id,
                    attachments=prepared.attachments,
                )
            )
        except PluginError as error:
            self.acted_at = time.monotonic()
            context.breaker.record_failure(str(error))
            self.failures += 1
            self.phase = Phase.FAILING
            delay = self._schedule_retry()
            self._event(
                events.PROVISION_FAILED,
                f"provision failed: {error}; retrying in {format_duration(delay)}",
            )
            return
        context.breaker.record_success()
        self.failures = 0
        self.acted_at = self.started_at = time.monotonic()
        self.unhealthy_checks = 0
        self.owned = Description(id=instance_id, logical_id=spec.logical_id, tags=tags)
        self.phase = Phase.STARTING
        self._event(events.PROVISIONED, f"provisioned {instance_id}", instance_id)
        self._ask_for_look()

    def _label(self, instance: Description) -> None:
        """Tag an adopted instance with its logical ID (Go InfraKit tagged only named ones) and
        our cluster ID (instances made before cluster IDs carry none)."""
        wanted = {TAG_LOGICAL_ID: self.logical_id, TAG_CLUSTER: self.context.cluster_id}
        labels = {key: value for key, value in wanted.items() if instance.tags.get(key) != value}
        if not labels:
            return
        try:
            self.context.instance_plugin.label(instance.id, labels)
        except PluginError as error:
            log.warning("%s: cannot label %s: %s", self.logical_id, instance.id, error)

    def _destroy(self, instance: Description) -> bool:
        context = self.context
        if not context.fence():
            log.warning("%s: not the leader; not destroying %s", self.logical_id, instance.id)
            return False
        try:
            context.flavor_plugin.drain(self.spec.properties.flavor.properties, instance)
            context.instance_plugin.destroy(instance.id)
        except PluginError as error:
            self.failures += 1
            self._event(events.DESTROY_FAILED, f"destroy of {instance.id} failed: {error}")
            return False
        self.failures = 0
        self.acted_at = time.monotonic()
        self._event(events.DESTROYED, f"destroyed {instance.id}", instance.id)
        return True

    # -- helpers ---------------------------------------------------------------------------

    def _schedule_retry(self, delay: float | None = None) -> float:
        if delay is None:
            delay = self.context.backoff.delay(max(0, self.failures - 1))
        if not self.retry_pending:
            self.retry_pending = True
            tell_later(self.actor_ref, delay, _Retry())
        return delay

    def _ask_for_look(self) -> None:
        if self.parent is not None:
            self.parent.tell(WantLook())

    def _status(self) -> SlotStatus:
        owned = self.owned
        return SlotStatus(
            phase=self.phase,
            instance_id=owned.id if owned else None,
            config_hash=hash_of(owned) if owned else None,
            since=self.started_at,
            reason=self.reason if self.phase is Phase.REPLACING else "",
        )

    def _report(self) -> None:
        status = self._status()
        if status != self._reported and self.parent is not None:
            self._reported = status
            self.parent.tell(StatusReport(self.logical_id, status))

    def _event(self, kind: str, message: str, instance: str | None = None) -> None:
        self.context.publish(
            events.Event(
                group=self.context.group_id,
                kind=kind,
                message=message,
                logical_id=self.logical_id,
                instance=instance,
            )
        )
