"""PooledActor: actors without threads of their own, on a shared pool of workers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from support import wait_for

from actors import ChildSpec, Supervisor
from actors.pooled import ActorPool, PooledActor, default_pool


@pytest.fixture(autouse=True)
def stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


class Counter(PooledActor):
    def __init__(self, log: list[tuple[str, int]] | None = None, name: str = "") -> None:
        super().__init__()
        self.count = 0
        self.log = log
        self.name = name
        self.threads: set[str] = set()

    def on_receive(self, message: Any) -> Any:
        self.threads.add(threading.current_thread().name)
        if message == "boom":
            raise ValueError("boom")
        self.count += 1
        if self.log is not None:
            self.log.append((self.name, message))
        return self.count

    def get_count(self) -> int:
        return self.count


def test_messages_are_handled_in_order_one_at_a_time() -> None:
    log: list[tuple[str, int]] = []
    ref = Counter.start(log, "a")
    for n in range(500):
        ref.tell(n)
    assert ref.ask("last", timeout=5) == 501
    assert [m for _, m in log[:500]] == list(range(500))


def test_ten_thousand_actors_share_a_few_threads() -> None:
    pool = ActorPool(workers=4, name="test-pool")

    class Small(Counter):
        pass

    Small.pool = pool
    before = threading.active_count()
    refs = [Small.start() for _ in range(10_000)]
    for ref in refs:
        ref.tell(1)
    assert all(ref.proxy().get_count().get(timeout=10) == 1 for ref in refs[::100])
    assert threading.active_count() <= before + 1  # no thread per actor
    names = set().union(*(ref.proxy().threads.get(timeout=5) for ref in refs[:50]))
    assert names <= {f"test-pool-{n}" for n in range(4)}
    for ref in refs:
        ref.stop()
    pool.shutdown()


def test_ask_errors_go_to_the_caller_and_the_actor_lives() -> None:
    ref = Counter.start()
    with pytest.raises(ValueError, match="boom"):
        ref.ask("boom", timeout=5)
    assert ref.ask(1, timeout=5) == 1


class Failing(PooledActor):
    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where

    def on_start(self) -> None:
        if self.where == "start":
            raise RuntimeError("cannot start")

    def on_receive(self, message: Any) -> Any:
        raise RuntimeError("cannot handle")


@pytest.mark.parametrize("where", ["start", "tell"])
def test_a_supervisor_sees_a_pooled_child_die_and_restarts_it(where: str) -> None:
    restarted = threading.Event()

    class Watching(Supervisor):
        def on_child_restarted(self, name: str, ref: pykka.ActorRef[Any]) -> None:
            restarted.set()

    supervisor = Watching.start(
        children=[ChildSpec("child", Failing, args=(where,))], max_restarts=100, within=60.0
    )
    child = supervisor.proxy().child("child").get(timeout=5)
    if where == "tell" and child is not None:
        child.tell("anything")
    assert restarted.wait(10)
    supervisor.stop()


def test_a_stopped_pooled_actor_refuses_messages() -> None:
    ref = Counter.start()
    ref.stop(block=True, timeout=5)
    with pytest.raises(pykka.ActorDeadError):
        ref.tell(1)
    wait_for(lambda: not ref.is_alive())


def test_a_slow_handler_holds_one_worker_not_the_others() -> None:
    pool = ActorPool(workers=2, name="slow-pool")
    release = threading.Event()

    class Slow(PooledActor):
        def on_receive(self, message: Any) -> Any:
            if message == "block":
                release.wait(10)
            return message

    Slow.pool = pool
    blocked, free = Slow.start(), Slow.start()
    blocked.tell("block")
    try:
        assert free.ask("hello", timeout=5) == "hello"
    finally:
        release.set()
    assert blocked.ask("after", timeout=5) == "after"
    blocked.stop()
    free.stop()
    pool.shutdown()


class Exits(PooledActor):
    """Raises SystemExit where Pykka lets it through: on_start, or on_failure after a crash."""

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where

    def on_start(self) -> None:
        if self.where == "start":
            raise SystemExit("gone from on_start")

    def on_receive(self, message: Any) -> Any:
        raise RuntimeError("cannot handle")

    def on_failure(self, *_exc_info: Any) -> None:
        raise SystemExit("gone from on_failure")


@pytest.mark.parametrize("where", ["start", "failure"])
def test_an_actor_that_raises_system_exit_dies_alone_and_the_worker_serves_the_next(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One worker: had the actor taken it down, the next actor's ask would never be answered."""
    pool = ActorPool(workers=1, name=f"exit-{where}-pool")

    class OnePool(Exits):
        pass

    class Next(Counter):
        pass

    OnePool.pool = Next.pool = pool
    exited = threading.Event()

    class Watching(Supervisor):
        def on_child_exit(self, exit: Any, will_restart: bool) -> None:
            exited.set()

    with caplog.at_level("ERROR"):
        supervisor = Watching.start(
            children=[ChildSpec("exits", OnePool, args=(where,))], max_restarts=0, within=60.0
        )
        if where == "failure":
            child = supervisor.proxy().child("exits").get(timeout=5)
            child.tell("anything")
        assert exited.wait(10), "the supervisor never heard of its child's death"

    after = Next.start()
    assert after.ask(1, timeout=10) == 1
    assert pool.alive
    errors = [r for r in caplog.records if r.levelname == "ERROR" and r.exc_info]
    assert any("OnePool" in r.getMessage() for r in errors)
    after.stop()
    pool.shutdown()


def test_a_pool_shut_down_is_not_alive_and_the_default_one_is_replaced() -> None:
    pool = ActorPool(workers=2, name="short-pool")
    assert pool.alive

    pool.shutdown()

    wait_for(lambda: not pool.alive)
    first = default_pool()
    first.shutdown()
    assert default_pool() is not first
    assert Counter.start().ask(1, timeout=10) == 1
