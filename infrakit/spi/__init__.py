"""Plugin contracts and their types, with InfraKit's names and JSON shapes. No I/O here.

Each name is imported from its module on first use (PEP 562): a client of one contract (the
CLI's `group` commands) need not pay for the others' classes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infrakit.spi.errors import PluginError, SpecError, ValidationError
    from infrakit.spi.flavor import AllocationMethod, FlavorPlugin, Health
    from infrakit.spi.group import GroupPlugin
    from infrakit.spi.instance import Attachment, Description, InstancePlugin, Spec

__all__ = [
    "AllocationMethod",
    "Attachment",
    "Description",
    "FlavorPlugin",
    "GroupPlugin",
    "Health",
    "InstancePlugin",
    "PluginError",
    "Spec",
    "SpecError",
    "ValidationError",
]

_WHERE = {
    "PluginError": "errors",
    "SpecError": "errors",
    "ValidationError": "errors",
    "AllocationMethod": "flavor",
    "FlavorPlugin": "flavor",
    "Health": "flavor",
    "GroupPlugin": "group",
    "Attachment": "instance",
    "Description": "instance",
    "InstancePlugin": "instance",
    "Spec": "instance",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'infrakit.spi' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"infrakit.spi.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
