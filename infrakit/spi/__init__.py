"""Plugin contracts and their types, with InfraKit's names and JSON shapes. No I/O here."""

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
