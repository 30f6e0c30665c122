"""InfraKit for Python: declarative, self-healing infrastructure as an actor supervision tree."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infrakit.runtime import Runtime
    from infrakit.spec import GroupSpec, SpecError

__all__ = ["GroupSpec", "Runtime", "SpecError"]


def __getattr__(name: str) -> Any:
    # Imported on first use: every `infrakit` command imports this package, and most need
    # neither the actor tree nor pydantic (about 0.2 s of a short command's time).
    if name == "Runtime":
        from infrakit.runtime import Runtime

        return Runtime
    if name in ("GroupSpec", "SpecError"):
        from infrakit import spec

        return getattr(spec, name)
    raise AttributeError(f"module 'infrakit' has no attribute {name!r}")
