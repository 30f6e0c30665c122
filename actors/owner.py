"""An actor that shares names out among live candidates and tells its subscriber which to run.

Every `interval`, and at once when a candidate joins or goes or an owner gives a name up, it
reads who is alive and who owns what, and shares the names out by rendezvous hashing with
bounded loads (`actors/rendezvous.py`: every live candidate computes the same). Then it claims
the names that are ours and free, and tells the subscriber to run each name it newly owns; to
stop each name that should move to another candidate (the subscriber stops it, then `release`s
it: the handshake, so that two candidates never act on one name); and to stop every name it
lost (its lease expired: a frozen or cut-off candidate owns nothing the moment it runs again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from actors.polling import PollingActor
from actors.rendezvous import assign
from actors.scheduler import Scheduler

__all__ = ["Member", "Owned", "OwnerActor", "Ownership"]

logger = logging.getLogger("actors.owner")


class Ownership(Protocol):
    """Names owned by one live candidate at a time (`actors/election/etcd_owners.py`)."""

    location: str

    def members(self) -> list[str]: ...
    def owners(self) -> dict[str, str]: ...
    def owner(self, name: str) -> str | None: ...
    def alive(self) -> bool: ...
    def holds(self, name: str) -> bool: ...
    def claim(self, name: str) -> str | None: ...
    def reclaim(self, name: str) -> str | None: ...
    def release(self, name: str) -> None: ...
    def forget(self, name: str) -> None: ...


@dataclass(frozen=True)
class Member:
    """Told when this candidate becomes a live member (may run names) or stops being one."""

    active: bool


@dataclass(frozen=True)
class Owned:
    """Told when the subscriber should start running `name` (own) or stop (not own); after
    stopping a name it still holds, the subscriber releases it."""

    name: str
    own: bool


class OwnerActor(PollingActor):
    """Balances `names()` over the live candidates of `ownership`, for one subscriber."""

    def __init__(
        self,
        ownership: Ownership,
        names: Callable[[], Iterable[str]],
        interval: float = 1.0,
        scheduler: Scheduler | None = None,
    ) -> None:
        super().__init__(ownership, interval, scheduler)
        self._ownership = ownership
        self._names = names
        self._subscriber: Callable[[Member | Owned], None] | None = None
        self._active = False
        self._running: set[str] = set()  # names the subscriber was told to run
        self._failing = False

    def subscribe(self, callback: Callable[[Member | Owned], None]) -> None:
        """Tell `callback` every change from now on, starting with the present state."""
        self._subscriber = callback
        self._active = False
        self._running.clear()
        self.poll_now()

    def balance_now(self) -> None:
        """Look at once: someone has reason to doubt what is owned (a write was refused)."""
        self.poll_now()

    def on_stop(self) -> None:
        self.stop_polling()

    def poll(self) -> None:
        """Look at who is alive and who owns what, and act on it; never raises."""
        try:
            self._look()
        except Exception as error:
            if not self._failing:
                logger.warning("cannot share out names on %r: %s", self._ownership, error)
            self._failing = True
            if not self._ownership.alive():
                self._lose_all()
        else:
            if self._failing:
                logger.info("sharing out names on %r again", self._ownership)
            self._failing = False

    def _look(self) -> None:
        ours = self._ownership
        me = ours.location
        members = ours.members()
        if me not in members or not ours.alive():
            self._lose_all()
            return
        if not self._active:
            self._active = True
            self._tell(Member(True))
        owners = ours.owners()
        names = set(self._names()) | set(owners)  # the same for every candidate
        assigned = assign(names, members)
        for name in sorted(names | self._running):
            holder = owners.get(name)
            mine = ours.holds(name)
            if mine != (holder == me):
                # The reading disagrees with our claims: it may be older than a claim made
                # meanwhile (a commit's), or the key went, or is ours but not claimed (a
                # claim forgotten): ask etcd about this one key, and believe it.
                mine = ours.reclaim(name) is None
                holder = me if mine else holder
            wanted = assigned.get(name)
            if mine:
                if wanted != me:
                    self._give(name)  # the subscriber stops it, then releases it
                else:
                    self._take(name)  # again each look: cheap for one that runs it already
            elif name in self._running:
                self._give(name)  # lost: our lease expired, or the key was taken from us
            elif holder is None and wanted == me and ours.claim(name) is None:
                self._take(name)

    def _lose_all(self) -> None:
        for name in sorted(self._running):
            self._give(name)
        if self._active:
            self._active = False
            self._tell(Member(False))

    def _take(self, name: str) -> None:
        """Tell the subscriber to run `name`, told again at every look while it is ours (it
        ignores a name it runs), so that a moment it could not take it up is never final."""
        self._running.add(name)
        self._tell(Owned(name, True))

    def _give(self, name: str) -> None:
        self._running.discard(name)
        self._tell(Owned(name, False))

    def _tell(self, news: Member | Owned) -> None:
        subscriber = self._subscriber
        if subscriber is None:
            return
        try:
            subscriber(news)
        except Exception:
            logger.exception("ownership subscriber %r failed", subscriber)
