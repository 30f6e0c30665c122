"""Leader election between processes on one host, with an flock on a lock file."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading

__all__ = ["FileElection"]


class FileElection:
    """Leadership is an exclusive flock on a lock file; the leader writes its location in it.

    The kernel drops the lock when the holder's file is closed, including when its process
    dies, so a crashed leader is replaced on the next campaign. Each FileElection opens its
    own file description, so two of them conflict even within one process. The lock file
    is never deleted: deleting it would let two candidates lock two different files.
    """

    def __init__(self, path: str | os.PathLike[str], location: str = "") -> None:
        self.path = os.fspath(path)
        self.location = location
        self._lock = threading.Lock()
        self._fd: int | None = None

    def campaign(self) -> bool:
        """Try to take the lock without blocking, or check that it is still ours."""
        with self._lock:
            if self._fd is not None:
                if self._still_ours(self._fd):
                    return True
                self._release()
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            if not self._still_ours(fd):
                os.close(fd)  # someone replaced the file between our open and flock
                return False
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, self.location.encode(), 0)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return True

    def resign(self) -> None:
        """Clear our location from the lock file and release the lock. Idempotent."""
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, 0)
                self._release()

    def is_leader(self) -> bool:
        """Whether we held the lock at the last campaign."""
        return self._fd is not None

    def leader_location(self) -> str | None:
        """The location written by the current leader; None if there is no leader.

        While a new leader is writing its location, this may briefly return None.
        """
        if self.is_leader():
            return self.location
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                # If we can take a shared lock, nobody leads and the content is stale.
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                location = os.pread(fd, 4096, 0).decode(errors="replace")
                return location or None
            return None
        finally:
            os.close(fd)

    def holder_pid(self) -> int | None:
        """The pid of the process that holds the lock, as the kernel lists it (Linux's
        /proc/locks), or None if nobody holds it or it cannot be told."""
        try:
            st = os.stat(self.path)
            with open("/proc/locks", encoding="ascii", errors="replace") as locks:
                lines = locks.read().splitlines()
        except OSError:
            return None
        file = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        for line in lines:
            fields = line.split()
            # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (a waiter's line has "->")
            flock = len(fields) >= 6 and fields[1] == "FLOCK" and "->" not in fields
            if flock and fields[5] == file and fields[4].isdigit():
                return int(fields[4])
        return None

    def _still_ours(self, fd: int) -> bool:
        """Whether `fd` is still the file at `path` (nobody deleted or replaced it)."""
        try:
            ours, current = os.fstat(fd), os.stat(self.path)
        except FileNotFoundError:
            return False
        return (ours.st_dev, ours.st_ino) == (current.st_dev, current.st_ino)

    def _release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __repr__(self) -> str:
        return f"FileElection({self.path!r}, location={self.location!r})"
