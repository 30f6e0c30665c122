"""Command groups whose subcommands load on first use: a command named on the command line
imports its own module only, so `infrakit group ls` does not pay for `group history`'s or
`instance standby`'s modules (every client command counts its milliseconds)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import click

from infrakit.cli.helpformat import Group


class LazyGroup(Group):
    """A group whose subcommands in `lazy` (name -> "module:attribute", or "module" for a
    module that registers the command on this group when imported) load only when named, or
    when listed (e.g. by --help)."""

    def __init__(self, *args: Any, lazy: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = self._lazy.get(cmd_name)
        if where is None or cmd_name in self.commands:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = where.partition(":")
        loaded = importlib.import_module(module)
        if not attribute:
            return super().get_command(ctx, cmd_name)  # registered itself on import
        command: click.Command = getattr(loaded, attribute)
        return command
