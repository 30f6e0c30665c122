"""Go-style durations ("1m30s", "500ms", "2s"), as InfraKit's JSON carried them."""

from __future__ import annotations

import re

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(value: str | int | float) -> float:
    """Seconds in `value`: a Go duration string, or a plain number of seconds.

    Raises ValueError with the offending text, e.g. "not a duration: '2 parsecs'".
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"must not be negative, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"not a duration: {value!r}")
    text = value.strip()
    if text in ("0", ""):
        if text == "":
            raise ValueError("not a duration: ''")
        return 0.0
    sign = 1.0
    if text[0] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    total, pos = 0.0, 0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None:
            raise ValueError(f"not a duration: {value!r} (expected e.g. '500ms', '10s', '1m30s')")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if sign < 0 and total > 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return total


def format_duration(seconds: float) -> str:
    """A short readable form of `seconds` ("250ms", "3s", "1m30s") for messages."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s" if rest else f"{minutes}m"
