"""Atomic file operations shared by the built-in plugins: JSON writes, directories that appear
whole, directory removal, and the clean-up of what a crash left half done.

Every temporary name starts with "." and names the process that made it (`<pid>-<start time>`),
so a later process can tell a leftover of a crash (its maker is gone) from work in progress.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from infrakit.proc import self_token, token_alive
from infrakit.spi.errors import PluginError

TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"
NEW_PREFIX = ".new-"  # a directory being built, renamed into place once whole
DESTROYED_PREFIX = ".destroyed-"  # a directory being removed, renamed out of sight first
# A temp file named by an older version (no maker in its name) is stale after this long.
LEGACY_TEMP_AGE = 3600.0

_TEMP_FILE = re.compile(r"^\..+\.(\d+-\d+)\.[^.]+\.tmp$")
_NEW_DIR = re.compile(r"^\.new-.+\.(\d+-\d+)$")


class InFlight:
    """The instance directories this process is provisioning: shared by every plugin object in
    the process (two may use one state directory), so a look by any of them knows that an
    instance with no process or machine yet is being made, not dead."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: set[str] = set()

    @contextlib.contextmanager
    def holding(self, path: Path) -> Iterator[None]:
        """Count `path` as being provisioned while the block runs."""
        with self._lock:
            self._paths.add(str(path))
        try:
            yield
        finally:
            with self._lock:
                self._paths.discard(str(path))

    def __contains__(self, path: object) -> bool:
        with self._lock:
            return str(path) in self._paths


PROVISIONING = InFlight()


def is_temp_name(name: str) -> bool:
    """True for names this module uses for temporary files (and other hidden files)."""
    return name.startswith(TEMP_PREFIX)


_serial = itertools.count()


def write_json_atomic(
    path: Path, data: Any, *, fsync: bool = False, indent: int | None = 2
) -> os.stat_result:
    """Write `data` as JSON to `path` so readers see the old or the new file, never half of one.

    The JSON goes to a hidden temp file in the same directory, which is then renamed over
    `path`. Returns the stat of the written file (the same inode `path` now names). A crash
    leaves the temp file, which `remove_stale` removes once its writer is gone. `indent=None`
    writes one compact line, several times faster for a plugin that writes thousands.
    """
    text = json.dumps(data, indent=indent) + "\n"  # first, so bad data leaves no file at all
    tmp = path.parent / f"{TEMP_PREFIX}{path.name}.{self_token()}.{next(_serial)}{TEMP_SUFFIX}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        try:
            os.write(fd, text.encode("utf-8"))
            if fsync:
                os.fsync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return st


def build_dir(directory: Path, fill: Callable[[Path], object], mode: int = 0o700) -> None:
    """Make `directory` appear whole: `fill` a hidden directory named after this process, then
    rename it into place. A reader sees no directory or all of it; a crash leaves a hidden one
    that `remove_stale` removes once this process is gone. Raises OSError (and whatever `fill`
    raises), leaving nothing."""
    building = directory.with_name(f"{NEW_PREFIX}{directory.name}.{self_token()}")
    os.mkdir(building, mode)
    try:
        fill(building)
        os.rename(building, directory)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


def remove_dir(directory: Path) -> Path | None:
    """Remove `directory` so that a concurrent reader never sees half of it: rename it to a
    hidden name first, then delete that. Returns the hidden path if something in it could not
    be deleted, else None; a directory that is not there is not an error. Raises PluginError
    if the rename fails."""
    doomed = directory.with_name(f"{DESTROYED_PREFIX}{directory.name}-{secrets.token_hex(4)}")
    try:
        os.rename(directory, doomed)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PluginError(f"cannot remove {directory}: {exc}") from exc
    shutil.rmtree(doomed, ignore_errors=True)
    return doomed if doomed.exists() else None


def is_stale(entry: os.DirEntry[str], *, destroyed: bool = False) -> bool:
    """Whether a hidden entry is what a crash left half done: a temp file or a directory being
    built whose maker is gone (an older version's temp file: once an hour old), or, with
    `destroyed`, a directory renamed for removal (nothing in it is live any more)."""
    name = entry.name
    if destroyed and name.startswith(DESTROYED_PREFIX):
        return True
    made = _NEW_DIR.match(name) or _TEMP_FILE.match(name)
    if made is not None:
        return not token_alive(made.group(1))
    if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
        with contextlib.suppress(OSError):
            return time.time() - entry.stat(follow_symlinks=False).st_mtime > LEGACY_TEMP_AGE
    return False


def remove_stale(directory: Path, *, destroyed: bool = False) -> list[str]:
    """Remove the stale entries (see `is_stale`) of `directory`; return their names."""
    removed: list[str] = []
    try:
        it = os.scandir(directory)
    except FileNotFoundError:
        return removed
    except OSError as exc:
        raise PluginError(f"cannot list {directory}: {exc}") from exc
    with it:
        stale = [e for e in it if is_temp_name(e.name) and is_stale(e, destroyed=destroyed)]
    for entry in stale:
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise PluginError(f"cannot remove {entry.path}: {exc}") from exc
        removed.append(entry.name)
    return removed
