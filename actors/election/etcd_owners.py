"""Names shared out among live candidates: each name owned by at most one at a time, on etcd.

A candidate owns a name while `<key>/owners/<name>` exists with the candidate's location as
its value and the candidate's one lease (its election's) attached: one lease per candidate,
however many names it owns, so etcd's work grows with candidates, not names. A dead
candidate's names go with its lease; a live one gives a name up by deleting its key.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import requests
from etcd3gw.watch import Watcher

from actors.election.etcd import EtcdElection, EtcdError, decode, encode, prefix_end

__all__ = ["EtcdOwnership"]

logger = logging.getLogger("actors.election.etcd_owners")


class EtcdOwnership:
    """Which names this candidate owns, fenced by its own clock as leadership is.

    `holds(name)` makes no network call: true only while the key was created under our
    current lease and that lease cannot have expired yet by our clock, so a candidate frozen
    past its TTL knows at once that it owns nothing. `fence(name)` gives the comparisons a
    writer puts in its transaction so that etcd itself refuses a former owner's write.
    """

    def __init__(self, election: EtcdElection) -> None:
        self.election = election
        self.location = election.location
        self.prefix = f"{election.key}/owners/"
        self.members_prefix = f"{election.key}/managers/"
        self._lock = threading.Lock()
        self._claims: dict[str, tuple[int, int]] = {}  # name -> (lease, create revision)

    def members(self) -> list[str]:
        """Every live candidate's location (each published under its own lease, its key
        named by it: keys only, one read); raises EtcdError if etcd cannot be asked."""
        prefix = self.members_prefix
        kvs = self.election.etcd.get(prefix, range_end=prefix_end(prefix), keys_only=True)
        return sorted(decode(kv["key"])[len(prefix) :] for kv in kvs)

    def owners(self) -> dict[str, str]:
        """Every owned name and its owner's location; raises EtcdError if etcd cannot be
        asked."""
        kvs = self.election.etcd.get(self.prefix, range_end=prefix_end(self.prefix))
        return {decode(kv["key"])[len(self.prefix) :]: decode(kv.get("value", "")) for kv in kvs}

    def owner(self, name: str) -> str | None:
        """Where the owner of `name` is, if anyone owns it; raises EtcdError."""
        if self.holds(name):
            return self.location
        kvs = self.election.etcd.get(self.prefix + name)
        return decode(kvs[0].get("value", "")) if kvs else None

    def alive(self) -> bool:
        """Whether our lease holds by our clock (what every claim of ours hangs on)."""
        return self.election.lease() is not None

    def holds(self, name: str) -> bool:
        """Whether we own `name` now, by our clock; no network call."""
        claim = self._claims.get(name)
        return claim is not None and claim[0] == self.election.lease()

    def claim(self, name: str) -> str | None:
        """Take `name` if nobody owns it: None if we own it now (or already did), else the
        owner's location. Raises EtcdError if etcd cannot be asked."""
        if self.holds(name):
            return None
        return self.reclaim(name)

    def reclaim(self, name: str) -> str | None:
        """`claim`, asking etcd even if we believe we own `name`: None if its key is ours now
        (created now, or already carrying our lease: then our claim is taken back), else the
        owner's location ("" if unknown). For when a reading of the owners disagrees with
        our claims (it may be older than a claim, or the key went). Raises EtcdError."""
        lease = self.election.lease()
        if lease is None:
            raise EtcdError(f"no live lease on {self.election.key}: cannot own {name!r}")
        key = encode(self.prefix + name)
        answer = self.election.etcd.txn(
            [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": 0}],
            [{"request_put": {"key": key, "value": encode(self.location), "lease": lease}}],
            [{"request_range": {"key": key}}],
        )
        if answer["succeeded"]:
            revision = int(answer["header"]["revision"])
        else:
            kvs = answer["responses"][0]["response_range"].get("kvs", [])
            holder = kvs[0] if kvs else {}
            if not holder or int(holder.get("lease", 0)) != lease:
                self.forget(name)
                return decode(holder.get("value", "")) if holder else ""
            revision = int(holder["create_revision"])  # ours already (a reply lost before)
        with self._lock:
            self._claims[name] = (lease, revision)
        return None

    def release(self, name: str) -> None:
        """Give `name` up: delete its key if it is still ours. Never raises (a key we cannot
        delete goes with our lease)."""
        with self._lock:
            claim = self._claims.pop(name, None)
        if claim is None:
            return
        try:
            self.election.etcd.txn(
                [self._compare(name, *claim)[0]],
                [{"request_delete_range": {"key": encode(self.prefix + name)}}],
            )
        except Exception as error:
            logger.warning("giving up %s%s failed: %s", self.prefix, name, error)

    def forget(self, name: str) -> None:
        """Drop our claim on `name` without touching etcd (its key is not ours any more)."""
        with self._lock:
            self._claims.pop(name, None)

    def fence(self, name: str) -> list[dict[str, Any]] | None:
        """Transaction comparisons that hold only while we own `name`; None if we do not."""
        claim = self._claims.get(name)
        if claim is None or claim[0] != self.election.lease():
            return None
        return self._compare(name, *claim)

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback()` (on a watch thread) when a candidate joins or goes, or a name's
        owner gives it up: the moments when names may move. A hint only (polling finds the
        same); returns a cancel function; raises EtcdError if etcd cannot be reached."""

        def on_event(event: Any) -> None:
            kv = event.get("kv", {})
            joined = event.get("type") != "DELETE" and int(kv.get("version", 0)) == 1
            released = event.get("type") == "DELETE"
            if joined or released:
                try:
                    callback()
                except Exception:
                    logger.exception("ownership watch callback %r failed", callback)

        watchers: list[Watcher] = []
        try:
            for prefix, puts in ((self.members_prefix, True), (self.prefix, False)):
                watchers.append(
                    Watcher(
                        self.election.etcd.client,
                        prefix,
                        on_event,
                        range_end=decode(prefix_end(prefix)),
                        filters=None if puts else ["NOPUT"],
                    )
                )
        except requests.RequestException as error:
            for watcher in watchers:
                with contextlib.suppress(Exception):
                    watcher.stop()
            raise EtcdError(f"cannot watch {self.prefix}: {error}") from None

        def cancel() -> None:
            for watcher in watchers:
                with contextlib.suppress(Exception):
                    watcher.stop()

        return cancel

    def _compare(self, name: str, lease: int, revision: int) -> list[dict[str, Any]]:
        key = encode(self.prefix + name)
        return [
            {"key": key, "target": "LEASE", "result": "EQUAL", "lease": lease},
            {"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": revision},
        ]

    def __repr__(self) -> str:
        return f"EtcdOwnership({self.prefix!r}, location={self.location!r})"
