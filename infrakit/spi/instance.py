"""The instance plugin contract: something that makes and unmakes one resource."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

InstanceID = str
LogicalID = str

# Tags every instance made by a group carries (InfraKit's names).
TAG_GROUP = "infrakit.group"
TAG_CONFIG_HASH = "infrakit.config.hash"
TAG_LOGICAL_ID = "infrakit.logical_id"
# The cluster (the runtime, or the managers of one HA cluster) that made the instance, so that two
# clusters sharing one engine or account never adopt nor destroy each other's instances.
TAG_CLUSTER = "infrakit.cluster.id"
# When the instance was made (UTC epoch seconds), so that its age survives restarts.
TAG_CREATED = "infrakit.created"
# The slot a scale-in is moving the instance into, written before that slot's instance is
# removed (the proof that the plugin can relabel); informational afterwards.
TAG_MOVING_TO = "infrakit.moving_to"
# Older InfraKit name for the hash tag, accepted when adopting.
TAG_CONFIG_SHA_OLD = "infrakit.config_sha"


@dataclass(frozen=True)
class Attachment:
    """Something to attach to an instance (a volume, a network...)."""

    id: str
    type: str

    def to_json(self) -> dict[str, Any]:
        return {"ID": self.id, "Type": self.type}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Attachment:
        return cls(id=str(data.get("ID", "")), type=str(data.get("Type", "")))


@dataclass(frozen=True)
class Spec:
    """What to provision: InfraKit's `instance.Spec`."""

    properties: Any = None
    tags: dict[str, str] = field(default_factory=dict)
    init: str = ""
    logical_id: LogicalID | None = None
    attachments: tuple[Attachment, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "Properties": self.properties,
            "Tags": dict(self.tags),
            "Init": self.init,
            "LogicalID": self.logical_id,
            "Attachments": [a.to_json() for a in self.attachments],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Spec:
        return cls(
            properties=data.get("Properties"),
            tags={str(k): str(v) for k, v in (data.get("Tags") or {}).items()},
            init=str(data.get("Init") or ""),
            logical_id=data.get("LogicalID"),
            attachments=tuple(Attachment.from_json(a) for a in data.get("Attachments") or ()),
        )


@dataclass(frozen=True)
class Description:
    """What exists: InfraKit's `instance.Description`.

    Read-only by contract: plugins may hand out the same object (and its tags) to many callers.
    """

    id: InstanceID
    logical_id: LogicalID | None = None
    tags: dict[str, str] = field(default_factory=dict)
    properties: Any = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ID": self.id, "LogicalID": self.logical_id, "Tags": dict(self.tags)}
        if self.properties is not None:
            out["Properties"] = self.properties
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Description:
        return cls(
            id=str(data["ID"]),
            logical_id=data.get("LogicalID"),
            tags={str(k): str(v) for k, v in (data.get("Tags") or {}).items()},
            properties=data.get("Properties"),
        )


def logical_id_or_slot(item: Spec | Description) -> LogicalID | None:
    """The logical ID to show a person or hand to the instance: a named group's own, else the
    `infrakit.logical_id` tag, which carries a Size group's slot (`workers-0`). The slot stays
    out of the `LogicalID` field itself: there Go InfraKit reads a pet (volumes, quorums)."""
    return item.logical_id or item.tags.get(TAG_LOGICAL_ID) or None


def tags_match(tags: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    """True when every wanted tag is present with the same value (InfraKit AND-matches)."""
    return all(tags.get(k) == v for k, v in wanted.items())


@runtime_checkable
class InstancePlugin(Protocol):
    """Makes, lists and unmakes instances. Every method may raise `PluginError`."""

    def validate(self, properties: Any) -> None:
        """Raise `ValidationError` (with the JSON path) if `properties` cannot be provisioned."""

    def provision(self, spec: Spec) -> InstanceID:
        """Create one instance carrying `spec.tags`; return its ID."""
        ...

    def destroy(self, instance_id: InstanceID) -> None:
        """Destroy the instance. Destroying one that is already gone is not an error."""

    def describe_instances(self, tags: Mapping[str, str]) -> list[Description]:
        """Every live instance whose tags include all of `tags`."""
        ...

    def label(self, instance_id: InstanceID, labels: Mapping[str, str]) -> None:
        """Merge `labels` into the instance's tags."""


Unsubscribe = Callable[[], None]


@runtime_checkable
class Watchable(Protocol):
    """Optional: an instance plugin that can tell when its instances change (e.g. one vanishes).

    The callback takes no arguments and must return at once; it only says "look again".
    """

    def watch(self, callback: Callable[[], None]) -> Unsubscribe: ...


@dataclass(frozen=True)
class Changes:
    """What a plugin saw change among its instances since it last said: IDs that appeared and
    IDs that are gone (of any group: a listener keeps those it knows). `whole` says that the
    plugin cannot tell what changed (its watch restarted, say): look at everything."""

    appeared: frozenset[InstanceID] = frozenset()
    gone: frozenset[InstanceID] = frozenset()
    whole: bool = False


@runtime_checkable
class ChangeWatchable(Protocol):
    """Optional, instead of `Watchable`: an instance plugin that can say *which* instances
    appeared or vanished, so that a group applies the change to the members it knows instead
    of listing them all again. The callback must return at once.
    """

    def watch_changes(self, callback: Callable[[Changes], None]) -> Unsubscribe: ...


@runtime_checkable
class Sweepable(Protocol):
    """Optional: an instance plugin that can remove what its dead instances left behind.

    `describe_instances` lists live instances only; a dead one may leave remains (a stopped
    container, an instance directory, a Vagrant machine's entry). A group's destroy completes
    only once `sweep` of its tags has succeeded, so that nothing of it is left anywhere.
    """

    def sweep(self, tags: Mapping[str, str]) -> list[InstanceID]:
        """Remove the remains of every instance that is not live and whose tags include all of
        `tags`, and anything of the plugin's that belongs to no instance at all (such as the
        temp file of a write whose writer died); return the IDs of the instances swept.

        Live instances and instances being provisioned are left alone. Idempotent: a second
        sweep finds nothing to do. Raises `PluginError` if something could not be removed.
        """
        ...
