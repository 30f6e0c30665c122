"""InstanceActor: one logical instance's lifecycle, provision -> health -> drain -> destroy.

The group's reconciler tells each actor what exists (an `Observe`, or a `Gone` when the plugin
says its instance vanished), and asks it to `Replace` or `Retire`; the actor makes the plugin
calls, checks its own instance's health on its own schedule (on the group's health lane, so that
checks of different instances run side by side and a hung one holds up only its own instance),
and reports its phase back (`StatusReport`). Plugin errors are retried with backoff behind the
group's circuit breaker; anything unexpected crashes the actor, and its supervisor restarts it
(it then adopts its instance from the next look).

Observations taken before the actor's last action are ignored: a describe that started before a
provision finished would otherwise make the actor think its new instance is missing and make a
duplicate.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pykka

from actors import Backoff, CircuitBreaker, tell_later
from actors.pooled import PooledActor
from actors.workpool import Lane, Outcome
from infrakit import events
from infrakit.duration import format_duration
from infrakit.group.plan import Observation, Phase, SlotStatus, hash_of
from infrakit.spec import GroupSpec
from infrakit.spi import Description, FlavorPlugin, Health, InstancePlugin, PluginError, Spec
from infrakit.spi.flavor import ProbesHealth
from infrakit.spi.instance import TAG_CLUSTER, TAG_CONFIG_HASH, TAG_GROUP, TAG_LOGICAL_ID

log = logging.getLogger(__name__)

_LIVE = (Phase.STARTING, Phase.RUNNING, Phase.UNHEALTHY)


class Address:
    """Where an actor's reports go: the group's reconciler, which a restart replaces."""

    def __init__(self) -> None:
        self.ref: pykka.ActorRef[Any] | None = None

    def tell(self, message: object) -> None:
        ref = self.ref
        if ref is not None:
            # A dead one is restarting: the new reconciler asks every actor to report again.
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(message)


@dataclass(frozen=True)
class GroupContext:
    """What every instance actor of one group shares: plugins, breaker, events, fencing, where
    to report, and the lane its health checks run on."""

    group_id: str
    cluster_id: str
    instance_plugin: InstancePlugin
    flavor_plugin: FlavorPlugin
    breaker: CircuitBreaker
    publish: Callable[[events.Event], None]
    fence: Callable[[], bool]
    reconciler: Address
    health_lane: Lane
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.5, maximum=30.0))
    _probes: dict[str, bool] = field(default_factory=dict)

    def probes_health(self, spec: GroupSpec) -> bool:
        """Whether the flavor's health check does anything for `spec` (remembered per
        configuration, as asking may parse the properties)."""
        known = self._probes.get(spec.config_hash)
        if known is None:
            flavor = self.flavor_plugin
            props = spec.properties.flavor.properties
            known = not isinstance(flavor, ProbesHealth) or flavor.probes_health(props)
            self._probes[spec.config_hash] = known
        return known


# Messages.


@dataclass(frozen=True)
class Observe:
    """What the group saw for this logical instance, and when the look began (monotonic)."""

    observation: Observation
    taken_at: float


@dataclass(frozen=True)
class Gone:
    """The instance plugin says this instance no longer exists."""

    instance_id: str


@dataclass(frozen=True)
class SetSpec:
    """The group's spec changed: provision with this one from now on. `previous` is the spec
    being rolled from, so that its instances are checked with the health check they were made
    with until they are replaced."""

    spec: GroupSpec
    previous: GroupSpec | None = None


@dataclass(frozen=True)
class ReportAgain:
    """Asks an actor to report its status, even if unchanged (a new reconciler asks)."""


@dataclass(frozen=True)
class _CheckDue:
    """Time to check the health of the instance of this generation."""

    generation: int


@dataclass(frozen=True)
class _Checked:
    """A health check of the instance of this generation came back."""

    generation: int
    outcome: Outcome[Health]


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
    """Told to the group's reconciler whenever the actor's status changes."""

    logical_id: str
    status: SlotStatus


@dataclass(frozen=True)
class WantLook:
    """Asks the group's reconciler for a fresh observation soon."""


class FirstStart:
    """The look that made the group start an actor, which its first incarnation acts on at once.

    A restarted actor (same constructor arguments) must not trust it: its predecessor may have
    provisioned since that look. It waits for the next one instead.
    """

    def __init__(self, observe: Observe) -> None:
        self._observe: Observe | None = observe

    def take(self) -> Observe | None:
        observe, self._observe = self._observe, None
        return observe


