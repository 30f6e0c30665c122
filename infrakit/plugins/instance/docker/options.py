"""The Docker instance plugin's properties, modelled on `docker run` (keys in any letter case, as
Go's JSON decoding read them):

    {"Image": "busybox:latest",             required; never pulled
     "Cmd": ["sh", "-c", "..."],            list, or a string split like a shell would
     "Entrypoint": ["/bin/sh"],             list or string
     "Env": {"K": "V"} or ["K=V"],
     "Labels": {"k": "v"},                  extra container labels (the spec's tags win)
     "NetworkMode": "none",                 the default: a container gets no network unless asked
     "Mounts": [{"Source": "/srv", "Target": "/data", "Type": "bind", "ReadOnly": true}],
     "Privileged": false, "Hostname": "...", "User": "...", "WorkingDir": "/abs/path",
     "Memory": 268435456 or "256m",         bytes; k/m/g/t suffixes are powers of 1024
     "CPUs": 0.5}                           -> NanoCPUs
"""

from __future__ import annotations

import math
import re
import shlex
from typing import Annotated, Any

from docker.types import Mount
from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from infrakit.jsonmodel import Faults, shown
from infrakit.plugins._props import (
    Command,
    EnvMap,
    NonEmpty,
    PropertiesModel,
    StringMap,
    Text,
    parse,
)

DEFAULT_NETWORK_MODE = "none"
# Private labels: the plugin's own memory, not shown as tags.
PRIVATE_PREFIX = "infrakit.docker."
LABEL_LOGICAL_ID = PRIVATE_PREFIX + "logical_id"

MOUNT_TYPES = ("bind", "volume", "tmpfs")
# Docker refuses memory limits below 6 MiB.
MIN_MEMORY = 6 * 1024 * 1024
MAX_MEMORY = 1 << 50
_MEMORY_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_memory(value: Any) -> int:
    """Bytes from a number or a string such as `"256m"`, `"1.5g"`, `"512MiB"` (binary units);
    `ValueError` if it is neither."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        match = _MEMORY_RE.fullmatch(value)
        if match is not None:
            number, unit = match.groups()
            return int(float(number) * _MEMORY_UNITS[unit.lower()])
    raise ValueError(f"must be a number of bytes or a size such as '256m', got {shown(value)}")


def _memory(value: Any) -> int:
    memory = parse_memory(value)
    if memory < MIN_MEMORY:
        raise ValueError(f"must be at least 6 MiB (Docker's minimum), got {memory} bytes")
    if memory > MAX_MEMORY:
        raise ValueError(f"must be at most 1 PiB, got {memory} bytes")
    return memory


def _cpus(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number of CPUs, such as 0.5")
    if not math.isfinite(value) or value < 0.01:
        raise ValueError(f"must be at least 0.01, got {value}")
    return float(value)


def _absolute(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError("must be an absolute path")
    return path


def _argv(value: Any) -> Any:
    """A command: a list of strings, or one string split the way a shell would."""
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split into arguments: {exc}") from None
        if not argv:
            raise ValueError("must not be empty")
        return argv
    if not isinstance(value, list):
        raise ValueError("must be a list of strings or a string")
    return value


def _env_list(value: Any) -> Any:
    """`["K=V", ...]` as `{"K": "V"}` (an object passes as it is)."""
    if isinstance(value, dict):
        return value
    if not isinstance(value, list):
        raise ValueError("must be an object of strings or a list of NAME=value")
    env: dict[str, str] = {}
    faults = Faults()
    for i, item in enumerate(value):
        if not isinstance(item, str):
            faults.add("must be a string", i, value=item)
            continue
        key, sep, text = item.partition("=")
        if not sep or not key or "\0" in item:
            faults.add("must look like NAME=value", i, value=item)
        env[key] = text
    faults.check()
    return env


def _label_names(labels: dict[str, str]) -> dict[str, str]:
    faults = Faults()
    for key in labels:
        if not key or "\0" in key:
            faults.add("not a valid label name", key)
        elif key.startswith(PRIVATE_PREFIX):
            faults.add(f"labels starting with {PRIVATE_PREFIX!r} are the plugin's own", key)
    faults.check()
    return labels


Absolute = Annotated[Text, AfterValidator(_absolute)]
Argv = Annotated[Command, BeforeValidator(_argv)]


class MountOptions(PropertiesModel):
    """One entry of `Mounts`. Without a `Type`, as `docker run -v`: an absolute `Source` is a
    bind mount, a name is a volume."""

    target: Absolute = Field(alias="Target")
    source: NonEmpty | None = Field(default=None, alias="Source")
    given_type: str | None = Field(default=None, alias="Type")
    read_only: bool = Field(default=False, alias="ReadOnly")

    @field_validator("given_type", mode="before")
    @classmethod
    def _known_type(cls, kind: Any) -> Any:
        if not isinstance(kind, str) or kind.lower() not in MOUNT_TYPES:
            raise ValueError(f"must be one of {', '.join(MOUNT_TYPES)}, got {shown(kind)}")
        return kind.lower()

    @model_validator(mode="after")
    def _source_fits(self) -> MountOptions:
        faults = Faults()
        if self.type == "bind" and (self.source is None or not self.source.startswith("/")):
            faults.add("a bind mount needs an absolute host path", "Source")
        if self.type == "tmpfs" and self.source is not None:
            faults.add("a tmpfs mount has no source", "Source")
        faults.check()
        return self

    @property
    def type(self) -> str:
        """`bind`, `volume` or `tmpfs`."""
        if self.given_type is not None:
            return self.given_type
        return "bind" if self.source is not None and self.source.startswith("/") else "volume"

    def to_docker(self) -> Any:
        return Mount(
            target=self.target, source=self.source, type=self.type, read_only=self.read_only
        )


class DockerOptions(PropertiesModel):
    """The instance properties this plugin understands (see the module's doc)."""

    image: Text = Field(default=None, alias="Image", validate_default=True)
    cmd: Argv | None = Field(default=None, alias="Cmd")
    entrypoint: Argv | None = Field(default=None, alias="Entrypoint")
    env: Annotated[EnvMap, BeforeValidator(_env_list)] = Field(default_factory=dict, alias="Env")
    labels: Annotated[StringMap, AfterValidator(_label_names)] = Field(
        default_factory=dict, alias="Labels"
    )
    network_mode: Text = Field(default=DEFAULT_NETWORK_MODE, alias="NetworkMode")
    mounts: list[MountOptions] = Field(default_factory=list, alias="Mounts")
    privileged: bool = Field(default=False, alias="Privileged")
    hostname: Text | None = Field(default=None, alias="Hostname")
    memory: Annotated[int, BeforeValidator(_memory)] | None = Field(default=None, alias="Memory")
    cpus: Annotated[float, BeforeValidator(_cpus)] | None = Field(default=None, alias="CPUs")
    user: Text | None = Field(default=None, alias="User")
    working_dir: Absolute | None = Field(default=None, alias="WorkingDir")

    @field_validator("image", mode="before")
    @classmethod
    def _image_given(cls, image: Any) -> Any:
        if image is None:
            raise ValueError("is required (the image to run)")
        return image


def parse_options(properties: Any) -> DockerOptions:
    """Check instance properties and return them parsed; every fault raises one
    `ValidationError`, each with its JSON path."""
    return parse(DockerOptions, properties)
