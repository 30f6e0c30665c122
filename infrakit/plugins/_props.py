"""Helpers for checking plugin properties the way InfraKit's Go JSON decoding accepted them, and
for reporting every fault at once rather than the first."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from infrakit.spi.errors import ValidationError

T = TypeVar("T")
_SHOWN_KEY = 60  # characters of a long key shown in a path


class Faults:
    """Collects the faults of a plugin's properties so that all of them are reported at once.

    Parse each part with `take`: a `ValidationError` there is recorded and a default used, and
    parsing goes on. `check()` then raises one `ValidationError` carrying every fault.
    """

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def add(self, reason: str, path: str = "") -> None:
        self.problems.append((path, reason))

    def take(self, parse: Callable[[], T], default: T) -> T:
        """`parse()`, or `default` with its faults recorded."""
        try:
            return parse()
        except ValidationError as error:
            self.problems.extend(error.problems)
            return default

    def optional(
        self, fields: Mapping[str, Any], key: str, parse: Callable[[Any], T], default: T
    ) -> T:
        """`parse(fields[key])` if the key is given and not null, else `default`; a fault in
        it is recorded (and `default` returned)."""
        value = fields.get(key)
        return default if value is None else self.take(lambda: parse(value), default)

    def check(self) -> None:
        """Raise a `ValidationError` with every recorded fault, if there is any."""
        if self.problems:
            raise ValidationError.of(self.problems)


def join_path(parent: str, key: str) -> str:
    """The JSON path of `key` inside the object at `parent` (`""` is the root); a very long
    key is shortened, so that a message never repeats a huge input."""
    if len(key) > _SHOWN_KEY:
        key = key[: _SHOWN_KEY - 3] + "..."
    if not key.isprintable():
        return f"{parent}[{json.dumps(key)}]"  # quoted, so a terminal shows what it is
    return f"{parent}.{key}" if parent else key


def object_fields(
    value: Any, known: Iterable[str], path: str = "", faults: Faults | None = None
) -> dict[str, Any]:
    """Map the keys of JSON object `value` onto the `known` field names, case-insensitively.

    Go's `encoding/json` matched field names ignoring case, so InfraKit users' files may say
    `init` for `Init`. Unknown keys and keys given twice (in different cases) are faults; so
    is a `value` that is not an object. With `faults`, they are recorded there and the known
    fields returned; without, they are raised together as one `ValidationError`.
    """
    found = Faults() if faults is None else faults
    out: dict[str, Any] = {}
    if not isinstance(value, dict):
        found.add("must be an object", path)
    else:
        by_lower = {name.lower(): name for name in known}
        for key, item in value.items():
            name = by_lower.get(str(key).lower())
            if name is None:
                expected = ", ".join(by_lower.values())
                found.add(
                    f"unknown key {key!r} (expected one of: {expected})", join_path(path, str(key))
                )
            elif name in out:
                found.add(f"{name!r} given more than once", join_path(path, name))
            else:
                out[name] = item
    if faults is None:
        found.check()
    return out


def string_list(value: Any, path: str, *, non_empty: bool = False) -> list[str]:
    """Check that `value` is a JSON list of strings and return it (every bad item reported)."""
    if not isinstance(value, list):
        raise ValidationError("must be a list of strings", path=path)
    if non_empty and not value:
        raise ValidationError("must not be empty", path=path)
    faults = Faults()
    for i, item in enumerate(value):
        if not isinstance(item, str):
            faults.add("must be a string", f"{path}[{i}]")
    faults.check()
    return list(value)


def string_map(value: Any, path: str) -> dict[str, str]:
    """Check that `value` is a JSON object of string values and return it (every bad value
    reported)."""
    if not isinstance(value, dict):
        raise ValidationError("must be an object of strings", path=path)
    faults = Faults()
    for key, item in value.items():
        if not isinstance(item, str):
            faults.add("must be a string", join_path(path, str(key)))
    faults.check()
    return {str(k): v for k, v in value.items()}
