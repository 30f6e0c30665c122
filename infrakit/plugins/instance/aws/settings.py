"""The EC2 plugin's own options (a cluster file's `Plugins[i].Options`): where EC2 is and how
hard to retry. Credentials are never options: boto3's own chain finds them."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field

from infrakit.plugins._props import PropertiesModel, Text

# us-east-1, eu-central-2, us-gov-west-1, cn-northwest-1, ap-southeast-4...
_REGION_RE = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+\Z")
DEFAULT_MAX_ATTEMPTS = 5


def _region(value: str) -> str:
    if not _REGION_RE.match(value):
        raise ValueError(f"must be an AWS region such as 'us-east-1', got {value!r}")
    return value


def _count(value: Any) -> Any:
    """A whole number, or one written in digits (`--option MaxAttempts=3` gives a string)."""
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else value


def _endpoint(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"must be an http:// or https:// URL such as 'http://127.0.0.1:5000', got {value!r}"
        )
    return value


class AwsOptions(PropertiesModel):
    """`Region` and `Endpoint` (absent: boto3's own chain, e.g. `AWS_REGION`,
    `AWS_ENDPOINT_URL_EC2`), `Profile` (a profile of the AWS config files) and `MaxAttempts`
    (attempts per API call, with boto3's backoff between them, before a call fails)."""

    region: Annotated[Text, AfterValidator(_region)] | None = Field(default=None, alias="Region")
    endpoint: Annotated[Text, AfterValidator(_endpoint)] | None = Field(
        default=None, alias="Endpoint"
    )
    profile: Text | None = Field(default=None, alias="Profile")
    max_attempts: Annotated[int, Field(ge=1, le=20), BeforeValidator(_count)] = Field(
        default=DEFAULT_MAX_ATTEMPTS, alias="MaxAttempts"
    )

    def plugin_kwargs(self) -> dict[str, Any]:
        """These options as the keyword arguments of `AwsInstancePlugin`."""
        return {
            "region": self.region,
            "endpoint": self.endpoint,
            "profile": self.profile,
            "max_attempts": self.max_attempts,
        }
