"""Strict JSON: refuse what a parser lets through but a consumer later trips over.

orjson already refuses invalid UTF-8, lone surrogates, NaN and Infinity; `loads` also refuses
duplicate keys, integers beyond 64 bits and nesting deeper than a bound, naming the JSON path
of each fault. `problems` applies the same rules to a value already in Python (one given by an
embedding program), which may also hold lone surrogates, NaN or things that are not JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["INT_MAX", "INT_MIN", "MAX_DEPTH", "JsonError", "join_key", "loads", "problems"]

MAX_DEPTH = 64
"""Containers nested deeper than this are refused (the outermost object is level 1)."""
INT_MIN = -(1 << 63)
INT_MAX = (1 << 64) - 1
"""Integers must fit in 64 bits, signed or unsigned, as in Go and most JSON parsers."""
MAX_PROBLEMS = 50
"""At most this many faults are listed; one more line says that others were left out."""
_SHOWN_KEY = 60  # characters of a long key shown in a path

Problem = tuple[str, str]


class JsonError(ValueError):
    """A document that is not strict JSON.

    `problems` lists (JSON path, fault) pairs. A syntax error is one problem, and `line` and
    `column` say where it is; a well-formed document with faults (`well_formed`) keeps its
    lenient parse in `document`, e.g. to answer a JSON-RPC request by its id.
    """

    def __init__(
        self,
        problems: list[Problem],
        *,
        line: int | None = None,
        column: int | None = None,
        document: Any = None,
        well_formed: bool = False,
    ) -> None:
        self.problems = problems
        self.line = line
        self.column = column
        self.document = document
        self.well_formed = well_formed
        super().__init__("; ".join(f"{p}: {f}" if p else f for p, f in problems))


class _BigInt:
    """An integer literal too long to be within 64 bits, kept as text for the message."""

    __slots__ = ("digits",)

    def __init__(self, digits: str) -> None:
        self.digits = digits


def loads(data: bytes | bytearray | memoryview | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value in `data`, or `JsonError` naming every fault (path, line and column)."""
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError as error:
            line, column = _position(data, error.start)
            fault = f"not valid Unicode: a lone surrogate at line {line} column {column}"
            raise JsonError([("", fault)], line=line, column=column) from None
    else:
        raw = bytes(data)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise _syntax_error(raw, error, max_depth) from None
    if raw.count(b"[") + raw.count(b"{") > max_depth and _deeper_than(value, max_depth):
        found = problems(value, max_depth=max_depth)
        raise JsonError(found, document=value, well_formed=True)
    # Fast path: what orjson itself wrote (our own clients) has no duplicate keys and no
    # integer beyond 64 bits, as either would not encode back to the same bytes.
    if orjson.dumps(value) == raw:
        return value
    duplicates: dict[int, tuple[dict[str, Any], list[str]]] = {}
    try:
        strict = json.loads(raw, object_pairs_hook=_pairs(duplicates), parse_int=_int)
    except (ValueError, RecursionError) as error:  # orjson took it; should not happen
        raise JsonError([("", f"not valid JSON: {error}")]) from None
    found = problems(strict, max_depth=max_depth, _duplicates=duplicates)
    if found:
        raise JsonError(found, document=value, well_formed=True)
    return strict


