"""The flavor plugin contract: what turns a bare instance into a member of a group."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol, runtime_checkable

from infrakit.spi.instance import Description, LogicalID, Spec


class Health(IntEnum):
    """Flavor health, as InfraKit put it on the wire: 0 unknown, 1 healthy, 2 unhealthy."""

    UNKNOWN = 0
    HEALTHY = 1
    UNHEALTHY = 2


@dataclass(frozen=True)
class AllocationMethod:
    """How a group allocates its instances: a `Size`, or a list of `LogicalIDs`."""

    size: int = 0
    logical_ids: tuple[LogicalID, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        if self.logical_ids is not None:
            return {"LogicalIDs": list(self.logical_ids)}
        return {"Size": self.size}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AllocationMethod:
        ids = data.get("LogicalIDs")
        if ids is not None:
            return cls(logical_ids=tuple(str(i) for i in ids))
        return cls(size=int(data.get("Size") or 0))


@runtime_checkable
class FlavorPlugin(Protocol):
    """Prepares instance specs, judges health and drains. Every method may raise `PluginError`."""

    def validate(self, properties: Any, allocation: AllocationMethod) -> None:
        """Raise `ValidationError` (with the JSON path) if `properties` are not usable."""

    def prepare(self, properties: Any, spec: Spec, allocation: AllocationMethod) -> Spec:
        """Return `spec` with this flavor's Init, Tags (and anything else) applied."""
        ...

    def healthy(self, properties: Any, instance: Description) -> Health:
        """How the instance is doing, as far as this flavor can tell."""
        ...

    def drain(self, properties: Any, instance: Description) -> None:
        """Prepare the instance to be destroyed (move work away, leave a cluster...)."""


@runtime_checkable
class ProbesHealth(Protocol):
    """Optional: a flavor that can say whether `healthy` does any checking for `properties`.

    A flavor whose `healthy` always answers HEALTHY for some properties (the vanilla flavor
    without a `Health.Command`) says False, and the group then asks it once per instance
    instead of every `Health.Interval`. A flavor without this method is asked every interval.
    """

    def probes_health(self, properties: Any) -> bool: ...


@runtime_checkable
class Reportable(Protocol):
    """Optional: a flavor that can say more about each member than its health, for operators
    (ZooKeeper's flavor: leader or follower, and what the member's `srvr` says). `group
    describe` shows it as each instance's `Status`; over the wire it is `Flavor.MemberStatus`.
    """

    def member_status(self, properties: Any, instance: Description) -> dict[str, Any]:
        """What the flavor can tell about `instance`, a JSON object; empty when it has nothing
        to tell. A member that is down is said so in the answer, not raised."""
        ...
