"""Go-style durations ("1m30s", "500ms", "2s"), as InfraKit's JSON carried them, bounded.

Every duration a user gives is checked against a range: a timer set years ahead overflows the
clock arithmetic of whoever schedules it, so nothing longer than `MAX_DURATION` is accepted.
"""

from __future__ import annotations

import math
import re

MAX_DURATION = 7 * 24 * 3600.0
"""A week: no setting needs longer, and every timer stays far from any overflow."""

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
_MAX_TEXT = 64  # characters: "1h2m3.5s" is 8; anything this long is not a duration


def parse_duration(
    value: str | int | float, *, minimum: float = 0.0, maximum: float = MAX_DURATION
) -> float:
    """Seconds in `value`, a Go duration string or a plain number of seconds, within
    [`minimum`, `maximum`] (which is at most `MAX_DURATION`).

    Raises ValueError with the offending text, e.g. "not a duration: '2 parsecs'".
    """
    seconds = _seconds(value)
    if seconds < minimum:
        raise ValueError(f"must be at least {format_duration(minimum)}, got {_shown(value)}")
    if seconds > min(maximum, MAX_DURATION):
        limit = format_duration(min(maximum, MAX_DURATION))
        raise ValueError(f"must be at most {limit}, got {_shown(value)}")
    return seconds


def _seconds(value: str | int | float) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"not a duration: {_shown(value)}")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"not a duration: {value!r}")
        if value < 0:
            raise ValueError(f"must not be negative, got {_shown(value)}")
        return float(value)
    text = value.strip()
    if text == "0":
        return 0.0
    if not text or len(text) > _MAX_TEXT:
        raise ValueError(f"not a duration: {_shown(value)}")
    negative = text[0] == "-"
    if text[0] in "+-":
        text = text[1:]
    total, pos = 0.0, 0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None:
            raise ValueError(
                f"not a duration: {_shown(value)} (expected e.g. '500ms', '10s', '1m30s')"
            )
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not pos or not math.isfinite(total):
        raise ValueError(f"not a duration: {_shown(value)}")
    if negative and total > 0:
        raise ValueError(f"must not be negative, got {_shown(value)}")
    return total


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def format_duration(seconds: float) -> str:
    """A short readable form of `seconds` ("250ms", "3s", "1m30s", "2h") for messages."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    hours, rest = divmod(round(seconds), 3600)
    minutes = rest // 60
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"
