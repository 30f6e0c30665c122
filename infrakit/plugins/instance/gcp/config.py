"""Where the gcp plugin works: its options (a cluster file's `Plugins[i].Options`) and the
environment, read the way gcloud reads them.

    {"Project": "my-project",                   else $GOOGLE_CLOUD_PROJECT, $CLOUDSDK_CORE_PROJECT,
                                                or the project of the default credentials
     "Zone": "us-central1-a",                   else $CLOUDSDK_COMPUTE_ZONE
     "Endpoint": "http://127.0.0.1:8400",       the Compute API's root (emulators, private
                                                endpoints); plain http sends no credentials
     "OperationTimeout": "5m"}                  how long an insert or delete may take

One plugin works in one project and zone: a group's instances are listed by tags alone, so the
plugin can look only where it is told. A group elsewhere uses another plugin (another `Name`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field

from infrakit.duration import parse_duration
from infrakit.jsonmodel import describe_type, shown
from infrakit.plugins._props import PropertiesModel

PROJECT_VARIABLES = ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT")
ZONE_VARIABLE = "CLOUDSDK_COMPUTE_ZONE"
DEFAULT_OPERATION_TIMEOUT = 300.0
# Project IDs: 6 to 30 characters; older ones may be scoped by a domain ("example.com:proj").
_PROJECT = re.compile(r"(?:[a-z][-a-z0-9.]{0,62}[a-z0-9]:)?[a-z][-a-z0-9]{4,28}[a-z0-9]\Z")
_ZONE = re.compile(r"[a-z]+-[a-z]+[0-9]+-[a-z]\Z")


def check_project(value: Any) -> str:
    """`value` if it is a GCP project ID; else `ValueError` saying what one looks like."""
    if not isinstance(value, str):
        raise ValueError(f"must be a project ID, got {describe_type(value)}")
    if not _PROJECT.match(value):
        raise ValueError(
            "must be a project ID (6 to 30 lowercase letters, digits or '-', starting with a"
            f" letter), got {shown(value)}"
        )
    return value


def check_zone(value: Any) -> str:
    """`value` if it is a zone name such as `us-central1-a`; else `ValueError`."""
    if not isinstance(value, str):
        raise ValueError(f"must be a zone name, got {describe_type(value)}")
    if not _ZONE.match(value):
        raise ValueError(f"must be a zone name such as 'us-central1-a', got {shown(value)}")
    return value


def _endpoint(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a URL, got {describe_type(value)}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ValueError(
            "must be an http:// or https:// URL such as 'http://127.0.0.1:8400',"
            f" got {shown(value)}"
        )
    return value.rstrip("/")


def _timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"must be a duration like '5m', got {describe_type(value)}")
    return parse_duration(value, minimum=1.0, maximum=3600.0)


Project = Annotated[str, BeforeValidator(check_project)]
Zone = Annotated[str, BeforeValidator(check_zone)]


class GcpPluginOptions(PropertiesModel):
    """The gcp plugin's options (see the module's doc)."""

    project: Project | None = Field(default=None, alias="Project")
    zone: Zone | None = Field(default=None, alias="Zone")
    endpoint: Annotated[str, BeforeValidator(_endpoint)] | None = Field(
        default=None, alias="Endpoint"
    )
    operation_timeout: Annotated[float, BeforeValidator(_timeout)] = Field(
        default=DEFAULT_OPERATION_TIMEOUT, alias="OperationTimeout"
    )


@dataclass(frozen=True)
class Location:
    """A project and a zone."""

    project: str
    zone: str

    @property
    def region(self) -> str:
        """The zone's region (`us-central1` for `us-central1-a`)."""
        return self.zone.rsplit("-", 1)[0]


def from_environment(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The project and zone that gcloud's variables in `environ` name (each None if unset);
    `ValueError` naming the variable if one is set to something else."""
    project = zone = None
    for variable in PROJECT_VARIABLES:
        if environ.get(variable):
            project = _checked(check_project, variable, environ[variable])
            break
    if environ.get(ZONE_VARIABLE):
        zone = _checked(check_zone, ZONE_VARIABLE, environ[ZONE_VARIABLE])
    return project, zone


def _checked(check: Any, variable: str, value: str) -> str:
    try:
        return str(check(value))
    except ValueError as error:
        raise ValueError(f"${variable} {error}") from None


def is_plain_http(endpoint: str | None) -> bool:
    """Whether `endpoint` is plain http (an emulator): no credentials are sent there."""
    return endpoint is not None and endpoint.startswith("http://")
