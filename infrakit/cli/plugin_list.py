"""`infrakit plugin ls`: the plugins in the plugins directory, each asked what it implements."""

from __future__ import annotations

import stat
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from actors.blocking_client import BlockingRef
from actors.http_probe import probe_http
from actors.rpc_errors import RemoteError
from infrakit import paths
from infrakit.cli.helpformat import Command
from infrakit.cli.output import json_option, print_json, print_table, status_column
from infrakit.cli.remote import ipc_listening
from infrakit.wire.common import HANDSHAKE

LS_TIMEOUT = 1.0
"""Seconds `plugin ls` gives each plugin to answer the handshake."""


@click.command(cls=Command, name="ls")
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
    directory = paths.plugins_dir()
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
