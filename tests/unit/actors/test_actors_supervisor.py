"""Tests for actors.supervisor and actors.child, with real Pykka actors."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from support import wait_for

from actors import (
    Backoff,
    ChildExited,
    ChildSpec,
    Restart,
    Strategy,
    SupervisedActor,
    Supervisor,
    SupervisorGaveUp,
    start_child_actor,
)

FAST = Backoff(initial=0.001, maximum=0.01, jitter=0.0)


class Recorder:
    """A thread-safe list of events, shared by the actors of one test."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[tuple[Any, ...]] = []
        self.start_failures: dict[str, int] = {}
        """How many more times the named worker fails in on_start (-1: always)."""

    def add(self, *event: Any) -> None:
        with self._lock:
            self._events.append(event)

    def events(self, kind: str | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            return [e for e in self._events if kind is None or e[0] == kind]

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def should_fail_start(self, name: str) -> bool:
        with self._lock:
            left = self.start_failures.get(name, 0)
            if left > 0:
                self.start_failures[name] = left - 1
            return left != 0


class Worker(SupervisedActor):
    """A child that records its life and can be told to die in several ways."""

    def __init__(
        self,
        recorder: Recorder,
        label: str,
        fail_on_stop: bool = False,
        hang_on_stop: threading.Event | None = None,
    ) -> None:
        super().__init__()
        if recorder.should_fail_start(f"init:{label}"):
            raise ValueError(f"{label} cannot be built")
        self.recorder = recorder
        self.label = label
        self.fail_on_stop = fail_on_stop
        self.hang_on_stop = hang_on_stop

    def on_start(self) -> None:
        self.recorder.add("start", self.label)
        if self.recorder.should_fail_start(self.label):
            raise ValueError(f"{self.label} cannot start")

    def on_stop(self) -> None:
        self.recorder.add("stop", self.label)
        if self.hang_on_stop is not None:
            self.hang_on_stop.wait(30)
        if self.fail_on_stop:
            raise RuntimeError(f"{self.label} failed to stop")

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise ValueError("boom")
        if message == "stop":
            self.stop()
            return None
        return super().on_receive(message)


class RecordingSupervisor(Supervisor):
    """A supervisor whose hooks record what they see."""

    def __init__(self, recorder: Recorder, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.recorder = recorder

    def on_child_exit(self, exit: ChildExited, will_restart: bool) -> None:
        self.recorder.add("exit", exit.name, exit.error, will_restart)

    def on_child_restarted(self, name: str, ref: pykka.ActorRef[Any]) -> None:
        self.recorder.add("restarted", name)


class Collector(pykka.ThreadingActor):
    """A plain parent that collects what its children tell it."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        self.received.append(message)

    def messages(self) -> list[Any]:
        return list(self.received)


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    yield
    # Supervisors first, top down, so that they do not restart children stopped under them.
    for ref in pykka.ActorRegistry.get_by_class(Supervisor):
        ref.stop(block=True, timeout=10)
    while pykka.ActorRegistry.get_all():
        pykka.ActorRegistry.stop_all(timeout=10)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def spec(
    recorder: Recorder, name: str, restart: Restart = Restart.PERMANENT, **kwargs: Any
) -> ChildSpec:
    return ChildSpec(
        name=name,
        actor_class=Worker,
        args=(recorder, name),
        kwargs=kwargs,
        restart=restart,
        shutdown_timeout=kwargs.pop("shutdown_timeout", 5.0),
    )


def start_supervisor(
    recorder: Recorder, names: list[str], **kwargs: Any
) -> pykka.ActorProxy[RecordingSupervisor]:
    kwargs.setdefault("backoff", FAST)
    ref = RecordingSupervisor.start(
        recorder, children=[spec(recorder, name) for name in names], **kwargs
    )
    return ref.proxy()


def refs(proxy: pykka.ActorProxy[RecordingSupervisor]) -> dict[str, Any]:
    return dict(proxy.which_children().get())


def all_running(proxy: pykka.ActorProxy[RecordingSupervisor]) -> bool:
    return all(ref is not None for ref in refs(proxy).values())


def crash(proxy: pykka.ActorProxy[RecordingSupervisor], name: str) -> pykka.ActorRef[Any]:
    ref: pykka.ActorRef[Any] = proxy.child(name).get()
    ref.tell("crash")
    return ref


# -- SupervisedActor --------------------------------------------------------------------


def test_child_reports_exception_in_on_start(recorder: Recorder) -> None:
    parent = Collector.start()
    recorder.start_failures["w"] = 1

    ref = start_child_actor(ChildSpec("w", Worker, args=(recorder, "w")), parent)

    wait_for(lambda: len(parent.proxy().messages().get()) == 1)
    [exited] = parent.proxy().messages().get()
    assert exited.name == "w"
    assert exited.ref is ref
    assert isinstance(exited.error, ValueError)


def test_child_reports_exception_in_told_message(recorder: Recorder) -> None:
    parent = Collector.start()
    ref = start_child_actor(ChildSpec("w", Worker, args=(recorder, "w")), parent)

    ref.tell("crash")

    wait_for(lambda: len(parent.proxy().messages().get()) == 1)
    [exited] = parent.proxy().messages().get()
    assert repr(exited.error) == "ValueError('boom')"


def test_child_reports_exception_in_on_stop(recorder: Recorder) -> None:
    parent = Collector.start()
    spec_ = ChildSpec("w", Worker, args=(recorder, "w"), kwargs={"fail_on_stop": True})
    ref = start_child_actor(spec_, parent)

    ref.stop()

    wait_for(lambda: len(parent.proxy().messages().get()) == 1)
    [exited] = parent.proxy().messages().get()
    assert isinstance(exited.error, RuntimeError)


def test_child_reports_normal_stop(recorder: Recorder) -> None:
    parent = Collector.start()
    ref = start_child_actor(ChildSpec("w", Worker, args=(recorder, "w")), parent)

    ref.stop()

    wait_for(lambda: len(parent.proxy().messages().get()) == 1)
    assert parent.proxy().messages().get() == [ChildExited("w", ref, None)]


def test_unsupervised_actor_works_alone(recorder: Recorder) -> None:
    ref = Worker.start(recorder, "alone")

    assert ref.stop(block=True, timeout=5)
    assert recorder.events() == [("start", "alone"), ("stop", "alone")]


def test_start_child_actor_rejects_plain_actors() -> None:
    with pytest.raises(TypeError):
        start_child_actor(ChildSpec("c", Collector), None)  # type: ignore[arg-type]


# -- strategies -------------------------------------------------------------------------


def test_one_for_one_restarts_only_the_crashed_child(recorder: Recorder) -> None:
    sup = start_supervisor(recorder, ["a", "b", "c"])
    wait_for(lambda: len(recorder.events("start")) == 3)
    before = refs(sup)
    recorder.clear()

    crash(sup, "b")

    wait_for(lambda: recorder.events("restarted") == [("restarted", "b")])
    after = refs(sup)
    assert after["a"] is before["a"]
    assert after["c"] is before["c"]
    assert after["b"] is not before["b"]
    assert after["b"].is_alive()
    assert recorder.events("start") == [("start", "b")]
    assert recorder.events("stop") == []


def test_one_for_all_restarts_everyone_in_order(recorder: Recorder) -> None:
    sup = start_supervisor(recorder, ["a", "b", "c"], strategy=Strategy.ONE_FOR_ALL)
    wait_for(lambda: len(recorder.events("start")) == 3)
    before = refs(sup)
    recorder.clear()

    crash(sup, "b")

    wait_for(lambda: len(recorder.events("restarted")) == 3)
    assert [e for e in recorder.events() if e[0] in ("start", "stop")] == [
        ("stop", "c"),
        ("stop", "a"),
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
    ]
    assert recorder.events("restarted") == [("restarted", n) for n in "abc"]
    after = refs(sup)
    assert all(after[n] is not before[n] and after[n].is_alive() for n in "abc")


def test_rest_for_one_restarts_the_child_and_those_after_it(recorder: Recorder) -> None:
    sup = start_supervisor(recorder, ["a", "b", "c", "d"], strategy=Strategy.REST_FOR_ONE)
    wait_for(lambda: len(recorder.events("start")) == 4)
    before = refs(sup)
    recorder.clear()

    crash(sup, "b")

    wait_for(lambda: len(recorder.events("restarted")) == 3)
    assert [e for e in recorder.events() if e[0] in ("start", "stop")] == [
        ("stop", "d"),
        ("stop", "c"),
        ("start", "b"),
        ("start", "c"),
        ("start", "d"),
    ]
    after = refs(sup)
    assert after["a"] is before["a"]
    assert all(after[n] is not before[n] for n in "bcd")


def test_siblings_stopped_by_the_supervisor_are_not_restarted_twice(recorder: Recorder) -> None:
    sup = start_supervisor(
        recorder,
        ["a", "b", "c"],
        strategy=Strategy.ONE_FOR_ALL,
        backoff=Backoff(initial=0.0, jitter=0.0),
    )
    wait_for(lambda: len(recorder.events("start")) == 3)

    crash(sup, "a")
    wait_for(lambda: len(recorder.events("restarted")) == 3)
    crash(sup, "c")
    wait_for(lambda: len(recorder.events("restarted")) == 6)
    sup.which_children().get()  # let the supervisor drain its inbox

    assert [e for e in recorder.events() if e[0] == "exit"] == [
        ("exit", "a", crash_error(recorder, 0), True),
        ("exit", "c", crash_error(recorder, 1), True),
    ]
    assert len(recorder.events("start")) == 9


def crash_error(recorder: Recorder, index: int) -> BaseException:
    return recorder.events("exit")[index][2]  # type: ignore[no-any-return]


# -- restart types and death paths ------------------------------------------------------


def test_exception_in_on_start_is_restarted(recorder: Recorder) -> None:
    recorder.start_failures["a"] = 2
    start_supervisor(recorder, ["a"])

    wait_for(lambda: len(recorder.events("restarted")) == 2)
    exits = recorder.events("exit")
    assert [(name, type(error), again) for _, name, error, again in exits] == [
        ("a", ValueError, True),
        ("a", ValueError, True),
    ]
    assert len(recorder.events("start")) == 3


@pytest.mark.parametrize(
    ("restart", "how", "restarted"),
    [
        (Restart.PERMANENT, "stop", True),
        (Restart.PERMANENT, "crash", True),
        (Restart.TRANSIENT, "stop", False),
        (Restart.TRANSIENT, "crash", True),
        (Restart.TEMPORARY, "stop", False),
        (Restart.TEMPORARY, "crash", False),
    ],
)
def test_restart_types(recorder: Recorder, restart: Restart, how: str, restarted: bool) -> None:
    sup = RecordingSupervisor.start(recorder, backoff=FAST).proxy()
    ref = sup.start_child(spec(recorder, "w", restart)).get()

    ref.tell(how)

    wait_for(lambda: len(recorder.events("exit")) == 1)
    [(_, name, error, will_restart)] = recorder.events("exit")
    assert name == "w"
    assert (error is None) == (how == "stop")
    assert will_restart == restarted
    if restarted:
        wait_for(lambda: recorder.events("restarted") == [("restarted", "w")])
        assert sup.child("w").get().is_alive()
    else:
        assert sup.which_children().get() == []
        assert sup.child("w").get() is None


def test_exception_in_on_stop_of_a_self_stopping_child_is_a_crash(recorder: Recorder) -> None:
    sup = RecordingSupervisor.start(recorder, backoff=FAST).proxy()
    ref = sup.start_child(spec(recorder, "w", Restart.TRANSIENT, fail_on_stop=True)).get()

    ref.tell("stop")

    wait_for(lambda: len(recorder.events("restarted")) == 1)
    [(_, _, error, will_restart)] = recorder.events("exit")
    assert isinstance(error, RuntimeError)
    assert will_restart


def test_failure_to_build_a_child_on_restart_is_retried(recorder: Recorder) -> None:
    sup = start_supervisor(recorder, ["a"])
    wait_for(lambda: len(recorder.events("start")) == 1)
    recorder.start_failures["init:a"] = 1

    crash(sup, "a")

    wait_for(lambda: recorder.events("restarted") == [("restarted", "a")])
    assert recorder.start_failures["init:a"] == 0
    assert len(recorder.events("exit")) == 1
    assert sup.child("a").get().is_alive()


def test_child_waiting_for_restart_has_no_ref_and_can_be_forgotten(recorder: Recorder) -> None:
    slow = Backoff(initial=60.0, maximum=60.0, jitter=0.0)
    sup = start_supervisor(recorder, ["a", "b"], backoff=slow)

    crash(sup, "a")

    wait_for(lambda: len(recorder.events("exit")) == 1)
    assert sup.child("a").get() is None
    assert [(name, ref is None) for name, ref in sup.which_children().get()] == [
        ("a", True),
        ("b", False),
    ]
    sup.stop_child("a").get()
    assert [name for name, _ in sup.which_children().get()] == ["b"]


# -- dynamic children -------------------------------------------------------------------


def test_dynamic_children(recorder: Recorder) -> None:
    sup = start_supervisor(recorder, ["a"])
    b = sup.start_child(spec(recorder, "b")).get()
    c = sup.start_child(spec(recorder, "c")).get()

    assert [name for name, _ in sup.which_children().get()] == ["a", "b", "c"]
    assert sup.child("b").get() is b
    assert sup.child("nope").get() is None
    with pytest.raises(ValueError):
        sup.start_child(spec(recorder, "b")).get()

    sup.stop_child("b").get()
    sup.stop_child("nope").get()

    assert not b.is_alive()
    assert [name for name, _ in sup.which_children().get()] == ["a", "c"]
    c.tell("crash")
    wait_for(lambda: recorder.events("restarted") == [("restarted", "c")])
    assert ("exit", "b") not in [e[:2] for e in recorder.events()]


def test_duplicate_initial_names_are_rejected(recorder: Recorder) -> None:
    with pytest.raises(ValueError):
        RecordingSupervisor(recorder, children=[spec(recorder, "a"), spec(recorder, "a")])


def test_many_dynamic_children(recorder: Recorder) -> None:
    sup = RecordingSupervisor.start(recorder).proxy()
    count = 2000

    futures = [sup.start_child(spec(recorder, f"w{n}")) for n in range(count)]
    pykka.get_all(futures, timeout=60)

    assert len(sup.which_children().get()) == count
    sup.actor_ref.stop(block=True, timeout=60)
    stops = [e[1] for e in recorder.events("stop")]
    assert stops == [f"w{n}" for n in reversed(range(count))]


# -- restart budget and escalation ------------------------------------------------------


def test_gives_up_after_too_many_restarts(recorder: Recorder) -> None:
    gave_up: list[BaseException] = []
    recorder.start_failures["b"] = -1
    ref = RecordingSupervisor.start(
        recorder,
        children=[spec(recorder, n) for n in ("a", "b", "c")],
        max_restarts=2,
        within=60,
        backoff=FAST,
        on_give_up=gave_up.append,
    )

    wait_for(lambda: not ref.is_alive() and len(gave_up) == 1)
    [error] = gave_up
    assert isinstance(error, SupervisorGaveUp)
    assert error.name == "RecordingSupervisor"
    assert isinstance(error.last_error, ValueError)
    assert recorder.events("stop") == [("stop", "c"), ("stop", "a")]
    assert (
        len(
            recorder.events(
                "start",
            )
        )
        == 3 + 2
    )  # a, b, c, then b twice more
    wait_for(lambda: pykka.ActorRegistry.get_all() == [])


def test_parent_supervisor_sees_escalation(recorder: Recorder) -> None:
    recorder.start_failures["x"] = -1
    inner = ChildSpec(
        "inner",
        Supervisor,
        kwargs={
            "children": [spec(recorder, "ok"), spec(recorder, "x")],
            "max_restarts": 1,
            "backoff": FAST,
        },
        restart=Restart.TEMPORARY,
    )
    outer = RecordingSupervisor.start(recorder, children=[inner], backoff=FAST).proxy()

    wait_for(lambda: len(recorder.events("exit")) == 1)
    [(_, name, error, will_restart)] = recorder.events("exit")
    assert name == "inner"
    assert isinstance(error, SupervisorGaveUp)
    assert error.name == "inner"
    assert isinstance(error.last_error, ValueError)
    assert not will_restart
    assert recorder.events("stop") == [("stop", "ok")]
    assert outer.which_children().get() == []


def test_escalation_restarts_the_inner_supervisor(recorder: Recorder) -> None:
    recorder.start_failures["x"] = 2  # fails twice, more than the inner budget allows
    inner = ChildSpec(
        "inner",
        Supervisor,
        kwargs={"children": [spec(recorder, "x")], "max_restarts": 0, "backoff": FAST},
    )
    outer = RecordingSupervisor.start(recorder, children=[inner], backoff=FAST).proxy()

    wait_for(lambda: len(recorder.events("restarted")) == 2)
    inner_ref = outer.child("inner").get()
    wait_for(lambda: inner_ref.proxy().child("x").get() is not None)
    assert [type(e[2]) for e in recorder.events("exit")] == [SupervisorGaveUp] * 2


# -- shutdown ---------------------------------------------------------------------------


def test_shutdown_stops_children_in_reverse_start_order(recorder: Recorder) -> None:
    sup = start_supervisor(recorder, ["a", "b", "c"])
    sup.start_child(spec(recorder, "d")).get()

    assert sup.actor_ref.stop(block=True, timeout=10)

    assert recorder.events("stop") == [("stop", n) for n in "dcba"]
    assert recorder.events("exit") == []


def test_child_hanging_in_on_stop_does_not_hang_shutdown(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    try:
        ref = RecordingSupervisor.start(
            recorder,
            children=[
                spec(recorder, "a"),
                spec(recorder, "b", hang_on_stop=release, shutdown_timeout=0.1),
                spec(recorder, "c"),
            ],
        )
        wait_for(lambda: len(recorder.events("start")) == 3)

        with caplog.at_level(logging.ERROR, logger="actors.supervisor"):
            assert ref.stop(block=True, timeout=10)

        assert recorder.events("stop") == [("stop", n) for n in "cba"]
        assert "child 'b' did not stop within 0.1s" in caplog.text
    finally:
        release.set()


def test_log_line_is_readable(recorder: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    sup = start_supervisor(recorder, ["worker-1"], max_restarts=3, within=5)
    wait_for(lambda: len(recorder.events("start")) == 1)

    with caplog.at_level(logging.INFO, logger="actors.supervisor"):
        crash(sup, "worker-1")
        wait_for(lambda: len(recorder.events("restarted")) == 1)

    assert (
        "child 'worker-1' crashed: ValueError('boom'); restarting in 0.00s "
        "(restart 1 of 3 within 5s)"
    ) in caplog.text
