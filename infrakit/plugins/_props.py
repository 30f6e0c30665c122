"""Plugin properties as pydantic models (`PropertiesModel`, `parse`) read the way InfraKit's Go
JSON decoding read them, with the value types several plugins share; every fault is reported at
once, as a `ValidationError` with the JSON path of each.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic import ValidationError as PydanticError

from infrakit import jsonmodel
from infrakit.jsonmodel import JsonModel, describe_type
from infrakit.spi.errors import ValidationError

M = TypeVar("M", bound=JsonModel)


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
