"""Tests for actors.election.file and actors.leader."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest
from support import wait_for

import actors
from actors import Election, LeaderActor
from actors.election.file import FileElection


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(timeout=10)


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "leader.lock"


@pytest.fixture
def elections(lock_path: Path) -> Iterator[list[FileElection]]:
    made: list[FileElection] = []
    yield made
    for election in made:
        election.resign()


def make(elections: list[FileElection], path: Path, location: str) -> FileElection:
    election = FileElection(path, location)
    elections.append(election)
    return election


# -- FileElection -----------------------------------------------------------------------


def test_file_election_is_an_election(lock_path: Path) -> None:
    assert isinstance(FileElection(lock_path), Election)


def test_exactly_one_of_two_elections_leads(elections: list[FileElection], lock_path: Path) -> None:
    first = make(elections, lock_path, "host-a:1")
    second = make(elections, lock_path, "host-b:2")

    assert first.campaign()
    assert not second.campaign()
    assert first.campaign()  # staying leader
    assert not second.campaign()

    assert first.is_leader()
    assert not second.is_leader()
    assert first.leader_location() == "host-a:1"
    assert second.leader_location() == "host-a:1"


def test_resigned_leader_is_replaced_on_next_campaign(
    elections: list[FileElection], lock_path: Path
) -> None:
    first = make(elections, lock_path, "a")
    second = make(elections, lock_path, "b")
    assert first.campaign()

    first.resign()
    first.resign()

    assert not first.is_leader()
    assert first.leader_location() is None
    assert second.campaign()
    assert first.leader_location() == "b"
    assert not first.campaign()


def test_no_leader_means_no_location(elections: list[FileElection], lock_path: Path) -> None:
    follower = make(elections, lock_path, "a")

    assert follower.leader_location() is None
    assert follower.campaign()
    follower.resign()
    assert follower.leader_location() is None


def test_leader_whose_lock_file_was_replaced_steps_down(
    elections: list[FileElection], lock_path: Path
) -> None:
    first = make(elections, lock_path, "a")
    second = make(elections, lock_path, "b")
    assert first.campaign()

    lock_path.unlink()

    assert second.campaign()
    assert not first.campaign()
    assert not first.is_leader()


CHILD = """
import sys, time
from actors.election.file import FileElection
election = FileElection(sys.argv[1], "child")
assert election.campaign()
print("leader", flush=True)
time.sleep(60)
"""


def test_leader_killed_with_sigkill_is_replaced(
    elections: list[FileElection], lock_path: Path
) -> None:
    root = str(Path(actors.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(lock_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "leader\n"
        survivor = make(elections, lock_path, "parent")
        assert not survivor.campaign()
        assert survivor.leader_location() == "child"

        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)

        wait_for(survivor.campaign)
        assert survivor.leader_location() == "parent"
    finally:
        child.kill()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()


# -- LeaderActor ------------------------------------------------------------------------


class Subscriber:
    """Records the leadership changes a LeaderActor reports."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: list[bool] = []

    def __call__(self, leader: bool) -> None:
        with self._lock:
            self._seen.append(leader)

    def seen(self) -> list[bool]:
        with self._lock:
            return list(self._seen)


def start_leader(election: Election) -> Any:
    return LeaderActor.start(election, interval=0.01).proxy()


def test_leader_actor_notifies_subscribers(elections: list[FileElection], lock_path: Path) -> None:
    first, second = Subscriber(), Subscriber()
    a = start_leader(make(elections, lock_path, "a"))
    a.subscribe(first).get()
    wait_for(lambda: first.seen() == [True])
    b = start_leader(make(elections, lock_path, "b"))
    b.subscribe(second).get()

    assert second.seen() == [False]
    assert a.is_leader().get()
    assert not b.is_leader().get()
    assert b.leader_location().get() == "a"

    a.actor_ref.stop(block=True, timeout=5)

    assert first.seen() == [True, False]
    wait_for(lambda: second.seen() == [False, True])
    assert b.is_leader().get()
    assert b.leader_location().get() == "b"


class BrokenElection:
    """An election whose campaign raises: the actor must treat that as not leading."""

    def __init__(self) -> None:
        self.resigned = threading.Event()

    def campaign(self) -> bool:
        raise OSError("disk gone")

    def resign(self) -> None:
        self.resigned.set()

    def is_leader(self) -> bool:
        return False

    def leader_location(self) -> str | None:
        return None


def test_leader_actor_survives_a_failing_campaign() -> None:
    election = BrokenElection()
    subscriber = Subscriber()
    leader = start_leader(election)

    leader.subscribe(subscriber).get()

    assert subscriber.seen() == [False]
    assert election.resigned.wait(5)
    assert leader.actor_ref.is_alive()
