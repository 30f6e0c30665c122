"""JSON documents as pydantic models, read the way InfraKit's Go decoding read them, for specs,
cluster files, plugin options and plugin properties alike.

Keys match in any letter case (Go's `encoding/json` did, so users' files may say `image` for
`Image`); unknown keys and keys given twice in different cases are faults; every fault is
reported at once, as a (JSON path, reason) pair in words a user can act on.

A validator that finds faults below the value it checks (at a sibling's key, at list items)
reports them with `Faults`, so that they get their own paths and do not stop other checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidatorFunctionWrapHandler, model_validator
from pydantic import ValidationError as PydanticError
from pydantic_core import InitErrorDetails

from actors.strict_json import MAX_PROBLEMS, join_key
from infrakit.spi.errors import SpecError

Problem = tuple[str, str]
Loc = tuple[int | str, ...]
M = TypeVar("M", bound="JsonModel")


class Faults:
    """Faults found by one validator, each at a path below the value it checks; `check()`
    raises them together, so that pydantic reports each at its own path after the value's.

    Raise faults only through `check` (a `ValueError` stops the validator at its first fault
    and is reported at the value itself).
    """

    def __init__(self) -> None:
        self.found: list[tuple[Loc, str, Any]] = []

    def add(self, reason: str, *loc: int | str, value: Any = None) -> None:
        """A fault at `loc` below the checked value (`()`: the value itself)."""
        self.found.append((loc, reason, value))

    def check(self) -> None:
        """Raise every fault added, if any."""
        if self.found:
            raise fault_error(self.found)


def fault_error(found: Sequence[tuple[Loc, str, Any]]) -> PydanticError:
    """pydantic's error for (location, reason, value) faults, as a validator may raise it."""
    return PydanticError.from_exception_data("faults", _details(found))


def _details(found: Sequence[tuple[Loc, str, Any]]) -> list[InitErrorDetails]:
    return [
        InitErrorDetails(
            type="value_error", loc=loc, input=value, ctx={"error": ValueError(reason)}
        )
        for loc, reason, value in found
    ]


class JsonModel(BaseModel):
    """Base for every model of a JSON document: InfraKit key names in any letter case, unknown
    keys refused (naming the known ones), values never coerced, every fault reported.

    `null_is_absent`: a key whose value is `null` counts as not given (as plugin properties
    have always read), instead of a value of the wrong type.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=False, strict=True, frozen=True)
    null_is_absent: ClassVar[bool] = False

    @model_validator(mode="wrap")
    @classmethod
    def _keys_in_any_case(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if not isinstance(data, Mapping):
            return handler(data)
        folded, found = _fold(cls, data)
        try:
            model = handler(folded)
        except PydanticError as error:
            raise _with_aliases(cls, error, found) from None
        if found:
            raise fault_error(found)
        return model

    @classmethod
    def fold_keys(cls, data: Any) -> Any:
        """`data` with keys renamed to this model's key names where they match but for case
        (for a document known to be valid: faults are not reported here)."""
        if not isinstance(data, Mapping):
            return data
        return _fold(cls, data)[0]


_KEYS: dict[type[JsonModel], tuple[dict[str, str], dict[str, str]]] = {}


def _key_names(model: type[JsonModel]) -> tuple[dict[str, str], dict[str, str]]:
    """(lower-case key -> key, field name -> key) of a model's fields, made once."""
    names = _KEYS.get(model)
    if names is None:
        keys = {name: field.alias or name for name, field in model.model_fields.items()}
        names = _KEYS[model] = ({key.lower(): key for key in keys.values()}, keys)
    return names


def _fold(model: type[JsonModel], data: Mapping[Any, Any]) -> tuple[dict[Any, Any], list[Any]]:
    """`data` with its keys renamed to `model`'s where they match but for case, less unknown
    keys and repeats, which are returned as faults (location, reason, value)."""
    canonical = _key_names(model)[0]
    folded: dict[Any, Any] = {}
    given: dict[str, Any] = {}
    found: list[tuple[Loc, str, Any]] = []
    for key, value in data.items():
        name = canonical.get(str(key).lower())
        if name is None:
            found.append(((str(key),), _unknown(key, canonical.values()), value))
        elif name in given:
            found.append(
                (
                    (name,),
                    f"{given[name]!r} and {key!r} are the same key (keys match in any letter case)",
                    value,
                )
            )
        else:
            given[name] = key
            if not (value is None and model.null_is_absent):  # null: as if not given
                folded[name] = value
    return folded, found


def _unknown(key: Any, known: Any) -> str:
    names = ", ".join(known)
    return f"unknown key {shown(str(key))} (expected {f'one of: {names}' if names else 'none'})"


