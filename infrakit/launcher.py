"""Run a plugin as a supervised child process of the runtime (a cluster file's `Launch`).

The process is started when the actor starts and stopped (SIGTERM, then SIGKILL) when it
stops. If it dies, the actor exits as failed, and its supervisor starts it again after a
backoff.

A plugin outlives a runtime killed with SIGKILL (it runs in its own session). Its pid file
(infrakit/pidfile.py) says which process serves it and which runtime launched it, so before
launching, the actor looks: a plugin whose launcher is dead is an orphan, stopped before ours
starts (so the process that serves is the one the cluster file says now, with its output in
this runtime's log, and exactly one serves); one launched by another live runtime (the leader
on the same home) or started by hand is left alone and watched, and ours is launched only once
it is gone and no live runtime will start it again.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from actors import ChildEnded, SupervisedActor, tell_later
from infrakit.pidfile import LAUNCHER_ENV, Launcher, PidFile, read_pid_file
from infrakit.proc import proc_stat

log = logging.getLogger(__name__)

CHECK_EVERY = 0.2


class PluginExited(ChildEnded):
    """A launched plugin process ended by itself, or could not be launched."""


@dataclass(frozen=True)
class _Check:
    """Time to see whether the process still runs."""


class LaunchedPlugin(SupervisedActor):
    """Keeps one plugin process running: `command`, with output appended to `log_path`.

    `pid_file` is where the plugin says who serves it; `launcher` is this runtime, passed to
    the process in `$INFRAKIT_LAUNCHER`; `env` is added to the process's environment.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log_path: Path,
        pid_file: Path | None = None,
        launcher: Launcher | None = None,
        env: Mapping[str, str] | None = None,
        stop_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        self.pid_file = pid_file
        self.launcher = launcher
        self.env = dict(env or {})
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.watched: PidFile | None = None  # another runtime's plugin, or one started by hand

    def on_start(self) -> None:
        found = self._serving()
        if found is not None and not self._orphan(found):
            self._watch(found)
        else:
            if found is not None:
                self._stop_orphan(found)
            self._launch()
        tell_later(self.actor_ref, CHECK_EVERY, _Check())

    def on_receive(self, message: object) -> object:
        if isinstance(message, _Check):
            self._check()
            if not self.actor_stopped.is_set():
                tell_later(self.actor_ref, CHECK_EVERY, _Check())
            return None
        return super().on_receive(message)

    def on_stop(self) -> None:
        self._terminate()

    def on_failure(self, *_exc_info: object) -> None:
        self._terminate()

    # -- what serves ---------------------------------------------------------------------

    def _serving(self) -> PidFile | None:
        """The live process that the pid file says serves this plugin, if any."""
        if self.pid_file is None:
            return None
        found = read_pid_file(self.pid_file)
        return found if found is not None and found.running() else None

    def _orphan(self, found: PidFile) -> bool:
        """Whether `found` was launched by a runtime that is gone, or by this one before."""
        launcher = found.launcher
        if launcher is None:
            return False  # started by hand: not ours to stop
        return launcher == self.launcher or not launcher.alive()

    def _watch(self, found: PidFile) -> None:
        if self.watched is None or self.watched.pid != found.pid:
            who = "by hand" if found.launcher is None else f"by runtime pid {found.launcher.pid}"
            log.info(
                "plugin %s: served by pid %d, launched %s; using it, and launching ours only"
                " once it is gone",
                self.name,
                found.pid,
                who,
            )
        self.watched = found

    def _check(self) -> None:
        if self.process is not None:
            code = self.process.poll()
            if code is not None:
                self._fail(f"plugin {self.name} exited with code {code}; see {self.log_path}")
            return
        watched, found = self.watched, self._serving()
        if watched is None:
            return  # our launch failed: the actor is stopping
        if found is not None and not self._orphan(found):
            self._watch(found)
            return
        others = watched.launcher
        if found is None and others is not None and others != self.launcher and others.alive():
            return  # its runtime lives, and will start it again
        if found is not None:
            self._stop_orphan(found)
        log.info("plugin %s: pid %d is gone; launching ours", self.name, watched.pid)
        self.watched = None
        self._launch()

    # -- our process ---------------------------------------------------------------------

    def _launch(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        if self.launcher is not None:
            env[LAUNCHER_ENV] = str(self.launcher)
        try:
            with open(self.log_path, "ab") as output:
                self.process = subprocess.Popen(
                    self.command,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
        except OSError as error:
            self._fail(f"plugin {self.name}: cannot run {' '.join(self.command)}: {error}")
            return
        log.info(
            "plugin %s: started %s (pid %d)", self.name, " ".join(self.command), self.process.pid
        )

    def _fail(self, reason: str) -> None:
        """Exit as failed, so that the supervisor starts the plugin again after a backoff: a
        plugin that exits is news for the log (the supervisor's one line), not a traceback."""
        self._exit_error = PluginExited(reason)
        self.stop()

    def _terminate(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        except ProcessLookupError:
            pass

    def _stop_orphan(self, found: PidFile) -> None:
        """Stop a plugin whose runtime is gone (SIGTERM to its process group, then SIGKILL),
        waiting for it to end; it is not our child, so /proc tells when it has."""
        stat = proc_stat(found.pid)
        if stat is None or not found.running():
            return
        log.info("plugin %s: stopping pid %d, left by a runtime that is gone", self.name, found.pid)
        for sig, wait in ((signal.SIGTERM, self.stop_timeout), (signal.SIGKILL, 5.0)):
            if not found.running():  # checked right before, so a reused pid is never signalled
                return
            try:
                os.killpg(stat.pgrp, sig)
            except (ProcessLookupError, PermissionError):
                return
            deadline = time.monotonic() + wait
            while found.running() and time.monotonic() < deadline:
                time.sleep(0.05)
        if found.running():
            log.error(
                "plugin %s: pid %d does not stop; launching ours anyway", self.name, found.pid
            )
