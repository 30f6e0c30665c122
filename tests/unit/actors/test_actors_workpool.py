"""WorkPool and Lane: blocking work beside the actors, bounded per lane and per pool."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from support import wait_for

from actors.workpool import Outcome, WorkPool


@pytest.fixture
def pool() -> Iterator[WorkPool]:
    pool = WorkPool(4, name="test-work")
    yield pool
    pool.shutdown()


class Gate:
    """Jobs that block until released, counting how many run at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.order: list[int] = []

    def job(self, n: int) -> int:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.order.append(n)
        self.release.wait(120)
        with self.lock:
            self.running -= 1
        return n


def test_a_lane_runs_at_most_its_limit_at_once_and_the_first_ones_first(pool: WorkPool) -> None:
    lane = pool.lane(2)
    gate = Gate()
    done: list[Outcome[int]] = []
    for n in range(6):
        lane.submit(lambda n=n: gate.job(n), done.append)
    wait_for(lambda: gate.running == 2, what="two jobs running")
    assert lane.running == 2 and gate.order == [0, 1]
    gate.release.set()
    wait_for(lambda: len(done) == 6, what="all six done")
    assert gate.most == 2
    assert sorted(gate.order) == [0, 1, 2, 3, 4, 5]
    assert sorted(o.value for o in done if o.value is not None) == [0, 1, 2, 3, 4, 5]


def test_a_hung_job_holds_up_only_its_own_place(pool: WorkPool) -> None:
    hung = Gate()
    lane = pool.lane(2)
    lane.submit(lambda: hung.job(0), lambda _o: None)
    wait_for(lambda: hung.running == 1, what="the hung job running")
    done: list[Outcome[str]] = []
    for _ in range(5):
        lane.submit(lambda: "ok", done.append)  # the lane's other place serves them all
    other = pool.lane(1)
    other.submit(lambda: "other", done.append)
    wait_for(lambda: len(done) == 6, what="the other jobs done beside the hung one")
    assert hung.running == 1
    hung.release.set()


def test_the_pool_bounds_every_lane_together() -> None:
    pool = WorkPool(2, name="test-small")
    try:
        gate = Gate()
        for n in range(3):
            pool.lane(5).submit(lambda n=n: gate.job(n), lambda _o: None)
        wait_for(lambda: gate.running == 2, what="two jobs running")
        assert gate.most == 2  # the third waits for a thread of the pool
        gate.release.set()
        wait_for(lambda: len(gate.order) == 3, what="the third job run")
    finally:
        pool.shutdown()


def test_an_error_is_an_outcome_and_a_failing_callback_does_not_stop_the_lane(
    pool: WorkPool,
) -> None:
    lane = pool.lane(1)
    outcomes: list[Outcome[int]] = []

    def boom() -> int:
        raise ValueError("no")

    def bad_callback(_outcome: Outcome[int]) -> None:
        raise RuntimeError("callback bug")

    lane.submit(boom, outcomes.append)
    lane.submit(lambda: 1, bad_callback)
    lane.submit(lambda: 2, outcomes.append)
    wait_for(lambda: len(outcomes) == 2, what="both outcomes")
    assert isinstance(outcomes[0].error, ValueError)
    assert outcomes[1].value == 2
    assert lane.running == 0