def _with_aliases(model: type[JsonModel], error: PydanticError, found: list[Any]) -> PydanticError:
    """`error` with the key faults `found` added, and a location that names a field (pydantic
    does, for a default it validates) put as its key."""
    keys = _key_names(model)[1]
    if not found and not any(
        item["loc"] and keys.get(str(item["loc"][0]), item["loc"][0]) != item["loc"][0]
        for item in error.errors(include_url=False)
    ):
        return error
    details = _details(found)
    for item in error.errors(include_url=False):
        loc = item["loc"]
        if loc and isinstance(loc[0], str) and loc[0] in keys:
            loc = (keys[loc[0]], *loc[1:])
        detail = InitErrorDetails(type=item["type"], loc=loc, input=item["input"])
        if "ctx" in item:
            detail["ctx"] = item["ctx"]
        details.append(detail)
    return PydanticError.from_exception_data(error.title, details)


def parse(
    model: type[M],
    data: Any,
    *,
    source: str = "",
    prefix: str = "",
    context: Mapping[str, Any] | None = None,
) -> M:
    """`data` as `model`; a `SpecError` names every fault, its path under `prefix`. `context`
    is for the validators (pydantic's validation context)."""
    try:
        return model.model_validate(data, context=context)
    except PydanticError as error:
        raise SpecError(problems(error, prefix), source) from None


# -- faults in words ------------------------------------------------------------------------


def problems(error: PydanticError, prefix: str = "") -> list[Problem]:
    """(JSON path, reason) for each fault of `error` (the first `MAX_PROBLEMS`), the paths
    under `prefix`."""
    found: list[Problem] = []
    for item in error.errors(include_url=False, include_context=True, include_input=True):
        if len(found) >= MAX_PROBLEMS:
            found.append(("", f"(and {error.error_count() - MAX_PROBLEMS} more faults)"))
            break
        found.append((json_path(item["loc"], prefix), _fault(item)))
    return found


def json_path(loc: Sequence[int | str], prefix: str = "") -> str:
    """The JSON path of a pydantic location under `prefix`: `Mounts[0].Target`."""
    out = prefix
    for part in loc:
        out = f"{out}[{part}]" if isinstance(part, int) else join_key(out, part)
    return out


def shown(value: Any) -> str:
    """`value`'s repr, shortened: a fault message must not repeat a 100,000-character input."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def describe_type(value: Any) -> str:
    """What a JSON value is, in words: `a string`, `null`, `an object`..."""
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


_WHOLE = "must be a whole number, got {type} {shown}"
# What each of pydantic's error types says, in words: `{type}` is what the value is, `{shown}`
# the value itself (shortened), `{length}` its length; other names are the error's context.
_SAYS: dict[str, str] = {
    "missing": "is required",
    "extra_forbidden": "unknown key",
    "greater_than_equal": "must be >= {ge}, got {shown}",
    "less_than_equal": "must be <= {le}, got {shown}",
    "too_short": "must not be empty",
    "too_long": "must have at most {max_length} items, got {actual_length}",
    "string_too_short": "must not be blank",
    "string_too_long": "must be at most {max_length} characters, got {length}",
    "string_pattern_mismatch": "must be letters, digits, '.', '_' or '-', got {shown}",
    "literal_error": "must be one of {expected}, got {shown}",
    "int_type": _WHOLE,
    "int_parsing": _WHOLE,
    "int_from_float": _WHOLE,
    "float_type": "must be a number, got {type} {shown}",
    "bool_type": "must be true or false, got {type} {shown}",
    "string_type": "must be a string, got {type}",
    "model_type": "must be an object, got {type}",
    "dict_type": "must be an object, got {type}",
    "model_attributes_type": "must be an object, got {type}",
    "tuple_type": "must be a list, got {type}",
    "list_type": "must be a list, got {type}",
}


def _fault(error: Mapping[str, Any]) -> str:
    value = error.get("input")
    ctx = error.get("ctx") or {}
    says = _SAYS.get(error["type"])
    if says is not None:
        return says.format_map(_Words(ctx, value))
    if error["type"] == "value_error":
        return str(ctx.get("error", error["msg"]))
    return str(error["msg"])


class _Words(dict[str, Any]):
    """An error's context, and on demand (a huge value is not shown for nothing) the words for
    its value: `type`, `shown`, `length`."""

    def __init__(self, ctx: Mapping[str, Any], value: Any) -> None:
        super().__init__(ctx)
        self.value = value

    def __missing__(self, name: str) -> Any:
        if name == "type":
            return describe_type(self.value)
        if name == "shown":
            return shown(self.value)
        if name == "length":
            return len(str(self.value))
        raise KeyError(name)
