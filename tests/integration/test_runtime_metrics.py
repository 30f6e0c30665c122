"""Two runtimes in one process each serve their own metrics (a registry each, not the global
one): each endpoint shows its own group only, and a stopped runtime's port is free again."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

from support import file_group, free_port, wait_for

from infrakit import Runtime


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return answer.read().decode()


def showing(port: int, wanted: str) -> str | None:
    """The scrape of `port` if it shows the line `wanted`."""
    text = scrape(port)
    return text if wanted in text.splitlines() else None


def test_two_runtimes_in_one_process_serve_their_own_metrics(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    runtimes = [
        Runtime({"Manager": {"Metrics": f"127.0.0.1:{port}"}}, home=tmp_path / f"home-{n}")
        for n, port in enumerate(ports)
    ]
    try:
        for n, runtime in enumerate(runtimes):
            runtime.start()
            runtime.commit(file_group(f"group-{n}", size=n + 1))
        for n, port in enumerate(ports):
            wanted = f'infrakit_group_healthy{{group="group-{n}"}} {n + 1}.0'
            text = wait_for(lambda p=port, w=wanted: showing(p, w), what=wanted)
            other = f'group="group-{1 - n}"'
            assert other not in text
    finally:
        for runtime in runtimes:
            runtime.stop()
    for port in ports:  # nothing listens there any more (as the HTTP server, reusing the address)
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
            probe.listen()


def test_the_revision_gauge_follows_the_group_revisions(tmp_path: Path) -> None:
    """`infrakit_group_revision` is the group's latest revision: 1 once committed, 2 after a
    second real commit."""
    port = free_port()
    runtime = Runtime({"Manager": {"Metrics": f"127.0.0.1:{port}"}}, home=tmp_path / "home")
    try:
        runtime.start()
        runtime.commit(file_group("counted", size=1))
        wanted = 'infrakit_group_revision{group="counted"} 1.0'
        wait_for(lambda: showing(port, wanted), what=wanted)
        runtime.commit(file_group("counted", size=2))
        wanted = 'infrakit_group_revision{group="counted"} 2.0'
        wait_for(lambda: showing(port, wanted), what=wanted)
    finally:
        runtime.stop()


def test_what_an_operator_holds_back_shows_in_the_metrics(tmp_path: Path) -> None:
    """A suspended process and an instance in standby are why a group stops acting: a dashboard
    must show them (`infrakit_group_suspended` per process, `infrakit_group_standby`), and both
    go back to 0 once lifted."""
    port = free_port()
    runtime = Runtime({"Manager": {"Metrics": f"127.0.0.1:{port}"}}, home=tmp_path / "home")
    try:
        runtime.start()
        runtime.commit(file_group("held", size=2))
        runtime.wait_converged("held", timeout=120)
        runtime.suspend("held", ["launch"])
        runtime.standby("held", "held-1")
        held = [
            'infrakit_group_suspended{group="held",process="launch"} 1.0',
            'infrakit_group_suspended{group="held",process="heal"} 0.0',
            'infrakit_group_standby{group="held"} 1.0',
        ]
        wait_for(lambda: all(line in scrape(port).splitlines() for line in held), what=held)
        runtime.suspend("held", ["launch"], suspend=False)
        runtime.standby("held", "held-1", standby=False)
        lifted = [
            'infrakit_group_suspended{group="held",process="launch"} 0.0',
            'infrakit_group_standby{group="held"} 0.0',
        ]
        wait_for(lambda: all(line in scrape(port).splitlines() for line in lifted), what=lifted)
    finally:
        runtime.stop()
