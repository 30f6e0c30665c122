"""`infrakit plugin start|ls`: serve a built-in plugin on a socket of the plugins directory, and
list the plugins found there.

A plugin named NAME is served at `ipc://<plugins dir>/NAME`, with `NAME.pid` beside it saying
which process serves it and which runtime launched it (infrakit/pidfile.py); both go when it
stops. Each subcommand lives in a module of its own, imported when named: `ls` is a client
command and counts its milliseconds, `start` is a server and brings the plugins with it.
"""

from __future__ import annotations

import click

from infrakit.cli.lazy import LazyGroup


@click.group(
    cls=LazyGroup,
    lazy={"start": "infrakit.cli.plugin_start:start", "ls": "infrakit.cli.plugin_list:ls"},
)
def plugin() -> None:
    """Start built-in plugins and list the running ones (in the plugins directory).

    The plugins directory is $INFRAKIT_PLUGINS_DIR, else $INFRAKIT_HOME/plugins, else
    ~/.infrakit/plugins. Plugin NAME listens at ipc://<plugins dir>/NAME.
    """
