"""Plugin properties as pydantic models (`PropertiesModel`, `parse`) read the way InfraKit's Go
JSON decoding read them, with the value types several plugins share; every fault is reported at
once, as a `ValidationError` with the JSON path of each.

The older helpers below (`Faults`, `object_fields`...) serve the plugins not yet moved to models.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic import ValidationError as PydanticError

from infrakit import jsonmodel
from infrakit.jsonmodel import JsonModel, describe_type
from infrakit.spi.errors import ValidationError

T = TypeVar("T")
M = TypeVar("M", bound=JsonModel)
_SHOWN_KEY = 60  # characters of a long key shown in a path


class PropertiesModel(JsonModel):
    """Base of a plugin's properties: as every document (keys in any case, unknown keys
    refused), and a key whose value is `null` counts as not given."""

    null_is_absent = True


def parse(model: type[M], properties: Any) -> M:
    """`properties` (`None`: no properties, `{}`) as `model`; every fault raises one
    `ValidationError`, each with its JSON path under the properties."""
    try:
        return model.model_validate({} if properties is None else properties)
    except PydanticError as error:
        raise ValidationError.of(jsonmodel.problems(error)) from None


def non_empty(value: Any) -> str:
    """`value` if it is a string that is not empty; else `ValueError`."""
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return value


def _no_nul(value: str) -> str:
    if "\0" in value:
        raise ValueError("must not contain a NUL character")
    return value


def _list_of_strings(value: Any) -> Any:
    if not isinstance(value, list):
        raise ValueError(f"must be a list of strings, got {describe_type(value)}")
    return value


def _object_of_strings(value: Any) -> Any:
    if not isinstance(value, dict):
        raise ValueError(f"must be an object of strings, got {describe_type(value)}")
    return value


def _env_names(env: dict[str, str]) -> dict[str, str]:
    faults = jsonmodel.Faults()
    for key, text in env.items():
        if not key or "=" in key or "\0" in key or "\0" in text:
            faults.add("not a valid environment variable", key)
    faults.check()
    return env


NonEmpty = Annotated[str, BeforeValidator(non_empty)]
"""A string that is not empty."""
Text = Annotated[str, BeforeValidator(non_empty), AfterValidator(_no_nul)]
"""A string that is not empty and holds no NUL (it goes where C strings go: argv, a path)."""
Arg = Annotated[str, AfterValidator(_no_nul)]
"""A string that holds no NUL, empty or not (a command's argument)."""
Strings = Annotated[list[str], BeforeValidator(_list_of_strings)]
"""A list of strings."""
Command = Annotated[list[Arg], Field(min_length=1), BeforeValidator(_list_of_strings)]
"""A command and its arguments: a list of strings, not empty."""
StringMap = Annotated[dict[str, str], BeforeValidator(_object_of_strings)]
"""An object of strings."""
EnvMap = Annotated[dict[str, str], BeforeValidator(_object_of_strings), AfterValidator(_env_names)]
"""Environment variables: an object of strings whose keys are variable names."""


# -- the older helpers ----------------------------------------------------------------------


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
