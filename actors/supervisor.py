"""Supervision trees on Pykka: restart crashed children, and give up when that does not help."""

from __future__ import annotations

import collections
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pykka

from actors.backoff import Backoff
from actors.child import (
    ChildEnded,
    ChildExited,
    ChildSpec,
    Restart,
    SupervisedActor,
    start_child_actor,
)
from actors.scheduler import Handle, Scheduler, tell_later

__all__ = [
    "ChildEnded",
    "ChildExited",
    "ChildSpec",
    "Restart",
    "Strategy",
    "SupervisedActor",
    "Supervisor",
    "SupervisorGaveUp",
    "start_child_actor",
]

logger = logging.getLogger("actors.supervisor")


class Strategy(StrEnum):
    """Which children a supervisor restarts when one of them has to be restarted."""

    ONE_FOR_ONE = "one_for_one"
    """Only the child that exited."""

    ONE_FOR_ALL = "one_for_all"
    """All children: the others are stopped first, then all are started again in order."""

    REST_FOR_ONE = "rest_for_one"
    """The child that exited and the children started after it."""


class SupervisorGaveUp(Exception):
    """A supervisor restarted its children too often and stopped trying.

    Its parent sees this as the error of the supervisor's `ChildExited`.
    """

    def __init__(self, name: str, last_error: BaseException | None) -> None:
        super().__init__(name, last_error)
        self.name = name
        self.last_error = last_error

    def __str__(self) -> str:
        return f"supervisor {self.name!r} gave up; last error: {self.last_error!r}"


@dataclass(eq=False)
class _Child:
    """The supervisor's record of one child."""

    spec: ChildSpec
    ref: pykka.ActorRef[Any] | None = None
    started_at: float = 0.0
    restarts: int = 0
    """Consecutive restarts, for the backoff; reset once the child has lived `within`."""
    token: int = 0
    """Identifies the pending restart, so that a superseded one is ignored."""
    timer: Handle | None = None


@dataclass(frozen=True)
class _RestartDue:
    """Told to the supervisor by the scheduler when a restart's backoff has passed."""

    token: int
    names: tuple[str, ...]


