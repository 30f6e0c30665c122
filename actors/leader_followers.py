"""Serve one ZeroMQ socket with a pool of threads, one of which leads at a time.

The leader polls the socket, reads what has come, and runs each job itself, so a quick job
costs no thread hand-off: on a machine with few cores each hand-off costs more than a small
job's whole Python work. A watchdog notices a job that has run for `handover_after` seconds
and makes another thread the leader, so a slow job holds up the others only that long; the old
leader finishes its job, queues the reply for the new leader to send, and becomes a follower.

Up to `workers` jobs run at once. Past that, the leader keeps reading (and answering whatever
needs no job) and jobs wait for a thread to come free. The watchdog looks only while jobs run;
an idle server costs no wake-ups.

ZeroMQ sockets are not thread-safe: only the leader touches the socket, and only while it
holds `socket_lock`, which it releases while it runs a job so that a new leader can take over.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import zmq

from actors.zmq_io import Wakeup

__all__ = ["LeaderFollowers"]

Job = TypeVar("Job")
Replies = collections.deque[list[bytes]]  # frames to send, in order

_JOBS_PER_TURN = 16  # jobs a leader runs between two looks at the socket, for fairness


class LeaderFollowers(Generic[Job]):
    """Threads serving `sock`: `read(sock, jobs, replies)` takes what is waiting off the
    socket (jobs to run, replies to send at once); `run(job)` does a job and returns the
    reply's frames, or None for no reply. Neither may raise.

    `close()` runs once no thread can touch the socket any more, to close it.
    """

    def __init__(
        self,
        sock: zmq.Socket[bytes],
        read: Callable[[zmq.Socket[bytes], collections.deque[Job], Replies], None],
        run: Callable[[Job], list[bytes] | None],
        close: Callable[[], None],
        *,
        workers: int,
        name: str,
        log: logging.Logger,
        handover_after: float = 0.005,
    ) -> None:
        self._sock = sock
        self._read = read
        self._run = run
        self._close = close
        self._workers = workers
        self._name = name
        self._log = log
        self._handover_after = handover_after
        self._wakeup = Wakeup()
        self._poller = zmq.Poller()
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(self._wakeup.fd, zmq.POLLIN)
        self._jobs: collections.deque[Job] = collections.deque()
        self._replies: collections.deque[list[bytes]] = collections.deque()
        self._socket_lock = threading.Lock()
        self._lock = threading.Lock()
        self._vacancy = threading.Condition(self._lock)
        self._term = 0  # the leader serves the current term; a new leader starts a new one
        self._leader_wanted = False  # a vacancy that an idle follower takes
        self._running = 0  # jobs running, the leader's included
        self._current: tuple[int, float] | None = None  # (term, start) of the leader's job
        self._idle = 0
        self._threads: list[threading.Thread] = []  # the serving ones
        self._watchdog = threading.Thread(target=self._watch, name=f"{name}-watch", daemon=True)
        self._stopping = False
        self._watchdog_parked = False
        self._watchdog_wake = threading.Event()
        self._stopped = threading.Event()

    def start(self) -> None:
        with self._lock:
            self._spawn(self._term)
        self._watchdog.start()

    @property
    def alive(self) -> bool:
        """Whether it serves: not stopped, and a thread of it is alive to lead."""
        with self._lock:
            threads = list(self._threads)
        return not self._stopping and any(thread.is_alive() for thread in threads)

    def stop(self, timeout: float) -> None:
        """Stop serving and close the socket; wait up to `timeout` for jobs still running."""
        with self._lock:
            self._stopping = True
            self._term += 1
            self._vacancy.notify_all()
            threads = [*self._threads, self._watchdog]
        self._stopped.set()
        self._watchdog_wake.set()
        self._wakeup.set()
        if self._socket_lock.acquire(timeout=timeout):  # the leader has left the socket
            try:
                self._close()
            finally:
                self._socket_lock.release()
        else:
            self._log.error("%s: the socket is still in use; left open", self._name)
        deadline = time.monotonic() + timeout
        for thread in threads:
            if thread is not threading.current_thread():  # stop() called by a job
                thread.join(max(0.0, deadline - time.monotonic()))
        self._replies.clear()
        if not any(t.is_alive() and t is not threading.current_thread() for t in threads):
            self._wakeup.close()  # else a late job may still write to it

    # -- threads -------------------------------------------------------------------------

    def _spawn(self, term: int | None) -> None:
        """Start a thread: the leader of `term`, or a follower (None). Holds `_lock`."""
        thread = threading.Thread(
            target=self._serve,
            args=(term,),
            name=f"{self._name}-{len(self._threads)}",
            daemon=True,
        )
        self._threads.append(thread)
        thread.start()

    def _serve(self, term: int | None) -> None:
        while True:
            try:
                self._serve_terms(term)
                return
            except BaseException:  # a bug of ours; the socket is only touched under its lock
                self._log.exception("%s: a serving thread failed; it leads again", self._name)
            with self._lock:
                if self._stopping:
                    return
                term = self._term

    def _serve_terms(self, term: int | None) -> None:
        while True:
            if term is None:
                with self._lock:
                    self._idle += 1
                    while not self._leader_wanted and not self._stopping:
                        self._vacancy.wait()
                    self._idle -= 1
                    if self._stopping:
                        return
                    self._leader_wanted = False
                    term = self._term
            if not self._lead(term):
                return
            term = None

    def _lead(self, term: int) -> bool:
        """Serve the socket and run jobs while `term` lasts: False when stopping, True when
        another thread took over during a slow job."""
        while True:
            with self._socket_lock:
                if self._stopping:
                    return False
                try:
                    self._send_replies()
                    ready = dict(self._poller.poll(0 if self._can_run() else None))
                    if self._wakeup.fd in ready:
                        self._wakeup.clear()
                        if self._stopping_now():
                            return False
                    if self._sock in ready:
                        self._read(self._sock, self._jobs, self._replies)
                    self._send_replies()
                except zmq.ContextTerminated:
                    self._log.error("%s: zmq context terminated under the server", self._name)
                    return False
                except BaseException:  # never let the loop die, not even of SystemExit
                    self._log.exception("%s: I/O loop error; serving on", self._name)
            for _ in range(_JOBS_PER_TURN):
                if not self._can_run():
                    break
                if not self._run_one(term):
                    return not self._stopping

    def _stopping_now(self) -> bool:
        return self._stopping  # (a method, so that type checkers do not assume it unchanged)

    def _can_run(self) -> bool:
        return bool(self._jobs) and self._running < self._workers

    def _run_one(self, term: int) -> bool:
        """Run the next job; return whether this thread still leads."""
        job = self._jobs.popleft()
        mine = (term, time.monotonic())
        with self._lock:
            self._running += 1
            self._current = mine
        if self._watchdog_parked:
            self._watchdog_parked = False
            self._watchdog_wake.set()
        try:
            reply = self._run(job)
        except BaseException:  # `run` must not raise; if it does, serve on
            self._log.exception("%s: a job raised; serving on", self._name)
            reply = None
        with self._lock:
            self._running -= 1
            if self._current is mine:  # else a newer leader's job is running
                self._current = None
            leading = self._term == term
            stopping = self._stopping
        if stopping:
            return False
        if reply is not None:
            self._replies.append(reply)
        if not leading:
            self._wakeup.set()  # the new leader sends the reply
        return leading

    def _send_replies(self) -> None:
        replies = self._replies
        while replies:
            frames = replies.popleft()
            try:
                self._sock.send_multipart(frames, zmq.NOBLOCK)
            except zmq.ZMQError as error:  # client gone (ROUTER_MANDATORY) or its queue full
                self._log.debug("%s: reply dropped: %s", self._name, error)

    # -- watchdog ------------------------------------------------------------------------

    def _watch(self) -> None:
        """Every `handover_after` seconds while jobs run: if the leader is still in the job
        it was in at the last look, make another thread the leader."""
        seen: tuple[int, float] | None = None
        while True:
            with self._lock:
                if self._stopping:
                    return
                current = self._current
                if current is not None and current[0] != self._term:
                    current = None  # a former leader's job: it holds up nobody
                if current is not None and current is seen:
                    self._hand_over()
                    current = None
                seen = current
                park = current is None
                if park:
                    self._watchdog_parked = True
            if park:
                self._watchdog_wake.wait()
                self._watchdog_wake.clear()
            else:
                self._stopped.wait(self._handover_after)

    def _hand_over(self) -> None:
        """Start a new term with an idle follower, or a new thread. Holds `_lock`."""
        self._term += 1
        if self._idle:
            self._leader_wanted = True
            self._vacancy.notify()
            return
        try:
            self._spawn(self._term)
        except RuntimeError as error:  # cannot start a thread: the old leader keeps its term
            self._term -= 1
            self._log.error("%s: no thread to take over from a slow job: %s", self._name, error)
