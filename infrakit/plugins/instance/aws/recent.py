"""Instances the plugin made a moment ago, which EC2's filtered listing may not show yet.

EC2's reads are eventually consistent: for a short while after RunInstances, DescribeInstances
may leave the new instance out. A group whose look missed it would think it gone and make
another. The plugin remembers what it made for a window and asks about those by ID when a
listing leaves them out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from infrakit.spi.instance import Description, InstanceID, tags_match


@dataclass(frozen=True)
class _Entry:
    description: Description
    until: float


class RecentlyMade:
    """Instances made within the last `window` seconds that no listing has shown yet."""

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[InstanceID, _Entry] = {}

    def add(self, description: Description) -> None:
        """Remember an instance just made."""
        with self._lock:
            self._entries[description.id] = _Entry(description, self._clock() + self._window)

    def forget(self, instance_id: InstanceID) -> None:
        """Stop remembering an instance (destroyed, or known gone)."""
        with self._lock:
            self._entries.pop(instance_id, None)

    def unlisted(
        self, wanted: Mapping[str, str], listed: Collection[InstanceID]
    ) -> list[Description]:
        """The remembered instances carrying `wanted` that a listing which found `listed` left
        out. Those it found need no more remembering; nor do those past their window."""
        now = self._clock()
        with self._lock:
            for instance_id, entry in list(self._entries.items()):
                if instance_id in listed or entry.until < now:
                    del self._entries[instance_id]
            return [
                entry.description
                for entry in self._entries.values()
                if tags_match(entry.description.tags, wanted)
            ]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
