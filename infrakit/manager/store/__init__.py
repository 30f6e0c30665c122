"""Stores of committed group specs: `file` (one host) and `etcd` (many)."""

from __future__ import annotations

from typing import Any, Protocol


class StoreFenced(ValueError):
    """A write refused because the writer no longer leads: a store shared by several managers
    fences every write on leadership (the etcd store's `NotLeaderError`)."""


class Store(Protocol):
    """Keeps each group's committed spec (and marks such as Destroying) by group ID, and the
    cluster's ID."""

    def load(self) -> dict[str, dict[str, Any]]:
        """Every stored group record by ID."""
        ...

    def load_one(self, group_id: str) -> dict[str, Any] | None:
        """One group's stored record, or None if it has none."""
        ...

    def group_ids(self) -> list[str]:
        """The ID of every stored group record (those kept only as a mark too)."""
        ...

    def put(self, group_id: str, spec: dict[str, Any] | None, **marks: Any) -> None:
        """Store (or replace) one group's record: its spec (None for a group kept only as a
        mark, such as `Removed`) and marks such as `Destroying=True`."""

    def remove(self, group_id: str) -> None:
        """Forget one group."""

    def stored_cluster_id(self) -> str | None:
        """The stored cluster ID, or None while none is stored; changes nothing."""
        ...

    def cluster_id(self, proposed: str) -> str:
        """The cluster's ID: the one stored, or else `proposed`, stored now (atomically, so
        that managers sharing the store all get the same)."""
        ...

    def load_activity(self, group_id: str) -> list[dict[str, Any]]:
        """The group's stored activity history, oldest first (empty if none)."""
        ...

    def put_activity(self, histories: dict[str, list[dict[str, Any]]]) -> None:
        """Replace the stored activity history of each group given (kept apart from the
        group records: writing it never touches a spec)."""
