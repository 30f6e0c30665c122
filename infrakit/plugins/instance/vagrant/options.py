"""The vagrant instance plugin's properties (keys in any letter case, as Go's JSON decoding read
them):

- `Provider`: the Vagrant provider, default `"docker"`; any other (`"virtualbox"`, `"libvirt"`...)
  makes a VM from `Box` and runs `boot.sh` as a shell provisioner during `vagrant up`.
- `Box`: the box name; required unless the provider is docker.
- `CPUs` (default 2) and `Memory` in MB (default 512): the VM's size. With the docker provider
  they become `--cpus`/`--memory` only when given explicitly.
- `Docker`: the docker provider's settings, `{"Image" (required), "Cmd", "Name", "NetworkMode",
  "Env", "Ports", "Volumes", "Privileged", "CreateArgs"}`. The container is the machine; it has
  no SSH, so Vagrant cannot run a shell provisioner in it. Instead the container's command runs
  `/vagrant/boot.sh` from the synced instance directory, writes its exit status to `boot.status`
  there and keeps the machine up (as a VM stays up after provisioning). A `Cmd` of your own
  replaces that command (it can run `/vagrant/boot.sh` itself). `Name` prefixes the container
  name, `<Name>-<instance id>` (default `infrakit-<instance id>`), so a group's machines never
  clash; `NetworkMode` is `docker run --network`.
- `Template`: the path of a Vagrantfile template of your own (see `vagrantfile.py`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator

from infrakit.jsonmodel import Faults
from infrakit.plugins._props import EnvMap, NonEmpty, PropertiesModel, Strings, non_empty, parse

DEFAULT_PROVIDER = "docker"
MAX_CPUS = 4096
MAX_MEMORY_MB = 1 << 24  # 16 TiB
_PROVIDER_RE = re.compile(r"[a-z][a-z0-9_-]*")
_CONTAINER_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def _positive(maximum: int) -> Callable[[Any], int]:
    """A validator of an integer from 1 to `maximum`."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
            raise ValueError(f"must be a positive integer, at most {maximum}")
        return value

    return check


def _provider_name(provider: str) -> str:
    if not _PROVIDER_RE.fullmatch(provider):
        raise ValueError("not a Vagrant provider name")
    return provider


def _container_name(name: str) -> str:
    if not _CONTAINER_NAME_RE.fullmatch(name):
        raise ValueError(
            "must be letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return name


def _template_path(value: Any) -> Path:
    return Path(non_empty(value)).expanduser()


class DockerOptions(PropertiesModel):
    """The `Docker` property: settings of Vagrant's docker provider."""

    image: NonEmpty = Field(alias="Image")
    cmd: Annotated[Strings, Field(min_length=1)] | None = Field(default=None, alias="Cmd")
    name: Annotated[NonEmpty, AfterValidator(_container_name)] | None = Field(
        default=None, alias="Name"
    )
    network_mode: NonEmpty | None = Field(default=None, alias="NetworkMode")
    env: EnvMap = Field(default_factory=dict, alias="Env")
    ports: Strings = Field(default_factory=list, alias="Ports")
    volumes: Strings = Field(default_factory=list, alias="Volumes")
    privileged: bool = Field(default=False, alias="Privileged")
    create_args: Strings = Field(default_factory=list, alias="CreateArgs")


class VagrantOptions(PropertiesModel):
    """The instance properties this plugin understands (see the module's doc). `Provider` comes
    first: what else is required depends on it."""

    provider: Annotated[NonEmpty, AfterValidator(_provider_name)] = Field(
        default=DEFAULT_PROVIDER, alias="Provider"
    )
    box: NonEmpty | None = Field(default=None, alias="Box", validate_default=True)
    cpus: Annotated[int, BeforeValidator(_positive(MAX_CPUS))] | None = Field(
        default=None, alias="CPUs"
    )  # None: DEFAULT_CPUS for a VM, unset for a container
    memory: Annotated[int, BeforeValidator(_positive(MAX_MEMORY_MB))] | None = Field(
        default=None, alias="Memory"
    )  # None: DEFAULT_MEMORY for a VM, unset for a container
    template: Annotated[Path, BeforeValidator(_template_path)] | None = Field(
        default=None, alias="Template"
    )
    docker: DockerOptions | None = Field(default=None, alias="Docker", validate_default=True)

    @field_validator("box")
    @classmethod
    def _box_for_a_vm(cls, box: str | None, info: ValidationInfo) -> str | None:
        provider = info.data.get("provider")
        if box is None and provider not in (None, DEFAULT_PROVIDER):
            raise ValueError(f"is required with Provider {provider!r}")
        return box

    @field_validator("docker", mode="before")
    @classmethod
    def _docker_for_a_container(cls, docker: Any, info: ValidationInfo) -> Any:
        provider = info.data.get("provider")
        if provider == DEFAULT_PROVIDER and docker is None:
            faults = Faults()
            faults.add(f'is required with Provider "{DEFAULT_PROVIDER}"', "Image")
            faults.check()
        if provider not in (None, DEFAULT_PROVIDER) and docker is not None:
            raise ValueError(f'is only used with Provider "{DEFAULT_PROVIDER}", not {provider!r}')
        return docker


def parse_options(properties: Any) -> VagrantOptions:
    """Check instance properties and return them parsed; every fault raises one
    `ValidationError`, each with its JSON path."""
    return parse(VagrantOptions, properties)
