"""The threads that carry events and watch the engine keep serving whatever one callback,
listener or event does: the Docker event watcher, the event publisher and the EventBus."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from support import TEST_IMAGE, TEST_LABEL, wait_for

from infrakit.events import Event, EventBus
from infrakit.plugins.instance.docker.events import EventWatcher
from infrakit.publisher import EventPublisher


def test_a_docker_watch_subscriber_that_raises_anything_does_not_end_the_watch(
    engine: Any, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    watcher = EventWatcher(
        lambda: engine.events(decode=True, filters={"label": f"{TEST_LABEL}={token}"}),
        lambda _event: True,
        f"docker-watch-{token}",
    )
    heard: list[int] = []

    def exits() -> None:
        raise SystemExit("a subscriber gave up")

    with caplog.at_level("ERROR"):
        watcher.subscribe(exits)
        watcher.subscribe(lambda: heard.append(1))
        for n in range(2):
            engine.containers.create(TEST_IMAGE, ["true"], labels={TEST_LABEL: token})
            wait_for(lambda n=n: len(heard) > n, timeout=30, what=f"event {n + 1}")
    assert watcher.running
    assert any(r.exc_info and "exits" in r.getMessage() for r in caplog.records)
    watcher.close()


class Subscriber:
    """A SUB socket on the publisher's endpoint, and the groups of the events it received."""

    def __init__(self, endpoint: str) -> None:
        self.sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
        self.sock.linger = 0
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(endpoint)
        self.groups: list[str] = []

    def heard(self, group: str) -> bool:
        while self.sock.poll(20):
            topic, _body = self.sock.recv_multipart()
            self.groups.append(topic.decode())
        return group in self.groups

    def close(self) -> None:
        self.sock.close(linger=0)


@pytest.fixture
def published(tmp_path: Path) -> Iterator[tuple[EventPublisher, Subscriber]]:
    publisher = EventPublisher(f"ipc://{tmp_path}/events").start()
    subscriber = Subscriber(publisher.endpoint)

    def connected() -> bool:  # a SUB hears only what is sent after it has joined
        publisher.publish(Event("probe", "test", "are you there"))
        return subscriber.heard("probe")

    wait_for(connected, timeout=30, what="the subscriber to join")
    yield publisher, subscriber
    subscriber.close()
    publisher.stop()


@pytest.mark.parametrize(
    "bad",
    [
        Event("\ud800", "test", "a group ID that is not UTF-8"),
        Event("g", "test", "data that is not JSON", data={("a", "tuple"): "key"}),
    ],
    ids=["lone-surrogate", "tuple-key"],
)
def test_an_event_that_cannot_be_sent_is_logged_and_the_next_goes_out(
    published: tuple[EventPublisher, Subscriber], bad: Event, caplog: pytest.LogCaptureFixture
) -> None:
    publisher, subscriber = published
    with caplog.at_level("ERROR", logger="infrakit.publisher"):
        publisher.publish(bad)

        def next_one_heard() -> bool:
            publisher.publish(Event("after", "test", "the next event"))
            return subscriber.heard("after")

        wait_for(next_one_heard, timeout=30, what="the event after the bad one")
    assert publisher.alive
    failures = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(failures) == 1 and failures[0].exc_info
    assert bad.message in failures[0].getMessage()


def test_an_event_whose_data_cannot_be_copied_goes_out_with_its_data_as_text(
    published: tuple[EventPublisher, Subscriber],
) -> None:
    publisher, subscriber = published

    def heard() -> bool:
        publisher.publish(Event("odd", "test", "odd data", data={"lock": threading.Lock()}))
        return subscriber.heard("odd")

    wait_for(heard, timeout=30, what="the event with odd data")
    assert publisher.alive


def test_a_listener_that_raises_anything_is_logged_and_the_others_hear_every_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A listener runs on the publishing actor's thread: SystemExit there would stop every
    actor of the process (Pykka's rule for a handler that raises it)."""
    bus = EventBus()
    heard: list[str] = []

    def exits(_event: Event) -> None:
        raise SystemExit("a listener gave up")

    bus.subscribe(exits)
    bus.subscribe(lambda event: heard.append(event.message))
    with caplog.at_level("ERROR", logger="infrakit.events"):
        bus.publish(Event("g", "test", "one"))
        bus.publish(Event("g", "test", "two"))

    assert heard == ["one", "two"]
    failures = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(failures) == 2 and all(r.exc_info and "exits" in r.getMessage() for r in failures)


def test_an_event_whose_data_cannot_be_copied_is_still_logged_and_heard(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    heard: list[Event] = []
    bus.subscribe(heard.append)
    event = Event("g", "test", "odd data", data={"lock": threading.Lock()})

    with caplog.at_level("INFO", logger="infrakit.events"):
        bus.publish(event)

    assert heard == [event]
    assert any(r.getMessage() == "g: odd data" for r in caplog.records)
