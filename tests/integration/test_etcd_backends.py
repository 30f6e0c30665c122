"""EtcdElection and EtcdStore against a real etcd on 127.0.0.1:2379 (scripts/services.sh).

Every test works under its own random key prefix, so tests never see each other's keys.
Candidates that get killed or frozen run in child processes and answer over pipes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from etcd3gw.client import Etcd3Client
from support import etcd_in_use, require, wait_for

from actors.election import Election
from actors.election.etcd import EtcdConnection, EtcdElection
from infrakit.manager.store.etcd import EtcdStore, NotLeaderError, leader_fence

ENDPOINT = os.environ.get("INFRAKIT_TEST_ETCD", "http://127.0.0.1:2379")
TTL = 2.0
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def etcd_healthy() -> bool:
    try:
        with urllib.request.urlopen(ENDPOINT + "/health", timeout=2) as response:
            return b'"true"' in response.read()
    except OSError:
        return False


def raw_client() -> Etcd3Client:
    """A plain etcd3gw client, for meddling behind the backends' backs."""
    return EtcdConnection(ENDPOINT).client


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = f"/infrakit-test/{uuid.uuid4().hex}/"
    with etcd_in_use():  # first: another suite may have it frozen for a while
        require("etcd", etcd_healthy(), f"no healthy etcd at {ENDPOINT}")
        yield prefix
        raw_client().delete_prefix(prefix)


@pytest.fixture
def elections() -> Iterator[Callable[..., EtcdElection]]:
    """Makes EtcdElections that are closed (resigned, threads stopped) after the test."""
    made: list[EtcdElection] = []

    def make(key: str, location: str, keepalive: bool = True) -> EtcdElection:
        election = EtcdElection(ENDPOINT, key, location, ttl=TTL, keepalive=keepalive)
        made.append(election)
        return election

    yield make
    for election in made:
        election.close()


CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from actors.election.etcd import EtcdConnection, EtcdElection
election = EtcdElection(sys.argv[2], sys.argv[3], sys.argv[4], ttl=float(sys.argv[5]),
                        keepalive=sys.argv[6] == "1")
deadline = time.monotonic() + 10
while not election.campaign():
    if time.monotonic() > deadline:
        print("never led", flush=True)
        sys.exit(1)
    time.sleep(0.05)
print("leader", flush=True)
for line in sys.stdin:
    command = line.strip()
    if command == "is_leader":
        print(election.is_leader(), flush=True)
    elif command == "campaign":
        print(election.campaign(), flush=True)
