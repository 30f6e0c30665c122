"""Every command's `--help` as a user reads it at a narrow or wide terminal: lines wrap between
words only, never inside one (seen: `flavor-` / `vanilla`, `vanil la`)."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from infrakit.cli.main import main


def commands(command: click.Command, path: list[str]) -> Iterator[tuple[list[str], click.Command]]:
    """`(path, command)` for `command` and every command beneath it, lazy ones included."""
    yield path, command
    if isinstance(command, click.Group):
        context = click.Context(command)
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            assert sub is not None, name
            yield from commands(sub, [*path, name])


def long_words(command: click.Command) -> set[str]:
    """The words of the command's own help source (text, epilog, options' help) that a careless
    wrap would split: those with a hyphen, and those longer than 10 characters."""
    sources = [command.help or "", command.epilog or ""]
    sources += [param.help or "" for param in command.params if isinstance(param, click.Option)]
    words = " ".join(sources).replace("\b", " ").split()
    return {word for word in words if "-" in word.strip("-") or len(word) > 10}


ALL = list(commands(main, []))


def test_the_walk_reaches_every_command_group() -> None:
    paths = [path for path, _ in ALL]
    for expected in (["run"], ["flavor", "prepare"], ["group", "ls"], ["keys", "generate"]):
        assert expected in paths
    assert ["plugin", "start"] in paths and ["instance", "describe"] in paths
    assert ["events"] in paths and ["validate"] in paths


@pytest.mark.parametrize("width", [40, 60, 80])
@pytest.mark.parametrize("path", [path for path, _ in ALL], ids=" ".join)
def test_help_wraps_between_words_only(path: list[str], width: int) -> None:
    command = dict((" ".join(p), c) for p, c in ALL)[" ".join(path)]
    result = CliRunner().invoke(main, [*path, "--help"], terminal_width=width)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: "), result.output
    shown = set(result.output.split())
    split = sorted(long_words(command) - shown)
    assert not split, f"words split across lines in `{' '.join(path)} --help`: {split}"


@pytest.mark.parametrize("path", [path for path, _ in ALL], ids=" ".join)
def test_every_command_formats_help_with_whole_words(path: list[str]) -> None:
    """A command made with plain `@click.command()` would wrap with click's defaults again."""
    from infrakit.cli.helpformat import Context

    command = dict((" ".join(p), c) for p, c in ALL)[" ".join(path)]
    assert issubclass(command.context_class, Context), f"`{' '.join(path)}` uses click's own"
