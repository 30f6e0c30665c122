"""How long an instance kept in a directory has been dead, remembered across restarts.

The process and Vagrant plugins keep each instance in a directory of its own. When one is
first seen dead, a `dead` marker file is made there; its mtime says since when, so a dead
instance is reaped after a retention period even if the plugin restarted meanwhile.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

__all__ = ["DEAD_MARKER", "dead_for", "seen_alive"]

DEAD_MARKER = "dead"


def dead_for(directory: Path, *, since: Path | None = None) -> float | None:
    """Seconds since the instance in `directory` was first seen dead (the age of its marker,
    or of `since` when given); None if it is first seen dead now, and the marker is made.

    A marker that cannot be read counts as made just now: nothing is reaped on a guess.
    """
    marker = directory / DEAD_MARKER
    try:
        return time.time() - (since or marker).stat().st_mtime
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            marker.touch()
        return None
    except OSError:
        return 0.0


def seen_alive(directory: Path) -> None:
    """The instance runs again (say its container was restarted): forget that it died."""
    with contextlib.suppress(OSError):
        (directory / DEAD_MARKER).unlink()
