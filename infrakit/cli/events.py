"""`infrakit events`: follow the lifecycle events a running runtime publishes.

The runtime publishes on a ZeroMQ PUB socket (by default `ipc://<INFRAKIT_HOME>/events`),
each event a two-frame message: the group ID (the topic) and the event as a JSON object
`{"group", "kind", "message", "logical_id", "instance", "data", "time", "seq"}`; `--since`
replays recent ones first (infrakit/cli/replay.py).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
import zmq

from infrakit.cli.client import default_endpoint
from infrakit.cli.helpformat import Command
from infrakit.cli.remote import curve_config, curve_options, ipc_listening
from infrakit.cli.replay import Replay, parse_since
from infrakit.paths import default_home


def default_events_endpoint() -> str:
    """Where a runtime publishes its events by default: `ipc://<INFRAKIT_HOME>/events`."""
    return f"ipc://{default_home() / 'events'}"


def event_line(event: dict[str, Any]) -> str:
    """`HH:MM:SS group: [logical_id] message`, like the runtime's own log lines."""
    when = event.get("time")
    stamp = time.strftime(
        "%H:%M:%S", time.localtime(when if isinstance(when, int | float) else None)
    )
    who = f" {event['logical_id']}" if event.get("logical_id") else ""
    return f"{stamp} {event.get('group', '?')}:{who} {event.get('message', '')}"


@click.command(cls=Command)
@click.argument("group_id", metavar="[GROUP]", required=False)
@click.option(
    "--endpoint",
    default=default_events_endpoint,
    show_default="ipc://<INFRAKIT_HOME>/events",
    help="Where the runtime publishes its events.",
)
@click.option("--json", "as_json", is_flag=True, help="Print each event as one JSON object.")
@click.option(
    "--since",
    metavar="DURATION",
    callback=parse_since,
    help="First print the events of the last DURATION (e.g. 5m; at most a week) that the"
    " runtime still holds (its last 1000, of at most 1h).",
)
@click.option(
    "--manager-endpoint",
    envvar="INFRAKIT_ENDPOINT",
    default=default_endpoint,
    show_default="ipc://<plugins dir>/group; env INFRAKIT_ENDPOINT",
    help="Where the runtime serves its Group API, which --since asks for the replay.",
)
@curve_options
def events(
    group_id: str | None,
    endpoint: str,
    as_json: bool,
    since: float | None,
    manager_endpoint: str,
    curve_key: Path | None,
    server_key: Path | None,
) -> None:
    """Print the runtime's lifecycle events as they happen (of GROUP only, if given), one
    line each, until Ctrl-C. Waits for a runtime if none publishes yet. With --since, first
    the recent ones, each event once."""
    curve = curve_config(curve_key, server_key)
    if not ipc_listening(endpoint):
        click.echo(f"nothing publishes at {endpoint} yet; waiting", err=True)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = context.socket(zmq.SUB)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        if curve is not None:
            sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.public_key)
            sock.setsockopt(zmq.CURVE_SECRETKEY, curve.secret_key)
            sock.setsockopt(zmq.CURVE_SERVERKEY, curve.server_key)
        sock.setsockopt(zmq.SUBSCRIBE, group_id.encode() if group_id else b"")
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as error:
            raise click.ClickException(f"cannot connect to {endpoint}: {error}") from None
        replay = Replay(group_id)  # subscribed first: then the replay, then the live events
        try:
            if since is not None:
                for event in replay.fetch(manager_endpoint, curve_key, server_key, since):
                    show(event, as_json)
                sys.stdout.flush()
            follow(sock, group_id, as_json, replay)
        finally:
            replay.close()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close(linger=0)


def show(event: dict[str, Any], as_json: bool) -> None:
    """Print one event: a line, or its JSON object."""
    click.echo(json.dumps(event, sort_keys=True) if as_json else event_line(event))


def follow(
    sock: zmq.Socket[bytes], group_id: str | None, as_json: bool, replay: Replay | None = None
) -> None:
    """Print every event received on `sock` (topics match by prefix: keep exact ones only),
    each once: `replay` says which were printed already."""
    while True:
        frames = sock.recv_multipart()
        if len(frames) < 2:
            continue
        topic = frames[0].decode(errors="replace")
        if group_id is not None and topic != group_id:
            continue
        try:
            event = json.loads(frames[1])
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        for shown in replay.admit(event) if replay is not None else [event]:
            show(shown, as_json)
        sys.stdout.flush()
