"""InfraKit's config hash: which instances carry the group's current configuration.

The hash is SHA-1 over the canonical JSON of the group's `Instance` section followed by the
canonical JSON of its `Flavor` section, encoded as lowercase base32 without padding. The
canonical form is what Go InfraKit produced with `json.MarshalIndent(v, "  ", "  ")` after a
round trip through `interface{}` (see docs/config-hash.md), so hashes match InfraKit's and an
InfraKit-made instance is not rolled needlessly. `Allocation` is not hashed: resizing never rolls.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from decimal import Decimal
from typing import Any

_PREFIX = "  "
_INDENT = "  "

# Go's encoding/json escapes these in strings (HTML safety and JS line separators).
_GO_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _go_string(text: str) -> str:
    out = ['"']
    for char in text:
        escaped = _GO_ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif ord(char) < 0x20:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _go_number(value: int | float) -> str:
    """Go prints every JSON number as a float64: 3 -> "3", 1e21 -> "1e+21", 1e-7 -> "1e-7"."""
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"unsupported number in config: {value!r}")
    if number == 0:
        return "0"
    magnitude = abs(number)
    if magnitude < 1e-6 or magnitude >= 1e21:
        # Python's repr is Go's shortest 'e' form ("1e-07", "1e+21"); Go's JSON then drops the
        # leading zero of a negative two-digit exponent.
        return re.sub(r"e-0(\d)$", r"e-\1", repr(number))
    text = format(Decimal(repr(number)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _encode(value: Any, depth: int, out: list[str]) -> None:
    newline = "\n" + _PREFIX + _INDENT * depth
    inner = "\n" + _PREFIX + _INDENT * (depth + 1)
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_go_string(value))
    elif isinstance(value, int | float):
        out.append(_go_number(value))
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        out.append("{")
        for index, key in enumerate(sorted(value, key=str)):
            out.append(("," if index else "") + inner + _go_string(str(key)) + ": ")
            _encode(value[key], depth + 1, out)
        out.append(newline + "}")
    elif isinstance(value, list | tuple):
        if not value:
            out.append("[]")
            return
        out.append("[")
        for index, item in enumerate(value):
            out.append(("," if index else "") + inner)
            _encode(item, depth + 1, out)
        out.append(newline + "]")
    else:
        raise TypeError(f"not JSON data: {type(value).__name__}")


def canonical_json(value: Any) -> str:
    """Go InfraKit's stable format of `value`: sorted keys, prefix and indent of two spaces."""
    out: list[str] = []
    _encode(value, 0, out)
    return "".join(out)


def config_hash(instance: Any, flavor: Any) -> str:
    """The hash of a group's `Instance` and `Flavor` sections ({"Plugin", "Properties"} each)."""
    digest = hashlib.sha1()
    digest.update(canonical_json(instance).encode("utf-8"))
    digest.update(canonical_json(flavor).encode("utf-8"))
    return base64.b32encode(digest.digest()).decode("ascii").lower().rstrip("=")


def legacy_config_hash(instance: Any, flavor: Any) -> str:
    """InfraKit v0.1's encoding of the same digest (URL-safe base64 with padding), for adoption."""
    digest = hashlib.sha1()
    digest.update(canonical_json(instance).encode("utf-8"))
    digest.update(canonical_json(flavor).encode("utf-8"))
    return base64.urlsafe_b64encode(digest.digest()).decode("ascii")
