"""The etcd store: committed group specs, one etcd key per group, fenced by leadership."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from etcd3gw.client import Etcd3Client

from actors.election.etcd import EtcdConnection, EtcdElection, decode, encode, prefix_end
from infrakit.manager.store import StoreFenced

__all__ = ["EtcdStore", "Fence", "NotLeaderError", "leader_fence"]

Fence = Callable[[str], list[dict[str, Any]] | None]
"""A group's write fence: the transaction comparisons that hold only while this manager may
write that group (it leads, or owns the group), or None when it may not."""


class NotLeaderError(StoreFenced):
    """A write was refused because the writer no longer leads."""


def leader_fence(election: EtcdElection) -> Fence:
    """Every group's writes fenced on leadership: the leader key still carries our lease and
    the revision at which we took it."""
    return lambda _group_id: election.fence()


class EtcdStore:
    """Keeps each group as `<prefix><ID>` = JSON `{"Plugin": "group", "Properties": spec, ...}`.

    Same interface and record layout as FileStore. Given a `fence` (`leader_fence(election)`,
    or a group's ownership in shared mode), every put and remove is one etcd transaction that
    also checks the fence's comparisons, so etcd itself refuses the write of a deposed leader or
    former owner (for instance one that was frozen between its fencing check and its write) with
    NotLeaderError, and nothing changes. Errors reaching etcd raise
    `actors.election.etcd.EtcdError`.
    """

    def __init__(
        self,
        client_or_endpoints: Etcd3Client | str | Sequence[str],
        prefix: str = "/infrakit/groups/",
        fence: Fence | None = None,
        timeout: float = 5.0,
        refusal: str = "not the leader any more",
    ) -> None:
        """`refusal` says why a fenced write is refused, in words."""
        if not prefix:
            raise ValueError("the store prefix must not be empty")
        self.prefix = prefix
        self.fence = fence
        self.refusal = refusal
        self.etcd = EtcdConnection(client_or_endpoints, timeout=timeout)

    def load(self) -> dict[str, dict[str, Any]]:
        """Every stored group record by ID; empty when nothing was ever stored."""
        records = {}
        for kv in self.etcd.get(self.prefix, range_end=prefix_end(self.prefix)):
            key = decode(kv["key"])
            name = key[len(self.prefix) :]
            if name.startswith("."):
                continue  # the store's own keys, such as the cluster ID
            try:
                record = json.loads(decode(kv.get("value", "")))
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"etcd {key}: not valid JSON ({error}); refusing to guess"
                ) from None
            if isinstance(record, dict):
                records[name] = record
        return records

    def group_ids(self) -> list[str]:
        """The ID of every stored group record (those kept only as a mark too), reading keys
        only."""
        kvs = self.etcd.get(self.prefix, range_end=prefix_end(self.prefix), keys_only=True)
        names = (decode(kv["key"])[len(self.prefix) :] for kv in kvs)
        return [name for name in names if name and not name.startswith(".")]

    def load_one(self, group_id: str) -> dict[str, Any] | None:
        """One group's stored record, or None if it has none."""
        kvs = self.etcd.get(self.prefix + group_id)
        if not kvs:
            return None
        try:
            record = json.loads(decode(kvs[0].get("value", "")))
        except json.JSONDecodeError as error:
            raise ValueError(
                f"etcd {self.prefix}{group_id}: not valid JSON ({error}); refusing to guess"
            ) from None
        return record if isinstance(record, dict) else None

    def put(self, group_id: str, spec: dict[str, Any] | None, **marks: Any) -> None:
        """Store (or replace) one group's spec, with optional marks such as Destroying=True."""
        record = {"Plugin": "group", "Properties": spec, **marks}
        text = json.dumps(record, sort_keys=True)
        self._write(group_id, {"request_put": {"key": self._key(group_id), "value": encode(text)}})

    def remove(self, group_id: str) -> None:
        """Forget one group; nothing happens if it is not stored."""
        self._write(group_id, {"request_delete_range": {"key": self._key(group_id)}})

    def cluster_id(self, proposed: str) -> str:
        """The stored cluster ID (at `<prefix>.cluster`), or `proposed`, stored now if no one
        stored one first (one transaction: managers sharing the store agree)."""
        key = encode(self._cluster_key)
        created = self.etcd.txn(
            [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": 0}],
            [{"request_put": {"key": key, "value": encode(proposed)}}],
        )
        if created["succeeded"]:
            return proposed
        stored = self.stored_cluster_id()
        if stored is None:
            raise ValueError(f"etcd {self._cluster_key}: the cluster ID vanished; try again")
        return stored

    def stored_cluster_id(self) -> str | None:
        """The stored cluster ID, or None while none is stored."""
        kvs = self.etcd.get(self._cluster_key)
        return decode(kvs[0].get("value", "")) if kvs else None

    def load_activity(self, group_id: str) -> list[dict[str, Any]]:
        """The group's stored activity history (at `<prefix>.activity/<ID>`), oldest first."""
        kvs = self.etcd.get(self._activity_key(group_id))
        try:
            entries = json.loads(decode(kvs[0].get("value", ""))) if kvs else []
        except json.JSONDecodeError:
            return []  # a record for people: never worth refusing to run over
        return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []

    def put_activity(self, histories: dict[str, list[dict[str, Any]]]) -> None:
        """Replace the activity history of each group given, in one transaction (fenced, as
        every write: a deposed leader's is refused with NotLeaderError); an empty history
        removes the group's key. A group this manager may not write any more (another owns it
        now) is left out: its history goes on with its new owner."""
        if self.fence is not None:
            fence = self.fence
            histories = {g: e for g, e in histories.items() if fence(g) is not None}
        if not histories:
            return
        requests = [
            {
                "request_put": {
                    "key": encode(self._activity_key(group_id)),
                    "value": encode(json.dumps(entries, sort_keys=True)),
                }
            }
            if entries
            else {"request_delete_range": {"key": encode(self._activity_key(group_id))}}
            for group_id, entries in histories.items()
        ]
        self._write_all(list(histories), "activity", requests)

    def _activity_key(self, group_id: str) -> str:
        # Starts with '.', so `load` never takes it for a group.
        return f"{self.prefix}.activity/{group_id}"

    @property
    def _cluster_key(self) -> str:
        # A group ID never starts with '.', so this key cannot be a group's.
        return self.prefix + ".cluster"

    def _key(self, group_id: str) -> str:
        if not group_id:
            raise ValueError("a group ID must not be empty")
        return encode(self.prefix + group_id)

    def _write(self, group_id: str, request: dict[str, Any]) -> None:
        self._write_all([group_id], repr(group_id), [request])

    def _write_all(self, group_ids: list[str], what: str, requests: list[dict[str, Any]]) -> None:
        """`requests` in one transaction, fenced on every group of `group_ids`."""
        if self.fence is None:
            self.etcd.txn([], requests)
            return
        compare: list[dict[str, Any]] = []
        for group_id in group_ids:
            fence = self.fence(group_id)
            if fence is None:
                compare = []
                break
            compare.extend(c for c in fence if c not in compare)
        if not compare or not self.etcd.txn(compare, requests)["succeeded"]:
            raise NotLeaderError(f"{self.refusal}; refusing to write {what}")
