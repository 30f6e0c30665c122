"""Run a plugin as a supervised child process of the runtime (a cluster file's `Launch`).

The process is started when the actor starts and stopped (SIGTERM, then SIGKILL) when it
stops. If it dies, the actor fails, and its supervisor starts it again after a backoff.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from actors import SupervisedActor, tell_later

log = logging.getLogger(__name__)

CHECK_EVERY = 0.2


class PluginExited(RuntimeError):
    """A launched plugin process ended by itself."""


@dataclass(frozen=True)
class _Check:
    """Time to see whether the process still runs."""


class LaunchedPlugin(SupervisedActor):
    """Keeps one plugin process running: `command`, with output appended to `log_path`."""

    def __init__(
        self, name: str, command: Sequence[str], log_path: Path, stop_timeout: float = 5.0
    ) -> None:
        super().__init__()
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None

    def on_start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as output:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        log.info(
            "plugin %s: started %s (pid %d)", self.name, " ".join(self.command), self.process.pid
        )
        tell_later(self.actor_ref, CHECK_EVERY, _Check())

    def on_receive(self, message: object) -> object:
        if isinstance(message, _Check):
            assert self.process is not None
            code = self.process.poll()
            if code is not None:
                raise PluginExited(
                    f"plugin {self.name} exited with code {code}; see {self.log_path}"
                )
            tell_later(self.actor_ref, CHECK_EVERY, _Check())
            return None
        return super().on_receive(message)

    def on_stop(self) -> None:
        self._terminate()

    def on_failure(self, *_exc_info: object) -> None:
        self._terminate()

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
