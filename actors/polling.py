"""An actor that does its work every `interval` seconds, and at once when a watch says so."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import pykka

from actors.child import SupervisedActor
from actors.scheduler import Handle, Scheduler, tell_later

__all__ = ["PollingActor"]

logger = logging.getLogger("actors.polling")


class _Poll:
    """Told by the scheduler, or by a watch, when it is time to poll."""


class PollingActor(SupervisedActor):
    """Calls `poll()` on start, then every `interval` seconds, and at once whenever `watched`
    (if it has a `watch(callback) -> cancel` method, as etcd's elections do) calls back: a
    hint only, the timer still runs. One timer at a time, however the poll came about."""

    def __init__(self, watched: object, interval: float, scheduler: Scheduler | None) -> None:
        super().__init__()
        if interval <= 0:
            msg = f"interval must be positive, not {interval}"
            raise ValueError(msg)
        self._watched = watched
        self._interval = interval
        self._scheduler = scheduler
        self._timer: Handle | None = None
        self._unwatch: Any = None

    def poll(self) -> None:
        """The work: never raises (catch and log what can fail)."""
        raise NotImplementedError

    def poll_now(self) -> None:
        """Poll now, and again `interval` seconds from now."""
        self.poll()
        if self._timer is not None:
            self._timer.cancel()  # a watched change came first: keep one timer, not two
        self._timer = tell_later(self.actor_ref, self._interval, _Poll(), self._scheduler)

    def on_start(self) -> None:
        watch = getattr(self._watched, "watch", None)
        if callable(watch):
            ref = self.actor_ref

            def changed() -> None:
                with contextlib.suppress(pykka.ActorDeadError):
                    ref.tell(_Poll())

            try:
                self._unwatch = watch(changed)
            except Exception as error:
                logger.warning("cannot watch %r (%s); polling only", self._watched, error)
        self.poll_now()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Poll):
            self.poll_now()
            return None
        return super().on_receive(message)

    def stop_polling(self) -> None:
        """Cancel the watch and the timer (on stop)."""
        unwatch, self._unwatch = self._unwatch, None
        if callable(unwatch):
            with contextlib.suppress(Exception):
                unwatch()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
