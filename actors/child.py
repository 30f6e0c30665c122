"""Actors that report their own death to a parent, and the specs that describe them.

Pykka has no links or monitors between actors, so a parent cannot otherwise learn that a
child died. `SupervisedActor` closes that gap; `Supervisor` builds on it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

import pykka

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "ChildEnded",
    "ChildExited",
    "ChildSpec",
    "Restart",
    "SupervisedActor",
    "start_child_actor",
]


class ChildEnded(Exception):
    """A child's exit error for an end that is news, not a bug (the process it minds has
    exited, say): its supervisor restarts it as after any crash, and logs one line with this
    message instead of the exception's repr."""


class Restart(StrEnum):
    """When a supervisor restarts a child that has exited."""

    PERMANENT = "permanent"
    """Always restarted, whether it crashed or stopped normally."""

    TRANSIENT = "transient"
    """Restarted only after an abnormal exit (an exception)."""

    TEMPORARY = "temporary"
    """Never restarted."""


@dataclass(frozen=True)
class ChildSpec:
    """How a supervisor starts, restarts and stops one child."""

    name: str
    actor_class: type[SupervisedActor]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    restart: Restart = Restart.PERMANENT
    shutdown_timeout: float = 5.0


@dataclass(frozen=True)
class ChildExited:
    """The message a child tells its parent when its thread ends, however it ends."""

    name: str
    ref: pykka.ActorRef[Any]
    error: BaseException | None
    """The exception that killed the child, or None if it stopped normally."""


# Pykka internals: this module is the only place in `actors` that relies on them, and it
# is pinned to pykka>=4.5,<5. It overrides `Actor._handle_failure` (called by Pykka for
# every unhandled exception: in on_start, in a told message, in on_stop) and
# `Actor._actor_loop` (the body of the actor's thread), and `start_child_actor` calls
# `ActorRegistry.register` and `Actor._start_actor_loop` the way `Actor.start()` does.


class SupervisedActor(pykka.ThreadingActor):
    """Base for any actor that a Supervisor can own.

    When its thread ends it tells its parent a `ChildExited`, carrying the first exception
    that killed it: in on_start, in a told message, or in on_stop. An actor that stops
    normally reports `error=None`. Without a parent it behaves like a plain ThreadingActor.
    """

    supervisor_name: str | None = None
    """The child's name under its parent, None when not supervised."""

    parent: pykka.ActorRef[Any] | None = None
    """The actor told `ChildExited` when this actor's thread ends."""

    registered: ClassVar[bool] = True
    """Whether `start_child_actor` lists the actor in Pykka's `ActorRegistry` (whose list is
    scanned on every stop: a class of which there are many thousands says False)."""

    _exit_error: BaseException | None = None

    def _handle_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._exit_error is None and exception_value is not None:
            self._exit_error = exception_value
        super()._handle_failure(exception_type, exception_value, traceback)

    def _actor_loop(self) -> None:
        try:
            super()._actor_loop()
        except BaseException as error:
            if self._exit_error is None:
                self._exit_error = error
            raise
        finally:
            self._report_exit()

    def _report_exit(self) -> None:
        """Tell the parent, if any, that this actor's thread is ending."""
        if self.parent is None:
            return
        exited = ChildExited(
            name=self.supervisor_name or str(self),
            ref=self.actor_ref,
            error=self._exit_error,
        )
        with contextlib.suppress(pykka.ActorDeadError):
            self.parent.tell(exited)


def start_child_actor(spec: ChildSpec, parent: pykka.ActorRef[Any] | None) -> pykka.ActorRef[Any]:
    """Start the actor described by `spec` as a child of `parent`, like `Actor.start()`.

    The parent link and name are set before the actor's loop starts, so that even a child
    that dies in on_start reports its death to the parent.
    """
    actor_class: type = spec.actor_class  # checked at run time too, for untyped callers
    if not issubclass(actor_class, SupervisedActor):
        msg = f"{actor_class.__name__} is not a SupervisedActor"
        raise TypeError(msg)
    actor = actor_class(*spec.args, **spec.kwargs)
    actor.supervisor_name = spec.name
    actor.parent = parent
    if actor_class.registered:
        pykka.ActorRegistry.register(actor.actor_ref)
    actor._start_actor_loop()
    return actor.actor_ref
