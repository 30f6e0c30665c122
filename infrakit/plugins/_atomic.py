"""Atomic file operations shared by the built-in plugins: JSON writes, directory removal."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

from infrakit.spi.errors import PluginError

TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"


def is_temp_name(name: str) -> bool:
    """True for names this module uses for temporary files (and other hidden files)."""
    return name.startswith(TEMP_PREFIX)


def write_json_atomic(path: Path, data: Any, *, fsync: bool = False) -> os.stat_result:
    """Write `data` as JSON to `path` so readers see the old or the new file, never half of one.

    The JSON goes to a hidden temp file in the same directory, which is then renamed over
    `path`. Returns the stat of the written file (the same inode `path` now names).
    """
    fd, tmp = tempfile.mkstemp(
        prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2)
            out.write("\n")
            out.flush()
            if fsync:
                os.fsync(out.fileno())
            st = os.fstat(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return st


def remove_dir(directory: Path) -> Path | None:
    """Remove `directory` so that a concurrent reader never sees half of it: rename it to a
    hidden name first, then delete that. Returns the hidden path if something in it could not
    be deleted, else None; a directory that is not there is not an error. Raises PluginError
    if the rename fails."""
    doomed = directory.with_name(f"{TEMP_PREFIX}destroyed-{directory.name}-{secrets.token_hex(4)}")
    try:
        os.rename(directory, doomed)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PluginError(f"cannot remove {directory}: {exc}") from exc
    shutil.rmtree(doomed, ignore_errors=True)
    return doomed if doomed.exists() else None