def problems(
    value: Any,
    *,
    max_depth: int = MAX_DEPTH,
    prefix: str = "",
    _duplicates: dict[int, tuple[dict[str, Any], list[str]]] | None = None,
) -> list[Problem]:
    """The faults of a Python value as a JSON document, each with its path under `prefix`.

    Checks nesting, integer range, finite numbers, string keys, valid Unicode (no lone
    surrogates) and that every value is JSON (dict, list, tuple, str, number, bool, None).
    """
    found: list[Problem] = []
    stack: list[tuple[Any, str, int]] = [(value, prefix, 1)]
    while stack and len(found) <= MAX_PROBLEMS:
        item, path, depth = stack.pop()
        if isinstance(item, dict):
            if depth > max_depth:
                found.append((path, f"nested deeper than {max_depth} levels"))
                continue
            if _duplicates and id(item) in _duplicates:
                for key in _duplicates[id(item)][1]:
                    found.append((join_key(path, key), "given more than once in this object"))
            children = []
            for key, child in item.items():
                if not isinstance(key, str):
                    found.append((path, f"keys must be strings, not {type(key).__name__}"))
                    continue
                where = join_key(path, key)
                if not _valid_text(key):
                    found.append((where, "the key is not valid Unicode (a lone surrogate)"))
                children.append((child, where, depth + 1))
            stack.extend(reversed(children))
        elif isinstance(item, list | tuple):
            if depth > max_depth:
                found.append((path, f"nested deeper than {max_depth} levels"))
                continue
            stack.extend(
                (child, f"{path}[{i}]", depth + 1) for i, child in reversed(list(enumerate(item)))
            )
        else:
            fault = _scalar_fault(item)
            if fault:
                found.append((path, fault))
    if len(found) > MAX_PROBLEMS:
        del found[MAX_PROBLEMS:]
        found.append(("", "(more faults not shown)"))
    return found


def join_key(path: str, key: str) -> str:
    """The path of `key` in the object at `path`: a very long key is shortened, and one with
    characters a terminal would not show is quoted (`Tags["a\\u0000"]`)."""
    shown = key if len(key) <= _SHOWN_KEY else key[: _SHOWN_KEY - 3] + "..."
    if not shown.isprintable():
        return f"{path}[{json.dumps(shown)}]"
    return f"{path}.{shown}" if path else shown


def _scalar_fault(item: Any) -> str:
    if item is None or isinstance(item, bool):
        return ""
    if isinstance(item, str):
        return "" if _valid_text(item) else "not valid Unicode (a lone surrogate)"
    if isinstance(item, int):
        if INT_MIN <= item <= INT_MAX:
            return ""
        return "an integer beyond 64 bits"
    if isinstance(item, float):
        return "" if math.isfinite(item) else f"{item} is not a JSON number"
    if isinstance(item, _BigInt):
        return f"an integer beyond 64 bits ({len(item.digits.lstrip('-'))} digits)"
    return f"not a JSON value ({type(item).__name__})"


def _valid_text(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _deeper_than(value: Any, max_depth: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _pairs(
    duplicates: dict[int, tuple[dict[str, Any], list[str]]],
) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """An `object_pairs_hook` that notes each object's repeated keys (the object is kept, so
    that its id cannot be reused by another while the notes are read)."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            repeated: list[str] = []
            for key, _ in pairs:
                if key in seen and key not in repeated:
                    repeated.append(key)
                seen.add(key)
            duplicates[id(obj)] = (obj, repeated)
        return obj

    return hook


def _int(text: str) -> int | _BigInt:
    return int(text) if len(text) <= 20 else _BigInt(text)


def _syntax_error(raw: bytes, error: orjson.JSONDecodeError, max_depth: int) -> JsonError:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        line = raw.count(b"\n", 0, bad.start) + 1
        column = bad.start - (raw.rfind(b"\n", 0, bad.start) + 1) + 1
        fault = f"not valid UTF-8 ({bad.reason}) at line {line} column {column}"
        return JsonError([("", fault)], line=line, column=column)
    message = error.msg
    line, column = error.lineno, error.colno
    if "infinity when parsed" in message:
        message = "a number too large (integers must fit in 64 bits, others in a double)"
    elif "depth limit" in message:
        message = f"nested deeper than {max_depth} levels"
    elif (
        text[max(0, error.pos - 1) : error.pos + 9]
        .lstrip("-:, \t\r\n[")
        .startswith(("NaN", "Infinity"))
    ):
        message = "NaN and Infinity are not JSON numbers"
    elif "surrogate" in message:
        message = f"a lone surrogate escape is not a character ({message})"
    elif "BOM" in message:
        message = "starts with a byte order mark (save it as UTF-8 without one)"
    return JsonError(
        [("", f"not valid JSON: {message} at line {line} column {column}")],
        line=line,
        column=column,
    )


def _position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1