class InstanceActor(PooledActor):
    """Keeps one logical instance of a group alive.

    A pooled actor (no thread of its own), so that a group of 10,000 costs 10,000 small objects,
    not 10,000 threads; its plugin calls run on the runtime's actor pool, its health checks on
    the group's health lane.
    """

    def __init__(
        self,
        context: GroupContext,
        spec: GroupSpec,
        logical_id: str,
        first_start: FirstStart | None = None,
        previous: GroupSpec | None = None,
    ) -> None:
        super().__init__()
        self.context = context
        self.spec = spec
        self.previous = previous  # the spec a rollout rolls from: its instances' health check
        self.logical_id = logical_id
        self.phase = Phase.PENDING
        self.reason = ""
        self.owned: Description | None = None
        self.extras: tuple[Description, ...] = ()
        now = time.monotonic()
        self._first = first_start.take() if first_start is not None else None
        self.acted_at = now if self._first is None else self._first.taken_at
        self.started_at = now
        self.unhealthy_checks = 0
        self.failures = 0
        self.retry_pending = False
        self.retiring = False
        self._reported: SlotStatus | None = None
        self._generation = 0  # of the owned instance, so that old checks are told apart
        self._checking = False

    # -- Pykka hooks ---------------------------------------------------------------------

    def on_start(self) -> None:
        first, self._first = self._first, None
        if first is not None:
            self._observe(first)
        else:
            self._report()

    def on_receive(self, message: object) -> object:
        if isinstance(message, Observe):
            self._observe(message)
        elif isinstance(message, Gone):
            self._gone(message.instance_id)
        elif isinstance(message, _CheckDue):
            self._check(message.generation)
        elif isinstance(message, _Checked):
            self._checked(message)
        elif isinstance(message, SetSpec):
            self.spec, self.previous = message.spec, message.previous
        elif isinstance(message, ReportAgain):
            self._reported = None
            self._report()
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
            self._present(observation.owned)
        self._report()

    def _gone(self, instance_id: str) -> None:
        self.extras = tuple(extra for extra in self.extras if extra.id != instance_id)
        owned = self.owned
        if owned is None or owned.id != instance_id or self.retiring:
            return
        if self.phase in _LIVE:
            self._missing()
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

    def _present(self, instance: Description) -> None:
        if self.owned is None or self.owned.id != instance.id:
            if self.phase in (Phase.PENDING, Phase.FAILING):
                self._event(events.ADOPTED, f"adopted {instance.id}", instance.id)
                self._label(instance)
            self._own(instance)
        else:
            self.owned = instance
        self.retry_pending = False

    def _own(self, instance: Description) -> None:
        """Take `instance` as this actor's: its grace period begins, and its health checks."""
        self.owned = instance
        self.started_at = time.monotonic()
        self.unhealthy_checks = 0
        self._generation += 1
        self._checking = False
        if not self.context.probes_health(self._made_with(instance)):
            self._judge(instance, Health.HEALTHY)  # nothing to check: healthy once it exists
        else:
            self.phase = Phase.STARTING
            self._check(self._generation)

    def _made_with(self, instance: Description) -> GroupSpec:
        """The spec the instance was made with (its config hash says which), so that it is
        checked with its own health check until it is replaced; the current one if unknown."""
        found = hash_of(instance)
        previous = self.previous
        if (
            previous is not None
            and found is not None
            and found != self.spec.config_hash
            and (found == previous.config_hash or found in previous.legacy_hashes)
        ):
            return previous
        return self.spec

    # -- health ---------------------------------------------------------------------------

    def _check(self, generation: int) -> None:
        """Check the owned instance's health on the group's lane; the answer comes back as
        a message, so the actor never waits for it."""
        owned = self.owned
        if generation != self._generation or owned is None or self._checking:
            return
        if self.retiring or self.phase not in _LIVE:
            return
        self._checking = True
        props = self._made_with(owned).properties.flavor.properties
        flavor = self.context.flavor_plugin
        ref = self.actor_ref

        def done(outcome: Outcome[Health]) -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(_Checked(generation, outcome))

        self.context.health_lane.submit(lambda: flavor.healthy(props, owned), done)

    def _checked(self, message: _Checked) -> None:
        if message.generation != self._generation:
            return  # about an instance this actor no longer owns
        self._checking = False
        owned = self.owned
        if owned is None or self.retiring:
            return
        if self.phase not in _LIVE:
            return
        error = message.outcome.error
        health = message.outcome.value if error is None else Health.UNKNOWN
        if error is not None:
            log.warning("%s: health check of %s failed: %s", self.logical_id, owned.id, error)
        self._judge(owned, health if health is not None else Health.UNKNOWN)
        self._report()
        interval = self._made_with(owned).properties.health.interval
        tell_later(self.actor_ref, interval, _CheckDue(self._generation))

    def _judge(self, instance: Description, health: Health) -> None:
        """Move between STARTING, RUNNING and UNHEALTHY on one check's answer."""
        in_grace = time.monotonic() - self.started_at < self.spec.properties.health.grace_period
        if health is Health.HEALTHY:
            self.unhealthy_checks = 0
            if self.phase is not Phase.RUNNING:
                self.phase = Phase.RUNNING
                self._event(events.HEALTHY, f"{instance.id} is healthy", instance.id)
        elif health is Health.UNKNOWN and in_grace:
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

    # -- replacing and retiring -----------------------------------------------------------

    def _replace(self, reason: str) -> None:
        if self.retiring or self.phase in (Phase.REPLACING, Phase.PROVISIONING):
            return
        self.phase, self.reason = Phase.REPLACING, reason
        self._report()
        if self.owned is not None:
            self._event(
                events.REPLACING,
                f"replacing {self.owned.id} ({reason})",
                self.owned.id,
                data={"Reason": reason},
            )
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
        first = self.phase is Phase.PENDING
        self.phase = Phase.PROVISIONING
        if not first:  # pending or provisioning is all one to the group: spare the message
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
                data={"Error": type(error).__name__},
            )
            return
        context.breaker.record_success()
        self.failures = 0
        self.acted_at = time.monotonic()
        self._event(events.PROVISIONED, f"provisioned {instance_id}", instance_id)
        self._own(Description(id=instance_id, logical_id=spec.logical_id, tags=tags))

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
        self.context.reconciler.tell(WantLook())

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
        if status != self._reported:
            self._reported = status
            self.context.reconciler.tell(StatusReport(self.logical_id, status))

    def _event(
        self,
        kind: str,
        message: str,
        instance: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.context.publish(
            events.Event(
                group=self.context.group_id,
                kind=kind,
                message=message,
                logical_id=self.logical_id,
                instance=instance,
                data=data or {},
            )
        )
