"""Leader election between hosts, with a lease and a transaction on one etcd key."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests
from etcd3gw.client import Etcd3Client
from etcd3gw.watch import Watcher

__all__ = ["EtcdConnection", "EtcdElection", "EtcdError", "decode", "encode", "prefix_end"]

logger = logging.getLogger("actors.election.etcd")

MIN_TTL = 2.0
"""etcd grants nothing shorter in practice (its minimum is 1.5 x the election timeout)."""


class EtcdError(Exception):
    """etcd could not be reached, or answered something unexpected."""


def encode(text: str | bytes) -> str:
    """A key or value as the JSON gateway wants it: base64 of its UTF-8 bytes."""
    data = text.encode() if isinstance(text, str) else text
    return base64.b64encode(data).decode("ascii")


def decode(text: str) -> str:
    """The inverse of `encode`, for keys and values in gateway answers."""
    return base64.b64decode(text).decode(errors="replace")


def prefix_end(prefix: str) -> str:
    """The range end that selects every key starting with `prefix`, encoded."""
    data = bytearray(prefix.encode())
    while data and data[-1] == 0xFF:
        data.pop()
    if not data:
        return encode(b"\0")  # the whole keyspace
    data[-1] += 1
    return encode(bytes(data))


class EtcdConnection:
    """Posts to etcd's v3 JSON gateway with a timeout on every request.

    Takes an `etcd3gw.Etcd3Client`, or endpoints ("http://host:port", "host:port", or a list
    of them). With several endpoints, a connection failure moves the next request to the next
    endpoint; a request itself is never retried here (callers decide, and stay bounded).
    """

    def __init__(
        self, client_or_endpoints: Etcd3Client | str | Sequence[str], timeout: float = 2.0
    ) -> None:
        if isinstance(client_or_endpoints, Etcd3Client):
            self.clients = [client_or_endpoints]
        else:
            endpoints = (
                [client_or_endpoints]
                if isinstance(client_or_endpoints, str)
                else list(client_or_endpoints)
            )
            if not endpoints:
                raise ValueError("no etcd endpoints given")
            self.clients = [_client(endpoint) for endpoint in endpoints]
        self.timeout = timeout
        self._current = 0

    @property
    def client(self) -> Etcd3Client:
        """The client the next request goes to."""
        return self.clients[self._current % len(self.clients)]

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST `payload` to `/v3/<path>` and return the decoded answer; EtcdError on failure."""
        client = self.client
        try:
            response = client.session.post(
                client.base_url + "/v3/" + path.lstrip("/"), json=payload, timeout=self.timeout
            )
        except requests.RequestException as error:
            self._current += 1
            raise EtcdError(f"etcd at {client.base_url} unreachable: {error}") from None
        if response.status_code != 200:
            raise EtcdError(f"etcd {path}: HTTP {response.status_code}: {response.text[:200]}")
        try:
            answer = response.json()
        except ValueError:
            raise EtcdError(f"etcd {path}: not JSON: {response.text[:200]}") from None
        if not isinstance(answer, dict):
            raise EtcdError(f"etcd {path}: unexpected answer {answer!r}")
        return answer

    def txn(
        self,
        compare: list[dict[str, Any]],
        success: list[dict[str, Any]],
        failure: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Run one transaction; the answer has `succeeded` (bool) and `responses`."""
        answer = self.post(
            "kv/txn", {"compare": compare, "success": success, "failure": failure or []}
        )
        answer["succeeded"] = bool(answer.get("succeeded", False))
        return answer

    def get(self, key: str, **options: Any) -> list[dict[str, Any]]:
        """The key-values (raw, still encoded) that a range request on `key` returns."""
        answer = self.post("kv/range", {"key": encode(key), **options})
        return list(answer.get("kvs", []))


def _client(endpoint: str) -> Etcd3Client:
    url = urlsplit(endpoint if "://" in endpoint else "http://" + endpoint)
    if not url.hostname:
        raise ValueError(f"not an etcd endpoint: {endpoint!r}")
    return Etcd3Client(
        host=url.hostname, port=url.port or 2379, protocol=url.scheme, api_path="/v3/"
    )


class EtcdElection:
    """Leadership is one etcd key, created only if absent and attached to our lease.

    `campaign()` keeps our lease alive and runs one transaction: create the key (value =
    `location`) if it does not exist, else read it; we lead while the key carries our lease.
    While we lead, a daemon thread also renews the lease every ttl/3, so leadership does not
    hang on the caller's polling rhythm.

    `is_leader()` makes no network call and is fenced by our own clock: it is true only until
    the send time of the last successful renewal + the granted TTL - a safety margin, which is
    before etcd can expire the lease. A process frozen (SIGSTOP, a long GC or swap stall) past
    its TTL therefore says "not leader" the instant it runs again, before it could act. When
    etcd is unreachable `campaign()` returns False, and `is_leader()` turns False on its own
    when the lease would have expired. Nothing here raises out of campaign() or resign().
    """

    def __init__(
        self,
        client_or_endpoints: Etcd3Client | str | Sequence[str],
        key: str = "/infrakit/leader",
        location: str = "",
        ttl: float = 3.0,
        *,
        keepalive: bool = True,
        details: Mapping[str, Any] | None = None,
        lead: bool = True,
    ) -> None:
        """`details` (JSON-serialisable) are published beside our location, under our lease,
        for `managers()`: whatever the caller wants the others to know of it. With `lead`
        False this is a member, never the leader: it keeps its lease (renewed every ttl/3)
        and its entry under `managers/` alive, for other keys that hang on the lease (names
        it owns, `etcd_owners.py`), and never takes the leader key."""
        if not key:
            raise ValueError("the leader key must not be empty")
        self.key = key
        self.location = location
        self.details = dict(details or {})
        self.ttl = float(max(MIN_TTL, math.ceil(ttl)))
        self.margin = max(0.25, self.ttl * 0.2)
        self.etcd = EtcdConnection(client_or_endpoints, timeout=max(0.5, self.ttl / 3))
        self._keepalive = keepalive
        self.lead = lead
        self._lock = threading.RLock()
        self._lease: int | None = None
        self._lease_deadline = 0.0  # monotonic time before which the lease is surely alive
        # (leading, fenced deadline, create revision of our key): one tuple, read without a lock
        self._state: tuple[bool, float, int | None] = (False, 0.0, None)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._renewing = False  # whether the keep-alive thread is (still) looping; under _lock
        self._watchers: list[Watcher] = []

    # -- Election -----------------------------------------------------------------------------

    def campaign(self) -> bool:
        """Renew our lease and try to create the key; whether we lead now. Never raises."""
        with self._lock:
            try:
                return self._campaign()
            except Exception as error:
                logger.warning("campaign for %s failed: %s", self.key, error)
                return False

    def resign(self) -> None:
        """Delete the key if it is still ours, and revoke our lease. Idempotent; never raises."""
        with self._lock:
            self._state = (False, 0.0, None)  # fence first: no action from here on
            lease, self._lease = self._lease, None
            if lease is None:
                return
            try:
                self.etcd.txn(
                    [_compare_lease(self.key, lease)],
                    [{"request_delete_range": {"key": encode(self.key)}}],
                )
            except Exception as error:
                logger.warning("deleting leader key %s failed: %s", self.key, error)
            try:
                self.etcd.post("kv/lease/revoke", {"ID": lease})
            except Exception as error:
                logger.warning("revoking lease %x failed: %s", lease, error)

    def is_leader(self) -> bool:
        """Whether we hold the key and our lease cannot have expired yet, by our clock."""
        leading, deadline, _revision = self._state
        return leading and time.monotonic() < deadline

    def leader_location(self) -> str | None:
        """The location the current leader wrote; None when nobody leads or etcd is away."""
        if self.is_leader():
            return self.location
        try:
            kvs = self.etcd.get(self.key)
        except Exception:
            return None
        return decode(kvs[0].get("value", "")) if kvs else None

    # -- extras -------------------------------------------------------------------------------

    def lease(self) -> int | None:
        """Our lease while it cannot have expired yet by our own clock; else None."""
        lease, deadline = self._lease, self._lease_deadline
        return lease if lease is not None and time.monotonic() < deadline else None

    @property
    def revision(self) -> int | None:
        """The etcd revision at which we took the key, while we lead; else None.

        Revisions only grow, so a later leadership always has a larger one (an epoch number).
        """
        return self._state[2] if self.is_leader() else None

    def leader_revision(self) -> int | None:
        """The etcd revision at which the current leader (anyone) took the key; None if none."""
        if self.is_leader():
            return self._state[2]
        try:
            kvs = self.etcd.get(self.key)
        except Exception:
            return None
        return int(kvs[0]["create_revision"]) if kvs else None

    def fence(self) -> list[dict[str, Any]] | None:
        """Transaction comparisons that hold only while we still lead; None if we do not.

        A writer puts them in its transaction so that etcd itself refuses a deposed leader's
        write, even one that passed `is_leader()` just before it froze.
        """
        leading, deadline, revision = self._state
        lease = self._lease
        if not leading or time.monotonic() >= deadline or lease is None or revision is None:
            return None
        return [
            _compare_lease(self.key, lease),
            {
                "key": encode(self.key),
                "target": "CREATE",
                "result": "EQUAL",
                "create_revision": revision,
            },
        ]

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback()` (on a watch thread) whenever the leader key goes away.

        Followers can campaign at once instead of at their next poll. The watch is a hint
        only: if its stream breaks, polling still finds the change. Returns a cancel function;
        raises EtcdError if etcd cannot be reached to start the watch.
        """
        start = None
        with contextlib.suppress(Exception):
            header = self.etcd.post("kv/range", {"key": encode(self.key)}).get("header", {})
            start = int(header["revision"]) + 1

        def on_event(event: Any) -> None:
            if event.get("type") == "DELETE":
                try:
                    callback()
                except Exception:
                    logger.exception("leader watch callback %r failed", callback)

        try:
            watcher = Watcher(
                self.etcd.client, self.key, on_event, start_revision=start, filters=["NOPUT"]
            )
        except requests.RequestException as error:
            raise EtcdError(f"cannot watch {self.key}: {error}") from None
        with self._lock:
            self._watchers.append(watcher)

        def cancel() -> None:
            with self._lock:
                if watcher in self._watchers:
                    self._watchers.remove(watcher)
            with contextlib.suppress(Exception):
                watcher.stop()

        return cancel

    def close(self) -> None:
        """Resign, stop the keep-alive thread and cancel every watch."""
        self.resign()
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.etcd.timeout + 1)
        with self._lock:
            watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            with contextlib.suppress(Exception):
                watcher.stop()

    # -- internals ----------------------------------------------------------------------------

    def _campaign(self) -> bool:
        if not self._renew():
            self._grant()
        lease = self._lease
        assert lease is not None
        if not self.lead:  # a member only: its lease and its entry, nothing to win
            self.etcd.txn([], self._candidacy(lease))
            self._start_keepalive()
            return False
        answer = self.etcd.txn(
            [
                {
                    "key": encode(self.key),
                    "target": "CREATE",
                    "result": "EQUAL",
                    "create_revision": 0,
                }
            ],
            [
                {
                    "request_put": {
                        "key": encode(self.key),
                        "value": encode(self.location),
                        "lease": lease,
                    }
                },
                *self._candidacy(lease),
            ],
            [{"request_range": {"key": encode(self.key)}}, *self._candidacy(lease)],
        )
        if answer["succeeded"]:
            revision: int | None = int(answer["header"]["revision"])
            leading = True
        else:
            kvs = answer["responses"][0]["response_range"].get("kvs", [])
            holder = kvs[0] if kvs else {}
            leading = int(holder.get("lease", 0)) == lease
            revision = int(holder["create_revision"]) if leading else None
        self._state = (leading, self._lease_deadline, revision)
        if leading:
            self._start_keepalive()
        return leading

    def _candidacy(self, lease: int) -> list[dict[str, Any]]:
        """Put our location under `<key>/candidates/` and our details under `<key>/managers/`,
        both bound to our lease (gone when we are)."""
        name = self.location or str(id(self))
        details = json.dumps({**self.details, "Location": self.location}, sort_keys=True)
        return [
            {
                "request_put": {
                    "key": encode(f"{self.key}/candidates/{name}"),
                    "value": encode(self.location),
                    "lease": lease,
                }
            },
            {
                "request_put": {
                    "key": encode(f"{self.key}/managers/{name}"),
                    "value": encode(details),
                    "lease": lease,
                }
            },
        ]

    def managers(self) -> list[dict[str, Any]]:
        """Every live candidate's details (what it published, with its `Location`) and whether
        it leads (`Leader`), by location; raises EtcdError if etcd cannot be asked."""
        prefix = f"{self.key}/managers/"
        kvs = self.etcd.get(prefix, range_end=prefix_end(prefix))
        leader = self.leader_location()
        found = []
        for kv in kvs:
            try:
                details = json.loads(decode(kv.get("value", "")))
            except json.JSONDecodeError:
                continue  # not ours to read: never worth failing over
            if isinstance(details, dict):
                location = details.get("Location")
                found.append({**details, "Leader": bool(location) and location == leader})
        return sorted(found, key=lambda d: str(d.get("Location")))

    def candidates(self) -> list[str]:
        """Where every live candidate (leader and followers) says it can be reached."""
        prefix = f"{self.key}/candidates/"
        try:
            kvs = self.etcd.get(prefix, range_end=prefix_end(prefix))
        except Exception:
            return []
        return sorted(decode(kv.get("value", "")) for kv in kvs)

    def _renew(self) -> bool:
        """Keep our lease alive; False if we have none usable (then we hold nothing)."""
        lease = self._lease
        if lease is None:
            return False
        if time.monotonic() >= self._lease_deadline:
            # It may already be gone; if not, it must not keep a key we no longer trust.
            self._drop_lease()
            return False
        sent = time.monotonic()
        answer = self.etcd.post("lease/keepalive", {"ID": lease})
        granted = int(answer.get("result", {}).get("TTL", -1))
        if granted <= 0:
            self._drop_lease()
            return False
        self._lease_deadline = sent + granted - self.margin
        leading, _deadline, revision = self._state
        self._state = (leading, self._lease_deadline, revision)
        return True

    def _grant(self) -> None:
        sent = time.monotonic()
        answer = self.etcd.post("lease/grant", {"TTL": int(self.ttl), "ID": 0})
        if answer.get("error"):
            raise EtcdError(f"lease grant refused: {answer['error']}")
        self._lease = int(answer["ID"])
        self._lease_deadline = sent + int(answer["TTL"]) - self.margin

    def _drop_lease(self) -> None:
        self._state = (False, 0.0, None)
        lease, self._lease = self._lease, None
        if lease is not None:
            with contextlib.suppress(Exception):
                self.etcd.post("kv/lease/revoke", {"ID": lease})

    def _start_keepalive(self) -> None:
        if not self._keepalive or self._renewing:
            return
        self._renewing = True
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._keep_alive, name=f"etcd-keepalive {self.key}", daemon=True
        )
        self._thread.start()

    def _keep_alive(self) -> None:
        while not self._stopping.wait(self.ttl / 3):
            with self._lock:
                if not self._state[0] and self.lead:
                    self._renewing = False  # campaign() starts a new thread on the next win
                    return
                if self._lease is None:
                    self._renewing = False  # dropped: campaign() grants a new one
                    return
                try:
                    if not self._renew():
                        logger.warning("lost the lease on %s", self.key)
                except Exception as error:
                    logger.warning("keep-alive for %s failed: %s", self.key, error)
        with self._lock:
            self._renewing = False

    def __repr__(self) -> str:
        return f"EtcdElection({self.key!r}, location={self.location!r}, ttl={self.ttl})"


def _compare_lease(key: str, lease: int) -> dict[str, Any]:
    return {"key": encode(key), "target": "LEASE", "result": "EQUAL", "lease": lease}