class Supervisor(SupervisedActor):
    """An actor that starts children, restarts them when they exit, and stops them in order.

    Call its public methods through a proxy (or `ask`), never directly from another thread.
    Subclasses that override `on_receive` must call `super().on_receive(message)` for
    messages they do not know, since the supervisor learns of its children's exits there.
    """

    def __init__(
        self,
        children: Sequence[ChildSpec] = (),
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        within: float = 5.0,
        backoff: Backoff = Backoff(),  # noqa: B008 (frozen dataclass)
        on_give_up: Callable[[BaseException], None] | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        super().__init__()
        counts = collections.Counter(spec.name for spec in children)
        duplicates = sorted(name for name, count in counts.items() if count > 1)
        if duplicates:
            msg = f"duplicate child names: {duplicates}"
            raise ValueError(msg)
        if max_restarts < 0 or within <= 0:
            msg = f"need max_restarts >= 0 and within > 0, not {max_restarts} and {within}"
            raise ValueError(msg)
        # The _sup_ prefix keeps these clear of the attributes of subclasses.
        self._sup_initial_children = tuple(children)
        self._sup_strategy = Strategy(strategy)
        self._sup_max_restarts = max_restarts
        self._sup_within = within
        self._sup_backoff = backoff
        self._sup_on_give_up = on_give_up
        self._sup_scheduler = scheduler
        self._sup_children: dict[str, _Child] = {}
        self._sup_restart_times: collections.deque[float] = collections.deque()
        self._sup_tokens = itertools.count(1)

    # -- public API, called through a proxy --------------------------------------------

    def start_child(self, spec: ChildSpec) -> pykka.ActorRef[Any]:
        """Start a child now and append it to the start order; its name must be unique."""
        if spec.name in self._sup_children:
            msg = f"a child named {spec.name!r} already exists"
            raise ValueError(msg)
        child = _Child(spec)
        self._start_one(child)
        self._sup_children[spec.name] = child
        return self._current_ref(child)

    def stop_child(self, name: str, timeout: float | None = None) -> None:
        """Stop a child and forget it, so that it is not restarted; unknown names are ignored.

        Waits at most `timeout` seconds (default: the child's `shutdown_timeout`).
        """
        child = self._sup_children.pop(name, None)
        if child is not None:
            self._stop_one(child, timeout)

    def child(self, name: str) -> pykka.ActorRef[Any] | None:
        """The current ref of a child; None while it waits to be restarted or if unknown."""
        child = self._sup_children.get(name)
        return None if child is None else child.ref

    def has_child(self, name: str) -> bool:
        """Whether a child of that name exists (running, or waiting to be restarted)."""
        return name in self._sup_children

    def which_children(self) -> list[tuple[str, pykka.ActorRef[Any] | None]]:
        """Every child's name and current ref (None while it waits), in start order."""
        return [(name, child.ref) for name, child in self._sup_children.items()]

    # -- hooks for subclasses ----------------------------------------------------------

    def on_child_exit(self, exit: ChildExited, will_restart: bool) -> None:
        """Called when a child exits without being asked to; the supervisor has logged it."""

    def on_child_restarted(self, name: str, ref: pykka.ActorRef[Any]) -> None:
        """Called after a child has been restarted, with its new ref."""

    # -- Pykka hooks -------------------------------------------------------------------

    def on_start(self) -> None:
        """Start the initial children in order; if one cannot be built, stop the others."""
        try:
            for spec in self._sup_initial_children:
                self.start_child(spec)
        except Exception:
            self._stop_all_children()
            raise

    def on_stop(self) -> None:
        """Stop the children in reverse start order."""
        self._stop_all_children()

    def on_failure(self, *_exc_info: Any) -> None:
        """A supervisor that crashes takes its children down with it."""
        self._stop_all_children()

    def on_receive(self, message: Any) -> Any:
        """Handle children's exits and due restarts; log anything else."""
        if isinstance(message, ChildExited):
            self._on_child_exited(message)
            return None
        if isinstance(message, _RestartDue):
            self._on_restart_due(message)
            return None
        return super().on_receive(message)

    # -- internals ---------------------------------------------------------------------

    def _sup_name(self) -> str:
        return self.supervisor_name or self.__class__.__name__

    def _current_ref(self, child: _Child) -> pykka.ActorRef[Any]:
        assert child.ref is not None
        return child.ref

    def _start_one(self, child: _Child) -> None:
        child.ref = start_child_actor(child.spec, self.actor_ref)
        child.started_at = time.monotonic()

    def _stop_one(self, child: _Child, timeout: float | None = None) -> None:
        """Stop one child and wait for it, but never longer than its timeout."""
        if child.timer is not None:
            child.timer.cancel()
            child.timer = None
        ref, child.ref = child.ref, None
        if ref is None:
            return
        if timeout is None:
            timeout = child.spec.shutdown_timeout
        try:
            ref.stop(block=True, timeout=timeout)
        except pykka.Timeout:
            logger.error(
                "child %r did not stop within %gs; leaving it behind", child.spec.name, timeout
            )

    def _stop_all_children(self) -> None:
        children = list(self._sup_children.values())
        self._sup_children.clear()
        for child in reversed(children):
            self._stop_one(child)

    def _on_child_exited(self, exit: ChildExited) -> None:
        child = self._sup_children.get(exit.name)
        if child is None or child.ref is None or child.ref.actor_urn != exit.ref.actor_urn:
            # An exit we caused, or of a child we have already replaced or forgotten.
            return
        child.ref = None
        will_restart = self._child_failed(child, exit.error)
        self.on_child_exit(exit, will_restart)

    def _child_failed(self, child: _Child, error: BaseException | None) -> bool:
        """Decide what to do about a child that has exited; return whether it will restart."""
        spec = child.spec
        if error is None:
            what = "stopped"
        elif isinstance(error, ChildEnded):
            what = f"ended: {error}"
        else:
            what = f"crashed: {error!r}"
        restart = spec.restart is Restart.PERMANENT or (
            spec.restart is Restart.TRANSIENT and error is not None
        )
        if not restart:
            logger.log(
                logging.INFO if error is None else logging.WARNING,
                "child %r %s; not restarting it (%s)",
                spec.name,
                what,
                spec.restart.value,
            )
            del self._sup_children[spec.name]
            return False

        now = time.monotonic()
        self._sup_restart_times.append(now)
        while self._sup_restart_times[0] < now - self._sup_within:
            self._sup_restart_times.popleft()
        if len(self._sup_restart_times) > self._sup_max_restarts:
            self._give_up(spec.name, what, error)
            return False

        if now - child.started_at > self._sup_within:
            child.restarts = 0
        delay = self._sup_backoff.delay(child.restarts)
        child.restarts += 1
        group = self._restart_group(child)
        others = ""
        if len(group) > 1:
            others = f" with {len(group) - 1} other(s) ({self._sup_strategy.value})"
        logger.log(
            logging.INFO if error is None else logging.WARNING,
            "child %r %s; restarting%s in %.2fs (restart %d of %d within %gs)",
            spec.name,
            what,
            others,
            delay,
            len(self._sup_restart_times),
            self._sup_max_restarts,
            self._sup_within,
        )
        self._schedule_restart(group, delay)
        return True

    def _restart_group(self, child: _Child) -> list[_Child]:
        """Stop the siblings the strategy restarts with `child`; return all to restart."""
        if self._sup_strategy is Strategy.ONE_FOR_ONE:
            return [child]
        children = list(self._sup_children.values())
        if self._sup_strategy is Strategy.REST_FOR_ONE:
            children = children[children.index(child) :]
        for sibling in reversed(children):
            if sibling is not child:
                self._stop_one(sibling)
                if sibling.spec.restart is Restart.TEMPORARY:
                    del self._sup_children[sibling.spec.name]
        return [c for c in children if c.spec.restart is not Restart.TEMPORARY or c is child]

    def _schedule_restart(self, group: list[_Child], delay: float) -> None:
        token = next(self._sup_tokens)
        due = _RestartDue(token, tuple(child.spec.name for child in group))
        timer = tell_later(self.actor_ref, delay, due, self._sup_scheduler)
        for child in group:
            if child.timer is not None:
                child.timer.cancel()
            child.token = token
            child.timer = timer

    def _on_restart_due(self, due: _RestartDue) -> None:
        for name in due.names:
            child = self._sup_children.get(name)
            if child is None or child.token != due.token or child.ref is not None:
                continue  # forgotten, or its restart was superseded
            child.timer = None
            try:
                self._start_one(child)
            except Exception as error:
                # Treated like a crash; if that makes the supervisor give up, it has
                # forgotten all children, and the rest of this loop finds none.
                logger.exception("could not restart child %r", name)
                self._child_failed(child, error)
                continue
            logger.info("child %r restarted", name)
            self.on_child_restarted(name, self._current_ref(child))

    def _give_up(self, name: str, what: str, error: BaseException | None) -> None:
        """Stop all children and escalate: die if supervised, else report and stop."""
        gave_up = SupervisorGaveUp(self._sup_name(), error)
        logger.error(
            "supervisor %r gives up: child %r %s; more than %d restarts within %gs",
            self._sup_name(),
            name,
            what,
            self._sup_max_restarts,
            self._sup_within,
        )
        self._stop_all_children()
        if self.parent is not None:
            raise gave_up
        if self._sup_on_give_up is not None:
            try:
                self._sup_on_give_up(gave_up)
            except Exception:
                logger.exception("on_give_up callback of supervisor %r failed", self._sup_name())
        self.stop()
