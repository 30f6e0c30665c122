"""`infrakit plugin start|ls`: serve a built-in plugin on a socket of the plugins directory, and
list the plugins found there.

A plugin named NAME is served at `ipc://<plugins dir>/NAME`, with `NAME.pid` beside it saying
which process serves it and which runtime launched it (infrakit/pidfile.py); both go when it
stops.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import click

from actors.blocking_client import BlockingRef
from actors.http_probe import probe_http
from actors.rpc_errors import AddressInUse, RemoteError
from infrakit import paths
from infrakit.cli.helpformat import Group
from infrakit.cli.output import json_option, print_json, print_table, status_column
from infrakit.cli.remote import (
    ipc_listening,
    parse_pairs,
)
from infrakit.pidfile import read_pid_file, write_pid_file
from infrakit.plugins import builtin_kinds, create_plugin
from infrakit.wire.common import HANDSHAKE, Client
from infrakit.wire.plugin import implements, plugin_handlers

LS_TIMEOUT = 1.0
"""Seconds `plugin ls` gives each plugin to answer the handshake."""

C = TypeVar("C", bound=Client)


def plugins_dir() -> Path:
    """Where plugins listen: `$INFRAKIT_PLUGINS_DIR`, else `$INFRAKIT_HOME/plugins`, else
    `~/.infrakit/plugins`. Every client and server finds plugins by name there."""
    return paths.plugins_dir()


@click.group(cls=Group)
def plugin() -> None:
    """Start built-in plugins and list the running ones (in the plugins directory).

    The plugins directory is $INFRAKIT_PLUGINS_DIR, else $INFRAKIT_HOME/plugins, else
    ~/.infrakit/plugins. Plugin NAME listens at ipc://<plugins dir>/NAME.
    """


@plugin.command(
    epilog=f"KIND is one of: {', '.join(builtin_kinds())}. Each kind's options and properties:"
    " docs/plugins/KIND.md."
)
@click.argument("kind", type=click.Choice(builtin_kinds()), metavar="KIND")
@click.option(
    "--name",
    help="The plugin's name (its socket). Default: instance-KIND or flavor-KIND, by what it is.",
)
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="A plugin option, e.g. Dir=/var/lib/instances (repeatable; values are strings).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
    help="How much to log (on stderr).",
)
def start(kind: str, name: str | None, options: tuple[str, ...], log_level: str) -> None:
    """Serve the built-in plugin KIND in the foreground until Ctrl-C or SIGTERM.

    Prints `Listening at: ENDPOINT` once it serves. State goes under $INFRAKIT_HOME (as for
    `infrakit run`) unless the plugin is given a Dir option.
    """
    from infrakit.cli.logs import configure  # a server's logging: `ls` has no use for it

    configure(log_level, False)
    try:
        served = create_plugin(kind, parse_pairs(options, "--option"), paths.default_home())
    except (ValueError, OSError) as error:
        raise click.ClickException(str(error)) from None
    try:
        name = name or default_name(kind, served)
        serve(name, served)
    finally:
        close = getattr(served, "close", None)
        if callable(close):
            close()


def default_name(kind: str, served: object) -> str:
    """InfraKit's name for a plugin of `kind`: `instance-KIND`, or `flavor-KIND` for a flavor
    (that is no instance plugin too)."""
    names = {api["Name"] for api in implements(served)}
    return f"flavor-{kind}" if "Flavor" in names and "Instance" not in names else f"instance-{kind}"


def serve(name: str, served: Any) -> None:
    """Serve `served` as plugin `name` until SIGTERM or SIGINT, then remove socket and pid file."""
    if not name or "/" in name:
        raise click.ClickException(f"a plugin name must be non-empty and without '/': {name!r}")
    directory = plugins_dir()
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise click.ClickException(f"cannot create the plugins directory: {error}") from None
    endpoint = f"ipc://{directory / name}"
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    from actors.rpc_server import RpcServer  # a server's: the client commands have no use for it

    server = RpcServer(endpoint, plugin_handlers(served), name=name)
    try:
        server.start()
    except AddressInUse:
        raise click.ClickException(
            f"plugin {name} is already running at {endpoint} (a leading `infrakit run` serves"
            " its built-in plugins there too); start this one under another name with --name"
        ) from None
    except Exception as error:  # zmq: path too long, no permission...
        raise click.ClickException(f"cannot serve at {endpoint}: {error}") from None
    pid_file = directory / f"{name}.pid"
    try:
        write_pid_file(pid_file)
        click.echo(f"Listening at: {server.endpoint}")
        sys.stdout.flush()
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
        written = read_pid_file(pid_file)
        if written is not None and written.pid == os.getpid():
            with contextlib.suppress(OSError):
                pid_file.unlink()


@plugin.command(name="ls")
@click.option("-q", "--quiet", is_flag=True, help="Print only the names of live plugins.")
@json_option
def ls(quiet: bool, as_json: bool) -> None:
    """List the plugins in the plugins directory: name, interfaces, transport and endpoint.

    Every socket is asked for its interfaces at once, first over HTTP (`Plugin.Implements`:
    Go InfraKit's plugins, TRANSPORT http), then over ZeroMQ (`Handshake.Implements`, zmq);
    one that answers neither within a second is marked `(stale)` (its server died without
    cleaning up). With --json: [{"Name", "Interfaces", "Transport", "Listen"}], Interfaces
    and Transport null for a stale one.
    """
    directory = plugins_dir()
    try:
        names = sorted(
            entry.name
            for entry in directory.iterdir()
            if not entry.name.endswith(".pid") and stat.S_ISSOCK(entry.lstat().st_mode)
        )
    except FileNotFoundError:
        names = []
    except OSError as error:
        raise click.ClickException(f"cannot list {directory}: {error}") from None
    http = probe_all({name: directory / name for name in names})
    zmq = [name for name in names if name not in http]
    answers: dict[str, list[str] | None] = dict(http)
    answers.update(handshake_all({name: f"ipc://{directory / name}" for name in zmq}))
    listed: list[dict[str, Any]] = [
        {
            "Name": name,
            "Interfaces": answers[name],
            "Transport": "http" if name in http else None if answers[name] is None else "zmq",
            "Listen": f"{'unix' if name in http else 'ipc'}://{directory / name}",
        }
        for name in names
    ]
    if as_json:
        print_json(listed)
    elif quiet:
        for name in names:
            if answers[name] is not None:
                click.echo(name)
    else:
        rows = [
            (
                plugin["Name"],
                "(stale)"
                if plugin["Interfaces"] is None
                else ", ".join(plugin["Interfaces"]) or "-",
                plugin["Transport"] or "-",
                plugin["Listen"],
            )
            for plugin in listed
        ]
        print_table(("NAME", "INTERFACES", "TRANSPORT", "LISTEN"), rows, style=status_column(1))


def probe_all(paths: dict[str, Path]) -> dict[str, list[str] | None]:
    """The sockets that answer an HTTP `Plugin.Implements` (Go InfraKit's wire) within
    `LS_TIMEOUT`, asked concurrently: name -> `["Instance/0.1.0", ...]`. A ZeroMQ socket
    drops the HTTP request at once, so this costs the others next to nothing."""
    found: dict[str, list[str] | None] = {}
    for name, apis in concurrently(lambda path: probe_http(path, LS_TIMEOUT), paths).items():
        if apis is not None:
            found[name] = [f"{a.get('Name')}/{a.get('Version')}" for a in apis]
    return found


def handshake_all(endpoints: dict[str, str]) -> dict[str, list[str] | None]:
    """Ask every endpoint for its interfaces concurrently: name -> `["Instance/0.1.0", ...]`,
    or None for one that does not answer within `LS_TIMEOUT`."""
    listening = [name for name, endpoint in endpoints.items() if ipc_listening(endpoint)]
    answers: dict[str, list[str] | None] = dict.fromkeys(endpoints)
    answers.update(concurrently(interfaces, {name: endpoints[name] for name in listening}))
    return answers


def interfaces(endpoint: str) -> list[str] | None:
    """The interfaces the ZeroMQ server at `endpoint` implements (its handshake), [] if it
    answers without saying, None if it does not answer within `LS_TIMEOUT`."""
    with BlockingRef(endpoint, timeout=LS_TIMEOUT, retries=0) as ref:
        try:
            result = ref.call(HANDSHAKE, {})
        except RemoteError:
            return []  # alive, but does not say what it implements
        except Exception:
            return None
    return [f"{a['Name']}/{a['Version']}" for a in result.get("APIs") or []]


A = TypeVar("A")
R = TypeVar("R")


def concurrently(function: Callable[[A], R], arguments: Mapping[str, A]) -> dict[str, R]:
    """`{name: function(argument)}` for every item of `arguments`, each on a thread of its own
    (each may wait up to `LS_TIMEOUT` for its socket); the first exception is raised. Plain
    threads: concurrent.futures would import logging, a cost `ls` need not pay."""
    results: dict[str, R] = {}
    errors: list[BaseException] = []

    def run(name: str, argument: A) -> None:
        try:
            results[name] = function(argument)
        except BaseException as error:
            errors.append(error)

    threads = [
        threading.Thread(target=run, args=(name, argument), daemon=True)
        for name, argument in arguments.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return {name: results[name] for name in arguments}
