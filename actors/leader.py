"""An actor that keeps campaigning in an election and tells subscribers when it wins or loses."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from actors.election import Election
from actors.polling import PollingActor
from actors.scheduler import Scheduler

__all__ = ["LeaderActor"]

logger = logging.getLogger("actors.leader")


class LeaderActor(PollingActor):
    """Campaigns every `interval` seconds and tells subscribers when leadership changes.

    Subscribers are called on the actor's thread with True on gaining leadership and False
    on losing it, so they must be quick (tell an actor, set an event). On stop the actor
    resigns, and tells subscribers False if it was the leader.
    """

    def __init__(
        self,
        election: Election,
        interval: float = 1.0,
        scheduler: Scheduler | None = None,
    ) -> None:
        super().__init__(election, interval, scheduler)
        self._election = election
        self._leader: bool | None = None
        self._subscribers: list[Callable[[bool], None]] = []

    def subscribe(self, callback: Callable[[bool], None]) -> None:
        """Call `callback` on every change of leadership, and now with the current state."""
        self._subscribers.append(callback)
        if self._leader is not None:
            self._call(callback, self._leader)

    def campaign_now(self) -> None:
        """Campaign at once, not at the next interval: someone has reason to doubt the
        leadership (say, the store refused a write as a deposed leader's)."""
        self.poll_now()

    def is_leader(self) -> bool:
        """Whether this actor was the leader at its last campaign."""
        return bool(self._leader) and self._election.is_leader()

    def leader_location(self) -> str | None:
        """Where the current leader says it can be reached, if known."""
        return self._election.leader_location()

    def on_stop(self) -> None:
        """Resign, and tell subscribers if leadership is lost by it."""
        self._step_down()

    def on_failure(self, *_exc_info: Any) -> None:
        """A crashed LeaderActor must not keep leadership: resign as on stop."""
        self._step_down()

    def poll(self) -> None:
        """Campaign (on start, every `interval` seconds, and at once whenever an election
        that can watch, e.g. etcd, sees the leader's key go)."""
        try:
            leader = self._election.campaign()
        except Exception:
            logger.exception("campaign in %r failed; resigning to be safe", self._election)
            self._resign()
            leader = False
        self._set_leader(leader)

    def _step_down(self) -> None:
        self.stop_polling()
        self._resign()
        if self._leader:
            self._set_leader(False)

    def _resign(self) -> None:
        try:
            self._election.resign()
        except Exception:
            logger.exception("resigning from %r failed", self._election)

    def _set_leader(self, leader: bool) -> None:
        if leader == self._leader:
            return
        if leader or self._leader is not None:
            logger.info("%s leadership in %r", "gained" if leader else "lost", self._election)
        self._leader = leader
        for callback in list(self._subscribers):
            self._call(callback, leader)

    def _call(self, callback: Callable[[bool], None], leader: bool) -> None:
        try:
            callback(leader)
        except Exception:
            logger.exception("leadership subscriber %r failed", callback)
