"""How the commands print: tables for people (bold headers, status words in colour on a
terminal), one JSON document for scripts (`--json`), and errors with a red `Error:`.

Colour only when the stream is a terminal and NO_COLOR is unset or empty (https://no-color.org).
This module imports nothing but click and the standard library: every command loads it.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

STATUS_COLOURS = {
    "healthy": "green",
    "converged": "green",
    "valid": "green",
    "yes": "green",
    "converging": "yellow",
    "destroying": "yellow",
    "unknown": "yellow",
    "paused": "yellow",
    "unhealthy": "red",
    "failed": "red",
    "(stale)": "red",
}
"""The colour of each word that says how something is; other words stay plain."""


def json_option(function: F) -> F:
    """Add `--json` (as `as_json`): print one JSON document on stdout instead of text."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document instead (for scripts)."
    )(function)


def colour(err: bool = False) -> bool:
    """Whether to colour stdout (stderr if `err`): a terminal, and NO_COLOR unset or empty."""
    stream = sys.stderr if err else sys.stdout
    return not os.environ.get("NO_COLOR") and stream.isatty()


def paint(text: str, err: bool = False, **style: Any) -> str:
    """`text` styled as click.style does, when `colour(err)`; else `text` unchanged."""
    return click.style(text, **style) if colour(err) else text


def status_word(word: str, err: bool = False) -> str:
    """A status word in its colour (`STATUS_COLOURS`)."""
    fg = STATUS_COLOURS.get(word)
    return paint(word, err, fg=fg) if fg else word


def pretty(value: Any) -> str:
    """`value` as indented JSON, the way the commands print documents."""
    return json.dumps(value, indent=2, sort_keys=True)


def print_json(value: Any) -> None:
    """Print `value` as the one JSON document of a command's stdout."""
    click.echo(pretty(value))


def print_valid(as_json: bool) -> None:
    """Say that what a plugin was asked to validate is valid: `valid`, or {"Valid": true}."""
    if as_json:
        print_json({"Valid": True})
    else:
        click.echo(status_word("valid"))


def print_table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    style: Callable[[int, str], str] | None = None,
) -> None:
    """Print rows in columns padded to their widest cell, under a bold `header`; `style(column,
    padded cell)` may colour a cell (padding is measured before, so columns stay aligned)."""
    table = [list(header), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for index, row in enumerate(table):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        cells.append(row[-1])
        if index == 0:
            line = paint("  ".join(cells).rstrip(), bold=True)
        elif style is not None:
            line = "  ".join(style(column, cell) for column, cell in enumerate(cells)).rstrip()
        else:
            line = "  ".join(cells).rstrip()
        click.echo(line)


def status_column(index: int, others: str | None = None) -> Callable[[int, str], str]:
    """A `print_table` style: the words of column `index` in their status colour, any other
    word but `-` in `others` if given (padding kept, so columns stay aligned)."""

    def style(column: int, cell: str) -> str:
        word = cell.rstrip()
        fg = STATUS_COLOURS.get(word, others) if column == index and word != "-" else None
        return paint(word, fg=fg) + cell[len(word) :] if fg else cell

    return style


def show_error(error: click.ClickException) -> None:
    """Print `error` as click would, but with `Error:` in red on a terminal."""
    if not colour(err=True):
        error.show()
        return
    shown = io.StringIO()
    error.show(shown)
    for line in shown.getvalue().splitlines():
        if line.startswith("Error:"):
            line = paint("Error:", err=True, fg="red", bold=True) + line[len("Error:") :]
        click.echo(line, err=True)
