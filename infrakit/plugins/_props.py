"""Helpers for checking plugin properties the way InfraKit's Go JSON decoding accepted them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from infrakit.spi.errors import ValidationError


def join_path(parent: str, key: str) -> str:
    """The JSON path of `key` inside the object at `parent` (`""` is the root)."""
    return f"{parent}.{key}" if parent else key


def object_fields(value: Any, known: Iterable[str], path: str = "") -> dict[str, Any]:
    """Map the keys of JSON object `value` onto the `known` field names, case-insensitively.

    Go's `encoding/json` matched field names ignoring case, so InfraKit users' files may say
    `init` for `Init`. Unknown keys and keys given twice (in different cases) raise
    `ValidationError`; so does a `value` that is not an object.
    """
    if not isinstance(value, dict):
        raise ValidationError("must be an object", path=path)
    by_lower = {name.lower(): name for name in known}
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = by_lower.get(str(key).lower())
        if name is None:
            expected = ", ".join(by_lower.values())
            raise ValidationError(
                f"unknown key {key!r} (expected one of: {expected})", path=join_path(path, str(key))
            )
        if name in out:
            raise ValidationError(f"{name!r} given more than once", path=join_path(path, name))
        out[name] = item
    return out


def string_list(value: Any, path: str, *, non_empty: bool = False) -> list[str]:
    """Check that `value` is a JSON list of strings and return it."""
    if not isinstance(value, list):
        raise ValidationError("must be a list of strings", path=path)
    if non_empty and not value:
        raise ValidationError("must not be empty", path=path)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ValidationError("must be a string", path=f"{path}[{i}]")
    return list(value)


def string_map(value: Any, path: str) -> dict[str, str]:
    """Check that `value` is a JSON object of string values and return it."""
    if not isinstance(value, dict):
        raise ValidationError("must be an object of strings", path=path)
    for key, item in value.items():
        if not isinstance(item, str):
            raise ValidationError("must be a string", path=join_path(path, str(key)))
    return {str(k): v for k, v in value.items()}
