"""The EC2 instance plugin: each instance is an EC2 instance, made with boto3.

`options` reads its properties (RunInstances' parameters), `settings` its own options (region,
endpoint, profile, retries), `plugin` is the plugin itself; `errors` words boto3's failures,
`recent` remembers new instances EC2's listing may not show yet. Only `plugin` and `errors`
need boto3. Names are imported on first use, so the registry of kinds (which needs only
`settings`) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infrakit.plugins.instance.aws.options import Ec2Properties, parse_options
    from infrakit.plugins.instance.aws.plugin import AwsInstancePlugin
    from infrakit.plugins.instance.aws.settings import AwsOptions

MISSING_BOTO3 = "the aws instance plugin needs boto3: pip install 'infrakit[aws]'"

_LAZY = {
    "AwsInstancePlugin": "plugin",
    "AwsOptions": "settings",
    "Ec2Properties": "options",
    "parse_options": "options",
}


def create(options: AwsOptions) -> AwsInstancePlugin:
    """The plugin for a cluster file's options; `ValueError` if boto3 is missing or no region
    is set anywhere."""
    try:
        from infrakit.plugins.instance.aws.plugin import AwsInstancePlugin
    except ImportError as error:
        raise ValueError(f"{MISSING_BOTO3} ({error})") from None
    return AwsInstancePlugin(**options.plugin_kwargs())


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "MISSING_BOTO3",
    "AwsInstancePlugin",
    "AwsOptions",
    "Ec2Properties",
    "create",
    "parse_options",
]
