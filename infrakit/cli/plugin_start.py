"""`infrakit plugin start KIND`: serve a built-in plugin at `ipc://<plugins dir>/NAME` in the
foreground, with `NAME.pid` beside it (infrakit/pidfile.py); both go when it stops."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

import click

from actors.rpc_errors import AddressInUse
from infrakit import paths
from infrakit.cli.helpformat import Command
from infrakit.cli.remote import parse_pairs
from infrakit.pidfile import read_pid_file, write_pid_file
from infrakit.plugins import builtin_kinds, create_plugin
from infrakit.wire.plugin import implements, plugin_handlers


@click.command(
    cls=Command,
    epilog=f"KIND is one of: {', '.join(builtin_kinds())}. Each kind's options and properties:"
    " docs/plugins/KIND.md.",
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
    directory = paths.plugins_dir()
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