"""


class Child:
    """A candidate in a child process: it campaigns until it leads, then answers commands."""

    def __init__(self, key: str, location: str, keepalive: bool = True) -> None:
        flag = "1" if keepalive else "0"
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(ROOT), ENDPOINT, key, location, str(TTL), flag],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.read() == "leader"

    def read(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def ask(self, command: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def children() -> Iterator[Callable[..., Child]]:
    made: list[Child] = []

    def make(key: str, location: str, keepalive: bool = True) -> Child:
        made.append(Child(key, location, keepalive))
        return made[-1]

    yield make
    for child in made:
        if child.process.poll() is None:
            os.kill(child.process.pid, signal.SIGCONT)
        child.close()


def test_two_candidates_exactly_one_leads(
    prefix: str, elections: Callable[..., EtcdElection]
) -> None:
    a = elections(prefix + "leader", "tcp://a:24864")
    b = elections(prefix + "leader", "tcp://b:24864")
    assert isinstance(a, Election)
    assert a.campaign() is True
    assert b.campaign() is False
    assert a.campaign() is True  # staying leader is idempotent
    assert (a.is_leader(), b.is_leader()) == (True, False)
    assert b.leader_location() == "tcp://a:24864"
    assert a.leader_location() == "tcp://a:24864"
    assert a.revision is not None and a.revision == b.leader_revision()
    assert b.revision is None


def test_resign_lets_the_other_win_and_revisions_grow(
    prefix: str, elections: Callable[..., EtcdElection]
) -> None:
    a = elections(prefix + "leader", "a")
    b = elections(prefix + "leader", "b")
    assert a.campaign() and not b.campaign()
    first = a.revision
    a.resign()
    assert not a.is_leader()
    a.resign()  # idempotent
    assert b.campaign() is True
    assert b.is_leader() and b.leader_location() == "b" and a.leader_location() == "b"
    assert first is not None and b.revision is not None and b.revision > first
    assert a.campaign() is False


def test_leadership_outlives_the_ttl_without_campaigns(
    prefix: str, elections: Callable[..., EtcdElection]
) -> None:
    """The keep-alive thread renews the lease, so an idle leader stays leader past its TTL."""
    a = elections(prefix + "leader", "a")
    b = elections(prefix + "leader", "b")
    assert a.campaign()
    started = time.monotonic()
    wait_for(lambda: time.monotonic() - started > 2 * TTL + 0.5, timeout=10, what="2 TTLs")
    assert a.is_leader()
    assert not b.campaign()


def test_watch_reports_the_key_going(prefix: str, elections: Callable[..., EtcdElection]) -> None:
    a = elections(prefix + "leader", "a")
    b = elections(prefix + "leader", "b")
    assert a.campaign()
    gone = threading.Event()
    cancel = b.watch(gone.set)
    try:
        assert not b.campaign()  # b's campaigns put nothing, and a's renewals are no deletes
        assert not gone.is_set()
        a.resign()
        wait_for(gone.is_set, timeout=30, what="the watch to report the deletion")
        assert b.campaign()
    finally:
        cancel()


def test_unreachable_etcd_is_no_leader_and_no_exception() -> None:
    election = EtcdElection("http://127.0.0.1:9", "/infrakit/leader", "x", ttl=2)
    try:
        assert election.campaign() is False
        assert election.is_leader() is False
        assert election.leader_location() is None
        election.resign()
    finally:
        election.close()


def test_sigkilled_leader_is_replaced(
    prefix: str, elections: Callable[..., EtcdElection], children: Callable[..., Child]
) -> None:
    child = children(prefix + "leader", "child")
    b = elections(prefix + "leader", "b")
    assert not b.campaign()
    assert b.leader_location() == "child"
    killed = time.monotonic()
    child.process.send_signal(signal.SIGKILL)
    # How fast is bench/failover.py's to measure; here a loaded machine may take longer.
    wait_for(b.campaign, timeout=60, what="b to take over from a killed leader")
    took = time.monotonic() - killed
    print(f"takeover after SIGKILL: {took:.2f}s (TTL {TTL}s)")
    assert b.is_leader() and b.leader_location() == "b"


@pytest.mark.parametrize("keepalive", [True, False], ids=["keepalive", "no-keepalive"])
def test_sigstopped_leader_is_fenced_on_resume(
    prefix: str,
    elections: Callable[..., EtcdElection],
    children: Callable[..., Child],
    keepalive: bool,
) -> None:
    """Without the keep-alive thread the child makes no network call before answering, so
    its "not leader" comes from its own clock alone."""
    child = children(prefix + "leader", "child", keepalive)
    assert child.ask("is_leader") == "True"
    b = elections(prefix + "leader", "b")
    os.kill(child.process.pid, signal.SIGSTOP)
    frozen = time.monotonic()
    wait_for(b.campaign, timeout=60, what="b to take over from a frozen leader")
    print(f"takeover after SIGSTOP: {time.monotonic() - frozen:.2f}s (TTL {TTL}s)")
    os.kill(child.process.pid, signal.SIGCONT)
    assert child.ask("is_leader") == "False"
    assert child.ask("campaign") == "False"
    assert child.ask("is_leader") == "False"
    assert b.is_leader() and b.campaign()
    assert b.leader_location() == "b"


def test_store_round_trip(prefix: str) -> None:
    store = EtcdStore(ENDPOINT, prefix + "groups/")
    assert store.load() == {}
    spec = {"ID": "workers", "Properties": {"Allocation": {"Size": 2}}}
    store.put("workers", spec)
    store.put("masters", {"ID": "masters"}, Destroying=True)
    assert store.load() == {
        "workers": {"Plugin": "group", "Properties": spec},
        "masters": {"Plugin": "group", "Properties": {"ID": "masters"}, "Destroying": True},
    }
    store.put("masters", {"ID": "masters", "v": 2})
    assert store.load()["masters"] == {"Plugin": "group", "Properties": {"ID": "masters", "v": 2}}
    store.remove("masters")
    store.remove("masters")  # removing what is gone is fine
    assert list(store.load()) == ["workers"]
    # A sibling prefix is not ours.
    other = EtcdStore(ENDPOINT, prefix + "groups-other/")
    other.put("x", {})
    assert list(store.load()) == ["workers"]


def test_store_write_of_a_deposed_leader_is_refused(
    prefix: str, elections: Callable[..., EtcdElection]
) -> None:
    a = elections(prefix + "leader", "a")
    b = elections(prefix + "leader", "b")
    assert a.campaign()
    store_a = EtcdStore(ENDPOINT, prefix + "groups/", fence=leader_fence(a))
    store_b = EtcdStore(ENDPOINT, prefix + "groups/", fence=leader_fence(b))
    store_a.put("workers", {"Size": 1})
    with pytest.raises(NotLeaderError, match="not the leader"):
        store_b.put("workers", {"Size": 99})  # b never led: refused before etcd is asked
    # Depose a behind its back (as if its lease had lapsed while it was stalled): a still
    # believes it leads, so only etcd's comparison in the transaction can stop its write.
    raw_client().delete(prefix + "leader")
    assert b.campaign()
    assert a.is_leader()
    before = store_a.load()
    with pytest.raises(NotLeaderError, match="refusing to write"):
        store_a.put("workers", {"Size": 2})
    with pytest.raises(NotLeaderError):
        store_a.remove("workers")
    assert store_a.load() == before == {"workers": {"Plugin": "group", "Properties": {"Size": 1}}}
    assert not a.campaign()  # its next campaign finds out
    store_b.put("workers", {"Size": 3})
    assert store_b.load()["workers"]["Properties"] == {"Size": 3}
    b.resign()
    with pytest.raises(NotLeaderError):
        store_b.remove("workers")
