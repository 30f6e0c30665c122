"""Stores of committed group specs: `file` (one host) and `etcd` (many)."""

from __future__ import annotations

from typing import Any, Protocol


class Store(Protocol):
    """Keeps each group's committed spec (and marks such as Destroying) by group ID."""

    def load(self) -> dict[str, dict[str, Any]]: ...

    def put(self, group_id: str, spec: dict[str, Any], **marks: Any) -> None: ...

    def remove(self, group_id: str) -> None: ...
