"""A lighter actor type: many actors share a small pool of threads.

A ThreadingActor costs a thread; 10,000 of them take seconds to start and, when they all have
work at once, spend their time fighting over the GIL. A `PooledActor` has an inbox but no
thread: a message wakes it, one of the pool's workers runs a slice of its inbox (a few messages)
and moves on. Each actor still handles one message at a time, in order, so actor code is
unchanged. What changes: a handler that blocks holds a worker for that long, so a pool must have
enough workers for the blocking work in flight, and a pooled actor must never wait on an `ask`
to another pooled actor of the same pool (the pool could run out of workers).

It follows Pykka's own loop (`pykka._actor.Actor._actor_loop_running`, pinned to pykka 4.x) and
reports its death to its supervisor like any `SupervisedActor`.
"""

from __future__ import annotations

import collections
import logging
import queue
import sys
import threading
from typing import Any, ClassVar

import pykka
from pykka._envelope import Envelope

from actors.child import SupervisedActor

__all__ = ["ActorPool", "PooledActor", "default_pool"]

logger = logging.getLogger("actors.pooled")

# Messages handled per turn on a worker before the actor yields it to others (fairness).
SLICE = 16


class ActorPool:
    """A fixed set of worker threads that run pooled actors' inboxes."""

    def __init__(self, workers: int = 16, name: str = "actor-pool") -> None:
        if workers < 1:
            raise ValueError(f"an actor pool needs at least one worker, not {workers}")
        self.name = name
        self._shut_down = False
        self._ready: queue.SimpleQueue[PooledActor | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def workers(self) -> int:
        return len(self._threads)

    @property
    def alive(self) -> bool:
        """Whether actors still run: not shut down, and every worker lives."""
        return not self._shut_down and all(thread.is_alive() for thread in self._threads)

    @property
    def queued(self) -> int:
        """Actors waiting for a worker now (approximate, as any queue's size read live)."""
        return self._ready.qsize()

    def schedule(self, actor: PooledActor) -> None:
        """Queue `actor` to run a slice of its inbox on the next free worker."""
        self._ready.put(actor)

    def shutdown(self) -> None:
        """Stop the workers once the actors queued now have run."""
        self._shut_down = True
        for _ in self._threads:
            self._ready.put(None)

    def _work(self) -> None:
        while True:
            actor = self._ready.get()
            if actor is None:
                return
            try:
                actor._run_slice()
            except BaseException:  # a worker serves every actor: one must not take it down
                logger.exception("%s: running %s failed; the worker goes on", self.name, actor)


_default: ActorPool | None = None
_default_lock = threading.Lock()


def default_pool() -> ActorPool:
    """The process-wide pool (16 workers), created on first use, and anew once the last one
    is shut down."""
    global _default
    with _default_lock:
        if _default is None or not _default.alive:
            _default = ActorPool(name="actor-pool")
        return _default


class _Inbox:
    """An inbox that wakes its actor when a message arrives, instead of a blocked thread."""

    def __init__(self) -> None:
        self._items: collections.deque[Envelope[Any]] = collections.deque()
        self.actor: PooledActor | None = None

    def put(self, envelope: Envelope[Any], /) -> None:
        self._items.append(envelope)
        if self.actor is not None:
            self.actor._wake()

    def get(self) -> Envelope[Any]:
        return self._items.popleft()

    def empty(self) -> bool:
        return not self._items


class PooledActor(SupervisedActor):
    """An actor without a thread of its own; see the module's docstring for the contract.

    Set `pool` on a subclass (or on an instance before it starts) to use a pool of your own.
    """

    pool: ClassVar[ActorPool | None] = None
    # Not in Pykka's ActorRegistry: it scans its list on every stop, which made stopping
    # 100,000 pooled actors quadratic (minutes); their supervisor knows where they are.
    registered: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slice_lock = threading.Lock()
        self._scheduled = False
        self._begun = False
        self._finished = False
        self._bound: ActorPool | None = None  # the pool it runs on, chosen when it starts

    @staticmethod
    def _create_actor_inbox() -> _Inbox:
        return _Inbox()

    def _start_actor_loop(self) -> None:
        inbox = self.actor_inbox
        assert isinstance(inbox, _Inbox)
        inbox.actor = self
        self._bound = self.pool or default_pool()
        self._wake(force=True)

    def _pool(self) -> ActorPool:
        # Chosen once: asking default_pool() at every wake checked all its threads each time
        # (7 % of a 100,000-instance converge).
        return self._bound or self.pool or default_pool()

    def _wake(self, force: bool = False) -> None:
        with self._slice_lock:
            if self._scheduled or self._finished:
                return
            if not force and not self._begun and self.actor_inbox.empty():
                return
            self._scheduled = True
        self._pool().schedule(self)

    def _run_slice(self) -> None:
        """Run on a pool worker: on_start the first time, then up to SLICE messages."""
        try:
            if not self._begun:
                self._begun = True
                self._actor_loop_setup()
            handled = 0
            while not self.actor_stopped.is_set() and handled < SLICE:
                if self.actor_inbox.empty():
                    break
                self._handle_envelope(self.actor_inbox.get())
                handled += 1
            if self.actor_stopped.is_set():
                self._finish()
        except BaseException:
            # Pykka lets SystemExit and the like out of on_start and on_failure, which would
            # end a ThreadingActor's thread: here the actor dies (logged, reported to its
            # supervisor) and the worker goes on.
            self._handle_failure(*sys.exc_info())
            self._finish()
        finally:
            with self._slice_lock:
                self._scheduled = False
                again = not self._finished and not self.actor_inbox.empty()
                if again:
                    self._scheduled = True
            if again:
                self._pool().schedule(self)

    def _handle_envelope(self, envelope: Envelope[Any]) -> None:
        # The body of Pykka's _actor_loop_running, for one message.
        try:
            response = self._handle_receive(envelope.message)
            if envelope.reply_to is not None:
                envelope.reply_to.set(response)
        except Exception:
            if envelope.reply_to is not None:
                logger.info("Exception returned from %s to caller:", self, exc_info=sys.exc_info())
                envelope.reply_to.set_exception()
            else:
                self._handle_failure(*sys.exc_info())
                try:
                    self.on_failure(*sys.exc_info())
                except Exception:
                    self._handle_failure(*sys.exc_info())
        except BaseException:
            logger.debug("%r in %s. Stopping all actors.", sys.exc_info()[1], self)
            self._stop()
            pykka.ActorRegistry.stop_all()

    def _finish(self) -> None:
        with self._slice_lock:
            if self._finished:
                return
            self._finished = True
        self._actor_loop_teardown()
        self._report_exit()
