"""InfraKit for Python: declarative, self-healing infrastructure as an actor supervision tree."""

from infrakit.runtime import Runtime
from infrakit.spec import GroupSpec, SpecError

__all__ = ["GroupSpec", "Runtime", "SpecError"]
