"""Read a JSON document (a group spec, a cluster file, plugin properties) strictly and within
bounds, the same way wherever it comes from: `infrakit validate`, `infrakit group commit`, the
runtime's cluster file.

The rules are `actors.strict_json`'s (no duplicate keys, no NaN, integers within 64 bits,
valid UTF-8, at most `MAX_DEPTH` levels), plus a size bound so that no file exhausts memory.
"""

from __future__ import annotations

import os
from typing import IO, Any

from actors.strict_json import MAX_DEPTH, JsonError, loads

__all__ = ["MAX_DEPTH", "MAX_DOCUMENT_BYTES", "JsonError", "load", "parse", "read"]

MAX_DOCUMENT_BYTES = 16 << 20
"""16 MiB: a cluster file of many groups fits; a commit is bounded by the wire's 1 MiB."""


def parse(data: bytes | str) -> Any:
    """The JSON value in `data`; `JsonError` names every fault (path, line and column)."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise _too_large(len(data))
    return loads(data, max_depth=MAX_DEPTH)


def load(path: str | os.PathLike[str]) -> Any:
    """The JSON document in the file at `path` (OSError if it cannot be read)."""
    with open(path, "rb") as file:
        return read(file)


def read(file: IO[bytes] | IO[str]) -> Any:
    """The JSON document in an open file, binary or text, read to its end."""
    raw = getattr(file, "buffer", file)  # a text file's bytes, so bad UTF-8 is ours to report
    data = raw.read(MAX_DOCUMENT_BYTES + 1)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise _too_large(len(data))
    return parse(data)


def _too_large(size: int) -> JsonError:
    shown = f"{size} bytes" if size <= MAX_DOCUMENT_BYTES else "more bytes"
    return JsonError([("", f"too large: {shown}; a document may be at most {MAX_DOCUMENT_BYTES}")])
