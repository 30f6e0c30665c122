"""What the I/O threads of `RpcServer` and `RemoteRef` share.

ZeroMQ sockets are not thread-safe, so one I/O thread owns each socket. Other threads hand it
work through a deque and wake it by writing a byte to a pipe that its `zmq.Poller` watches.
"""

from __future__ import annotations

import contextlib
import logging
import os

__all__ = ["BATCH", "Wakeup", "logger"]

logger = logging.getLogger("actors.remote")

BATCH = 256  # messages taken off a socket per turn of an I/O loop, for fairness


class Wakeup:
    """A pipe that any thread writes to wake an I/O thread blocked in `zmq.Poller.poll`.

    `set()` writes only if no wakeup is pending, so a burst of work costs one syscall.
    """

    def __init__(self) -> None:
        self.fd, self._write_fd = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._write_fd, False)
        self._pending = False

    def set(self) -> None:
        if self._pending:
            return
        self._pending = True
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._write_fd, b"\0")

    def clear(self) -> None:
        """Called by the I/O thread before it takes the work queued so far."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.read(self.fd, 4096)
        self._pending = False

    def close(self) -> None:
        for fd in (self.fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
