"""Help text that wraps between words only: click wraps with textwrap's defaults, which split
`flavor-vanilla` at its hyphen and cut a word longer than the line. `Group` and `Command` here
give every context, and so every `--help`, a formatter that keeps words whole (a word longer
than the line overflows it instead)."""

from __future__ import annotations

from collections.abc import Iterable

import click
from click.formatting import iter_rows, measure_table


def wrap(
    text: str, width: int, initial: str = "", subsequent: str = "", paragraphs: bool = False
) -> str:
    """`text` filled to `width` as click's `wrap_text` does (paragraphs, `\\b` blocks left as
    they are), but never breaking a word."""
    import textwrap  # only help needs it: every command imports this module

    wrapper = textwrap.TextWrapper(
        max(width, 1),
        initial_indent=initial,
        subsequent_indent=subsequent,
        replace_whitespace=False,
        break_long_words=False,
        break_on_hyphens=False,
    )
    text = text.expandtabs()
    if not paragraphs:
        return wrapper.fill(text)
    blocks: list[list[str]] = [[]]  # paragraphs, split at empty lines
    for line in text.splitlines():
        if line:
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    out = []
    for lines in filter(None, blocks):
        pad = " " * (len(lines[0]) - len(lines[0].lstrip()))
        lines[0] = lines[0].lstrip()
        if lines[0].strip() == "\b":  # a block click leaves as written
            first, rest = initial + pad, subsequent + pad
            out.append("\n".join(f"{rest if i else first}{x}" for i, x in enumerate(lines[1:])))
        else:
            wrapper.initial_indent, wrapper.subsequent_indent = initial + pad, subsequent + pad
            out.append(wrapper.fill(" ".join(lines)))
    return "\n\n".join(out)


class WholeWordsFormatter(click.HelpFormatter):
    """click's help layout, wrapped by `wrap`."""

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        prefix = "Usage: " if prefix is None else prefix
        usage = f"{prefix:>{self.current_indent}}{prog} "
        width = self.width - self.current_indent
        if not args:
            self.write(usage.rstrip(" ") + "\n")
        elif width >= len(usage) + 20:
            self.write(wrap(args, width, usage, " " * len(usage)) + "\n")
        else:
            indent = " " * (max(self.current_indent, len(prefix)) + 4)
            self.write(usage + "\n" + wrap(args, width, indent, indent) + "\n")

    def write_text(self, text: str) -> None:
        indent = " " * self.current_indent
        self.write(wrap(text, self.width, indent, indent, paragraphs=True) + "\n")

    def write_dl(
        self, rows: Iterable[tuple[str, str]], col_max: int = 30, col_spacing: int = 2
    ) -> None:
        table = list(rows)
        widths = measure_table(table)
        if len(widths) != 2:
            raise TypeError("Expected two columns for definition list")
        first_col = min(widths[0], col_max) + col_spacing
        margin = " " * (first_col + self.current_indent)
        for first, second in iter_rows(table, 2):
            self.write(f"{'':>{self.current_indent}}{first}")
            if not second:
                self.write("\n")
                continue
            if len(first) <= first_col - col_spacing:
                self.write(" " * (first_col - len(first)))
            else:
                self.write("\n" + margin)
            lines = wrap(second, max(self.width - first_col - 2, 10), paragraphs=True).splitlines()
            self.write("\n".join([lines[0] if lines else "", *(margin + x for x in lines[1:])]))
            self.write("\n")


class Context(click.Context):
    """A context whose help keeps words whole."""

    formatter_class = WholeWordsFormatter


class Command(click.Command):
    """A command whose help keeps words whole."""

    context_class = Context


class Group(click.Group):
    """A group whose help keeps words whole, as do its commands' and subgroups'."""

    context_class = Context
    command_class = Command
    group_class = type
