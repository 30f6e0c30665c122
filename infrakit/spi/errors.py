"""Errors that plugins raise and the runtime reports."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class PluginError(Exception):
    """A plugin call failed; the message says why in words an operator can act on."""


class ValidationError(PluginError):
    """Properties given to a plugin are not acceptable.

    `problems` lists every fault as a (JSON path, reason) pair, the path relative to the
    properties (may be empty). `path` and `reason` are the first fault's.
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.reason = message
        self.problems: list[tuple[str, str]] = [(path, message)]

    @classmethod
    def of(cls, problems: Iterable[tuple[str, str]]) -> ValidationError:
        """One error carrying every fault in `problems` (at least one)."""
        found = list(problems)
        if not found:
            raise ValueError("a ValidationError needs at least one problem")
        path, reason = found[0]
        error = cls(reason, path)
        error.problems = found
        if len(found) > 1:
            lines = [f"{p}: {r}" if p else r for p, r in found]
            error.args = ("; ".join(lines),)
        return error


class SpecError(ValueError):
    """A spec or cluster file is not acceptable. `problems` lists (JSON path, fault) pairs.

    Defined here, beside the contracts, because committing a group (spi/group.py) raises it,
    and a client of the Group API raises it again from the faults it is sent.
    """

    def __init__(self, problems: Sequence[tuple[str, str]], source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        lines = [f"{path}: {fault}" if path else fault for path, fault in self.problems]
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "; ".join(lines))
