"""boto3's failures as `PluginError`s an operator can act on: what the plugin was doing, what
EC2 said (its code and message), and what to look at."""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from infrakit.spi.errors import PluginError

# Error codes (or their prefix, before the first '.') -> what to look at.
_HINTS: dict[str, str] = {
    "InvalidAMIID": "the AMI does not exist in this region or is not shared with this account",
    "UnauthorizedOperation": "the credentials boto3 found are not allowed to; check their IAM "
    "policy (see docs/plugins/aws.md for the actions the plugin needs)",
    "AuthFailure": "AWS did not accept the credentials boto3 found",
    "InvalidClientTokenId": "AWS did not accept the credentials boto3 found",
    "SignatureDoesNotMatch": "AWS did not accept the credentials boto3 found (secret key?)",
    "RequestExpired": "the credentials expired or this machine's clock is off",
    "ExpiredToken": "the session credentials expired; renew them",
    "OptInRequired": "the account is not subscribed to this service or region",
    "RequestLimitExceeded": "EC2 throttled the calls even after retries with backoff; the "
    "group tries again later",
    "InsufficientInstanceCapacity": "EC2 has no capacity for this instance type in this zone "
    "just now; wait, or use another availability zone or instance type",
    "InstanceLimitExceeded": "the account's instance quota is reached; ask for more or use "
    "fewer instances",
    "VcpuLimitExceeded": "the account's vCPU quota is reached; ask for more or use fewer or "
    "smaller instances",
    "InvalidParameterValue": "EC2 refused the instance properties; fix them and commit again",
    "InvalidParameterCombination": "EC2 refused the instance properties; fix them and commit again",
    "InvalidParameter": "EC2 refused the instance properties; fix them and commit again",
    "MissingParameter": "EC2 refused the instance properties; fix them and commit again",
    "Unsupported": "EC2 does not support these properties here (instance type, zone or "
    "feature); fix them and commit again",
    "InvalidInstanceType": "no such instance type in this region; fix InstanceType",
    "InvalidSubnetID": "no such subnet in this region",
    "InvalidGroup": "no such security group in this region",
    "InvalidKeyPair": "no such key pair in this region; create or import it, or fix KeyName",
}

_UNREACHABLE = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)


def error_code(error: ClientError) -> str:
    """EC2's error code in `error` (e.g. `InvalidInstanceID.NotFound`), or ""."""
    return str((error.response.get("Error") or {}).get("Code") or "")


def plugin_error(error: Exception, doing: str, endpoint: str) -> PluginError:
    """`error`, raised by boto3 while the plugin was `doing` something at `endpoint`, in
    words an operator can act on."""
    if isinstance(error, ClientError):
        code = error_code(error)
        message = str((error.response.get("Error") or {}).get("Message") or error)
        hint = _HINTS.get(code) or _HINTS.get(code.split(".", 1)[0])
        if hint is None and code.endswith(".NotFound"):
            hint = "it does not exist in this region"
        said = f"EC2 refused to {doing}: {message} ({code})"
        return PluginError(f"{said}; {hint}" if hint else said)
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return PluginError(
            f"cannot {doing}: no AWS credentials found ({error}); boto3 looks in "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws/credentials and "
            "the instance's or container's role"
        )
    if isinstance(error, _UNREACHABLE):
        return PluginError(f"cannot reach EC2 at {endpoint} to {doing}: {error}")
    if isinstance(error, ResponseParserError):
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        return PluginError(
            f"EC2 at {endpoint} gave an unreadable answer to {doing} (retried; an HTTP proxy "
            f"or a failing server in the way?): {first}"
        )
    if isinstance(error, BotoCoreError):
        return PluginError(f"EC2 at {endpoint} failed to {doing}: {error}")
    return PluginError(f"cannot {doing} (EC2 at {endpoint}): {error}")
