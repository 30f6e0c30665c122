"""InstanceActor: one logical instance's lifecycle, provision -> health -> drain -> destroy.

The group's reconciler tells each actor what exists (an `Observe`, or a `Gone` when the plugin
says its instance vanished), and asks it to `Replace` or `Retire`; the actor makes the plugin
calls, checks its own instance's health on its own schedule (on the group's health lane, so that
checks of different instances run side by side and a hung one holds up only its own instance),
and reports its phase back (`StatusReport`). A surged replacement makes the new instance first
and removes the old one once the new one has been healthy for Update.MinReadyTime. Drains run
on the group's work lane, so that a drain that hangs is abandoned after Update.DrainTimeout
(the instance is destroyed anyway) without ever blocking the actor. Plugin errors are retried
with backoff behind the group's circuit breaker; anything unexpected crashes the actor, and its
supervisor restarts it (it then adopts its instance from the next look).

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
from infrakit.group.plan import NO_HOLDS, Holds, Observation, Phase, SlotStatus, hash_of
from infrakit.group.slots import created
from infrakit.spec import GroupSpec
from infrakit.spi import Description, FlavorPlugin, Health, InstancePlugin, PluginError, Spec
from infrakit.spi.flavor import ProbesHealth
from infrakit.spi.instance import (
    TAG_CLUSTER,
    TAG_CONFIG_HASH,
    TAG_CREATED,
    TAG_GROUP,
    TAG_LOGICAL_ID,
)

log = logging.getLogger(__name__)
NOT_OURS = "this manager no longer runs the group (not the leader, or not its owner)"

_LIVE = (Phase.STARTING, Phase.RUNNING, Phase.UNHEALTHY)
_REASONED = (Phase.REPLACING, Phase.HELD)
# Why a slot is held without an instance (its report's reason).
_STANDBY_HELD = "in standby"
_LAUNCH_HELD = "launch suspended"
_HEAL_HELD = "heal suspended"


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


class HoldBoard:
    """What an operator holds the group back from (`Holds`), shared by its actors, which read
    it at each decision: suspending a process costs no message to 10,000 actors; lifting a
    hold is told to each (`HoldsLifted`), as each may have work waiting on it."""

    def __init__(self) -> None:
        self.holds: Holds = NO_HOLDS


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
    work_lane: Lane  # drains: slow flavor work the actor must never wait on
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.5, maximum=30.0))
    board: HoldBoard = field(default_factory=HoldBoard)
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
    """Drain and destroy the current instance, then provision a new one; with `surge`,
    provision the new one first and remove the old one once the new one is ready."""

    reason: str
    surge: bool = False


@dataclass(frozen=True)
class HoldsLifted:
    """An operator lifted a hold (a suspended process, a standby): do what waited on it."""


@dataclass(frozen=True)
class Release:
    """Leave the group without destroying anything (its instance is protected): report RETIRED."""


@dataclass(frozen=True)
class _Drained:
    """The drain of an instance came back (with the error it raised, if any)."""

    instance_id: str
    attempt: int
    error: BaseException | None


@dataclass(frozen=True)
class _DrainExpired:
    """Update.DrainTimeout has passed since the drain of an instance began."""

    instance_id: str
    attempt: int


@dataclass(frozen=True)
class _Ready:
    """Update.MinReadyTime may have passed since the new instance of this generation turned
    healthy: time to remove the old one of a surged replacement."""

    generation: int


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
    provisioned since that look. It waits for the next one instead. `existed` says whether the
    slot is one the group had before (a runtime that starts again, a new leader), whose missing
    instance is healed, not launched anew.
    """

    def __init__(self, observe: Observe, existed: bool = False) -> None:
        self._observe: Observe | None = observe
        self.existed = existed

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
        # Whether the slot had an instance once (its loss is healed), or is new (launched).
        self.existed = first_start is None or first_start.existed or self._first is None
        self.acted_at = now if self._first is None else self._first.taken_at
        self.started_at = now
        self.created_at = 0.0  # wall clock: the owned instance's age (Oldest, Newest)
        self.unhealthy_checks = 0
        self.failures = 0
        self.retry_pending = False
        self.retiring = False
        self.released = False  # left the group leaving its instance alone: destroys nothing
        self._reported: SlotStatus | None = None
        self._generation = 0  # of the owned instance, so that old checks are told apart
        self._checking = False
        self.outgoing: Description | None = None  # the old instance of a surged replacement
        self.ready_at: float | None = None  # wall clock: when the owned one last turned healthy
        self.note = ""  # for operators: the last drain abandoned
        self._to_remove: dict[str, Description] = {}  # instance ID -> instance: drain, destroy
        self._draining: dict[str, int] = {}  # of `_to_remove`: drains under way -> attempt
        self._attempts = 0

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
            self._set_spec(message.spec, message.previous)
        elif isinstance(message, ReportAgain):
            self._reported = None
            self._report()
        elif isinstance(message, Replace):
            self._replace(message.reason, message.surge)
        elif isinstance(message, Retire):
            self._retire()
        elif isinstance(message, Release):
            self._release()
        elif isinstance(message, HoldsLifted):
            self._holds_lifted()
        elif isinstance(message, _Drained):
            self._drain_ended(message.instance_id, message.attempt, message.error, False)
        elif isinstance(message, _DrainExpired):
            self._drain_ended(message.instance_id, message.attempt, None, True)
        elif isinstance(message, _Ready):
            self._ready(message.generation)
        elif isinstance(message, _Retry):
            self._retry()
        else:
            return super().on_receive(message)
        return None

    # -- behaviour ------------------------------------------------------------------------

    def _observe(self, message: Observe) -> None:
        if self.released:
            return  # an observation sent before the release still shows the instance
        observation = message.observation
        if message.taken_at < self.acted_at and not self._shows_mine(observation):
            return  # the look began before our last action and does not show its result
        outgoing = self.outgoing
        keep = outgoing.id if outgoing is not None else None
        self.extras = tuple(extra for extra in observation.extras if extra.id != keep)
        for extra in self.extras:
            if extra.id not in self._to_remove:
                self._event(events.DUPLICATE, f"destroying duplicate {extra.id}", extra.id)
                self._remove(extra)
        if (
            outgoing is not None
            and observation.outgoing is None
            and outgoing.id not in self._draining
        ):
            self.outgoing = None  # the old instance of a surged replacement is gone already
            self._to_remove.pop(outgoing.id, None)
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
        outgoing = self.outgoing
        draining = instance_id in self._draining
        if outgoing is not None and outgoing.id == instance_id and not draining:
            self.outgoing = None
            self._to_remove.pop(instance_id, None)
            self._report()
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
        was_live = self.owned is not None and self.phase in _LIVE
        healing = self.existed or (self.phase is Phase.HELD and self.reason == _HEAL_HELD)
        if was_live and self.owned is not None:
            held = self._held_by(healing=True)
            then = f"not replacing it: {held}" if held else "replacing it"
            self._event(events.GONE, f"{self.owned.id} is gone; {then}", self.owned.id)
        self.owned = None
        if self.phase is Phase.FAILING and self.retry_pending:
            return  # wait for the backoff
        self._provision(healing)

    def _held_by(self, healing: bool) -> str | None:
        """Why an operator's hold keeps this slot from provisioning, if one does."""
        holds = self.context.board.holds
        if self.logical_id in holds.standby:
            return _STANDBY_HELD
        if holds.blocks("launch"):
            return _LAUNCH_HELD
        if healing and holds.blocks("heal"):
            return _HEAL_HELD
        return None

    def _holds_lifted(self) -> None:
        """Do what an operator's hold kept waiting: provision, or remove what was kept."""
        if self.phase is Phase.HELD and self._held_by(self.reason == _HEAL_HELD) is None:
            self._missing()
        for instance in list(self._to_remove.values()):
            if instance.id not in self._draining:
                self._remove(instance)
        self._report()

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
        self.existed = True
        self.started_at = time.monotonic()
        # An instance made before the tag existed is as old as its adoption.
        self.created_at = created(instance) or time.time()
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
                self.ready_at = time.time()
                self._event(events.HEALTHY, f"{instance.id} is healthy", instance.id)
                if self.outgoing is not None:
                    ready = self.spec.properties.update.min_ready_time
                    tell_later(self.actor_ref, ready, _Ready(self._generation))
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

    def _replace(self, reason: str, surge: bool = False) -> None:
        if self.retiring or self.outgoing is not None:
            return
        if self.phase in (Phase.REPLACING, Phase.PROVISIONING):
            return
        self.reason = reason
        old = self.owned
        if surge and old is not None:
            # Make before break: the old instance serves until its replacement is ready.
            self._event(
                events.REPLACING,
                f"replacing {old.id} ({reason}): its replacement first, {old.id} serving"
                " until then",
                old.id,
                data={"Reason": reason},
            )
            self.outgoing, self.owned = old, None
            self._generation += 1  # checks of the old instance are no longer ours
            self.acted_at = time.monotonic()
            self._provision()
            self._report()
            return
        self.phase = Phase.REPLACING
        self._report()
        if old is not None:
            self._event(
                events.REPLACING, f"replacing {old.id} ({reason})", old.id, data={"Reason": reason}
            )
            self._remove(old)  # the new one is provisioned once the old one is gone
        else:
            self._provision()
            self._report()

    def _ready(self, generation: int) -> None:
        """The new instance of a surged replacement may be ready: remove the old one."""
        outgoing = self.outgoing
        if outgoing is None or generation != self._generation or self.phase is not Phase.RUNNING:
            return
        ready = self.spec.properties.update.min_ready_time
        if self.ready_at is None or time.time() - self.ready_at < ready * 0.999:
            return  # turned unhealthy and healthy again since: a later _Ready comes
        self._remove(outgoing)

    def _set_spec(self, spec: GroupSpec, previous: GroupSpec | None) -> None:
        """Take a new spec. A surged replacement whose old instance has the new spec's
        configuration (a rollback) is undone: the old one is kept, the new one removed."""
        self.spec, self.previous = spec, previous
        outgoing, owned = self.outgoing, self.owned
        if outgoing is None or outgoing.id in self._draining:
            return
        found = hash_of(outgoing)
        if found != spec.config_hash and found not in spec.legacy_hashes:
            return
        self.outgoing = None
        self._to_remove.pop(outgoing.id, None)
        self.phase = Phase.PENDING
        self._own(outgoing)
        if owned is not None:
            self._remove(owned)
        self._report()

    def _retire(self) -> None:
        if self.released:
            self._report()
            return
        self.retiring = True
        if self.phase is not Phase.RETIRING:
            self.phase = Phase.RETIRING
            self._report()
        for instance in (self.owned, self.outgoing, *self.extras):
            if instance is not None:
                self._remove(instance)
        if not self._to_remove and self.owned is None and self.outgoing is None:
            self.extras = ()
            self.phase = Phase.RETIRED
            self._report()

    def _release(self) -> None:
        """Leave the group, leaving its instance alone (protected, or moved to another slot);
        nothing told to it afterwards destroys anything."""
        self.retiring = self.released = True
        self.owned, self.outgoing, self.extras = None, None, ()
        self._to_remove.clear()
        self.phase = Phase.RETIRED
        self._report()

    def _retry(self) -> None:
        self.retry_pending = False
        for instance in list(self._to_remove.values()):
            if instance.id not in self._draining:
                self._remove(instance)  # a removal that failed: again
        if self.retiring:
            self._retire()
        elif self.phase is Phase.REPLACING and not self._to_remove:
            self.phase = Phase.STARTING
            self._replace(self.reason)
        elif self.phase is Phase.FAILING:
            # Provision may have half-succeeded: ask for a fresh look rather than provision blind.
            self._ask_for_look()

    # -- removing: drain on the work lane, bounded by Update.DrainTimeout, then destroy ---

    def _remove(self, instance: Description) -> None:
        """Drain `instance` on the group's work lane, then destroy it; a drain still running
        after Update.DrainTimeout is abandoned and the instance destroyed anyway. The actor
        goes on meanwhile, and hears the outcome as a message."""
        self._to_remove[instance.id] = instance
        if instance.id in self._draining:
            return
        if self.context.board.holds.blocks("terminate"):
            return  # kept until `unsuspend terminate` (HoldsLifted)
        if not self.context.fence():
            log.warning("%s: %s; not destroying %s", self.logical_id, NOT_OURS, instance.id)
            self._schedule_retry()
            return
        self._attempts += 1
        attempt = self._attempts
        self._draining[instance.id] = attempt
        props = self._made_with(instance).properties.flavor.properties
        flavor = self.context.flavor_plugin
        ref = self.actor_ref
        instance_id = instance.id

        def done(outcome: Outcome[None]) -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(_Drained(instance_id, attempt, outcome.error))

        self.context.work_lane.submit(lambda: flavor.drain(props, instance), done)
        timeout = self.spec.properties.update.drain_timeout
        tell_later(ref, timeout, _DrainExpired(instance_id, attempt))

    def _drain_ended(
        self, instance_id: str, attempt: int, error: BaseException | None, abandoned: bool
    ) -> None:
        if self._draining.get(instance_id) != attempt:
            return  # the drain already came back, or its time ran out first
        del self._draining[instance_id]
        instance = self._to_remove.get(instance_id)
        if instance is None:
            return
        if abandoned:
            timeout = format_duration(self.spec.properties.update.drain_timeout)
            self.note = f"drain of {instance_id} abandoned after {timeout}"
            self._event(
                events.DRAIN_ABANDONED,
                f"{self.note} (Update.DrainTimeout); destroying it anyway",
                instance_id,
            )
            self._report()
        elif error is not None:
            self.failures += 1
            self._event(events.DESTROY_FAILED, f"drain of {instance_id} failed: {error}")
            self._schedule_retry()
            return
        if self._destroy(instance):
            self._removed(instance)
        else:
            self._schedule_retry()

    def _removed(self, instance: Description) -> None:
        """`instance` is gone: carry on with what its removal was for."""
        self._to_remove.pop(instance.id, None)
        self.extras = tuple(extra for extra in self.extras if extra.id != instance.id)
        if self.outgoing is not None and self.outgoing.id == instance.id:
            self.outgoing = None
        if self.owned is not None and self.owned.id == instance.id:
            self.owned = None
            if self.phase is Phase.REPLACING and not self.retiring:
                self._provision()
        if self.retiring:
            self._retire()
            return
        self._report()

    # -- plugin calls ---------------------------------------------------------------------

    def _provision(self, healing: bool = False) -> None:
        context = self.context
        if not context.fence():
            log.warning("%s: %s; not provisioning", self.logical_id, NOT_OURS)
            return
        held = self._held_by(healing)
        if held is not None:
            self.phase, self.reason = Phase.HELD, held
            self._report()
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
                TAG_CREATED: f"{time.time():.3f}",
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
        if not context.fence():
            self._undo(instance_id)
            return
        self._own(Description(id=instance_id, logical_id=spec.logical_id, tags=tags))

    def _undo(self, instance_id: str) -> None:
        """Destroy the instance just made: its provision returned after leadership was lost
        (a pause in the call: SIGSTOP, GC, swap), and a successor may already run one in this
        slot. Only this actor's own work is undone; a look decides what comes next."""
        log.warning(
            "%s: leadership lost while provisioning; destroying %s", self.logical_id, instance_id
        )
        try:
            self.context.instance_plugin.destroy(instance_id)
        except PluginError as error:  # a duplicate, then, for the next leader to remove
            self._event(events.DESTROY_FAILED, f"destroy of {instance_id} failed: {error}")
        else:
            self._event(
                events.DESTROYED,
                f"destroyed {instance_id} (provisioned after leadership was lost)",
                instance_id,
            )
        self.phase = Phase.PENDING
        self._report()

    def _label(self, instance: Description) -> None:
        """Tag an adopted instance with its logical ID (Go InfraKit tagged only named ones) and
        our cluster ID (instances made before cluster IDs carry none)."""
        wanted = {TAG_LOGICAL_ID: self.logical_id, TAG_CLUSTER: self.context.cluster_id}
        labels = {key: value for key, value in wanted.items() if instance.tags.get(key) != value}
        if not labels or not self.context.fence():
            return
        try:
            self.context.instance_plugin.label(instance.id, labels)
        except PluginError as error:
            log.warning("%s: cannot label %s: %s", self.logical_id, instance.id, error)

    def _destroy(self, instance: Description) -> bool:
        """Destroy a drained (or abandoned) instance; False if the plugin failed."""
        context = self.context
        if not context.fence():
            log.warning("%s: %s; not destroying %s", self.logical_id, NOT_OURS, instance.id)
            return False
        try:
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
            since=self.created_at,
            reason=self.reason if self.phase in _REASONED or self.outgoing else "",
            outgoing=self.outgoing.id if self.outgoing is not None else None,
            ready_at=self.ready_at if self.phase is Phase.RUNNING else None,
            note=self.note,
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
