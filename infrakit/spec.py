"""Parse and validate group specs and cluster files, refusing bad input whole with its JSON path.

Group specs are InfraKit's, keys and all, so InfraKit users' files work unchanged; keys match
case-insensitively as Go's encoding/json did. `Health` and `Update` are ours, and every key in
them has a default. Plugin `Properties` stay opaque here: the plugins validate them.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from actors.strict_json import problems as json_problems
from infrakit import jsondoc, jsonmodel
from infrakit.confighash import config_hash, legacy_config_hash
from infrakit.duration import parse_duration
from infrakit.endpoints import exposed, wildcard
from infrakit.jsonmodel import JsonModel as _Model  # the base of every model here
from infrakit.jsonmodel import describe_type as _describe_type
from infrakit.jsonmodel import shown as _shown
from infrakit.plugins import offline, options_model
from infrakit.spi.errors import SpecError as SpecError  # its home is the SPI; named here too
from infrakit.spi.flavor import AllocationMethod

# Bounds on what a user controls (docs/spec.md lists them all).
DEFAULT_MAX_GROUP_SIZE = 1_000_000
"""Instances a group may ask for, unless the cluster file's `Limits.MaxGroupSize` says more."""
MAX_GROUP_SIZE_CEILING = 10_000_000
"""The most `Limits.MaxGroupSize` may be."""
MAX_NAME = 253
"""Characters in a group ID, a logical ID or a plugin name (Kubernetes' bound for names)."""
MAX_COUNT = MAX_GROUP_SIZE_CEILING
"""Counts such as `MaxParallel` and `MaxUnhealthy`."""
MAX_UNHEALTHY_AFTER = 1_000_000
_MINUTE, _HOUR, _DAY = 60.0, 3600.0, 86400.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _logical_id(value: str) -> str:
    if not value.strip():
        raise ValueError("a logical ID must not be blank")
    if len(value) > MAX_NAME:
        raise ValueError(f"must be at most {MAX_NAME} characters, got {len(value)}")
    if _CONTROL.search(value):
        raise ValueError(
            f"must not contain control characters (NUL, newline...), got {_shown(value)}"
        )
    return value


LogicalID = Annotated[str, AfterValidator(_logical_id)]

_LIMIT_HINT = "(the cluster file's Limits.MaxGroupSize)"


def _max_group_size(info: ValidationInfo) -> int:
    context = info.context if isinstance(info.context, Mapping) else {}
    limit = context.get("max_group_size", DEFAULT_MAX_GROUP_SIZE)
    return int(limit)


class PluginRef(_Model):
    """`{"Plugin": name, "Properties": {...}}`: which plugin, and its opaque configuration."""

    plugin: str = Field(alias="Plugin", min_length=1, max_length=MAX_NAME)
    properties: Any = Field(default=None, alias="Properties")

    @field_validator("plugin")
    @classmethod
    def _printable(cls, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError(f"must not contain control characters, got {_shown(value)}")
        return value

    def to_json(self) -> dict[str, Any]:
        return {"Plugin": self.plugin, "Properties": self.properties}


class Allocation(_Model):
    """Exactly one of `Size` or `LogicalIDs`, at most the group size limit either way."""

    size: int | None = Field(default=None, alias="Size", ge=0)
    logical_ids: tuple[LogicalID, ...] | None = Field(default=None, alias="LogicalIDs")

    @field_validator("size")
    @classmethod
    def _size_bounded(cls, size: int | None, info: ValidationInfo) -> int | None:
        limit = _max_group_size(info)
        if size is not None and size > limit:
            raise ValueError(f"must be at most {limit} {_LIMIT_HINT}, got {size}")
        return size

    @field_validator("logical_ids", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any, info: ValidationInfo) -> Any:
        # Checked before the items, so that an over-long list costs nothing per item.
        limit = _max_group_size(info)
        if isinstance(value, list | tuple) and len(value) > limit:
            raise ValueError(f"must be at most {limit} IDs {_LIMIT_HINT}, got {len(value)}")
        return tuple(value) if isinstance(value, list) else value

    @field_validator("logical_ids")
    @classmethod
    def _ids_unique(cls, ids: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if ids is None:
            return ids
        seen: set[str] = set()
        for logical_id in ids:
            if logical_id in seen:
                raise ValueError(f"logical ID {logical_id!r} appears twice")
            seen.add(logical_id)
        return ids

    @model_validator(mode="after")
    def _exactly_one(self) -> Allocation:
        if self.size is None and self.logical_ids is None:
            raise ValueError("Allocation must not be blank")
        if self.size is not None and self.logical_ids is not None:
            raise ValueError("Only one Allocation method may be used")
        return self

    def method(self) -> AllocationMethod:
        if self.logical_ids is not None:
            return AllocationMethod(logical_ids=self.logical_ids)
        return AllocationMethod(size=self.size or 0)

    def to_json(self) -> dict[str, Any]:
        return self.method().to_json()


def _duration(minimum: float = 0.0, maximum: float = 7 * _DAY) -> Callable[[Any], float]:
    """A validator of a duration within [minimum, maximum] (see infrakit.duration)."""

    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"must be a duration like '10s', got {_shown(value)}")
        return parse_duration(value, minimum=minimum, maximum=maximum)

    return parse


# A Go duration string ("500ms", "1m30s") or a number of seconds, held as seconds.
Duration = Annotated[float, BeforeValidator(_duration())]
Interval = Annotated[float, BeforeValidator(_duration(0.01, _HOUR))]
GracePeriod = Annotated[float, BeforeValidator(_duration(0.0, _DAY))]
Timeout = Annotated[float, BeforeValidator(_duration(0.0, _DAY))]
TTL = Annotated[float, BeforeValidator(_duration(2.0, _HOUR))]
Poll = Annotated[float, BeforeValidator(_duration(0.01, _MINUTE))]


_PERCENT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*")


def _count_or_percent(value: str | int) -> str | int:
    """Check a count (0 to MAX_COUNT) or a percentage like '40%'."""
    if isinstance(value, int):
        if not 0 <= value <= MAX_COUNT:
            raise ValueError(f"must be from 0 to {MAX_COUNT}, got {value}")
        return value
    match = _PERCENT.fullmatch(value)
    if match is None or float(match.group(1)) > 100:
        raise ValueError(f"must be a count or a percentage like '40%', got {_shown(value)}")
    return value


def _share_of(value: str | int, size: int, floor: int = 1, round_up: bool = False) -> int:
    """How many of `size` a count or percentage allows (at least `floor`); a percentage
    rounds down, or up with `round_up`."""
    if isinstance(value, int):
        return max(floor, value)
    match = _PERCENT.fullmatch(value)
    assert match is not None
    share = size * float(match.group(1)) / 100
    return max(floor, math.ceil(share) if round_up else int(share))


def _is_zero(value: str | int) -> bool:
    """True for a count of 0 or a percentage of 0 (which is 0 of any group)."""
    if isinstance(value, int):
        return value == 0
    match = _PERCENT.fullmatch(value)
    return match is not None and float(match.group(1)) == 0


MAX_PARALLEL_CHECKS = 10_000
"""The most health checks of one group that may run at once."""


class Health(_Model):
    """When an instance counts as unhealthy, how often each instance is checked, and how many
    may be replaced for ill health at once."""

    grace_period: GracePeriod = Field(default=30.0, alias="GracePeriod")
    interval: Interval = Field(default=1.0, alias="Interval")
    unhealthy_after: int = Field(default=3, alias="UnhealthyAfter", ge=1, le=MAX_UNHEALTHY_AFTER)
    max_unhealthy: str | int = Field(default="40%", alias="MaxUnhealthy")
    max_in_flight: str | int = Field(default=1, alias="MaxInFlight")
    parallel_checks: int = Field(default=16, alias="ParallelChecks", ge=1, le=MAX_PARALLEL_CHECKS)
    resync: Interval = Field(default=10.0, alias="Resync")

    @field_validator("max_unhealthy", "max_in_flight")
    @classmethod
    def _count_or_percent(cls, value: str | int) -> str | int:
        return _count_or_percent(value)

    def max_unhealthy_of(self, size: int) -> int:
        """How many of `size` instances may be unhealthy before replacing them stops (at least
        1): more than that looks like a wider problem."""
        return _share_of(self.max_unhealthy, size)

    def max_in_flight_of(self, size: int) -> int:
        """How many of `size` instances may be replaced for ill health at once (at least 1)."""
        return _share_of(self.max_in_flight, size)

    def look_every(self, told_of_changes: bool) -> float:
        """How often the group lists its instances: every Interval, or every Resync (if
        slower) when the instance plugin tells it what changed in between."""
        return max(self.interval, self.resync) if told_of_changes else self.interval


ProgressDeadline = Annotated[float, BeforeValidator(_duration(1.0, 7 * _DAY))]
DrainTimeout = Annotated[float, BeforeValidator(_duration(0.0, _DAY))]


def _auto_promote(value: Any) -> float | None:
    """`Update.AutoPromote`: false (or absent) waits for `infrakit group promote`, true
    promotes as soon as the canaries are healthy, a duration that long after."""
    if value is None or value is False:
        return None
    if value is True:
        return 0.0
    return _duration(0.0, _DAY)(value)


AutoPromote = Annotated[float | None, BeforeValidator(_auto_promote)]

TAG_PROTECTED = "infrakit.protected"
"""An instance tagged `infrakit.protected=true` is never removed to scale its group in."""


class Update(_Model):
    """How a changed configuration is rolled out, and which instances go first.

    `MaxUnavailable` (older name: `MaxParallel`) bounds the wanted instances out of service
    at once, `MaxSurge` the extra instances a sized group may run to replace old ones before
    removing them (make-before-break); both default to Kubernetes' values for a group that
    gives only `MaxParallel`: no surge, one unavailable. `TerminationPolicy` orders both the
    stale instances a rollout replaces and the instances a Size decrease removes (after the
    outdated and those out of service).
    """

    max_parallel: int | None = Field(default=None, alias="MaxParallel", ge=1, le=MAX_COUNT)
    max_unavailable: str | int | None = Field(default=None, alias="MaxUnavailable")
    max_surge: str | int = Field(default=0, alias="MaxSurge")
    min_ready_time: Timeout = Field(default=0.0, alias="MinReadyTime")
    healthy_timeout: Timeout = Field(default=60.0, alias="HealthyTimeout")
    progress_deadline: ProgressDeadline = Field(default=600.0, alias="ProgressDeadline")
    on_failure: Literal["pause", "rollback"] = Field(default="pause", alias="OnFailure")
    termination_policy: Literal["HighestSlot", "Newest", "Oldest"] = Field(
        default="HighestSlot", alias="TerminationPolicy"
    )
    drain_timeout: DrainTimeout = Field(default=300.0, alias="DrainTimeout")
    canary: int = Field(default=0, alias="Canary", ge=0, le=MAX_COUNT)
    auto_promote: AutoPromote = Field(default=None, alias="AutoPromote")

    @field_validator("max_unavailable", "max_surge")
    @classmethod
    def _count_or_percent(cls, value: str | int | None) -> str | int | None:
        return None if value is None else _count_or_percent(value)

    @model_validator(mode="after")
    def _can_move(self) -> Update:
        if self.max_parallel is not None and self.max_unavailable is not None:
            raise ValueError(
                "give MaxUnavailable or MaxParallel (its older name), not both:"
                f" got MaxParallel {self.max_parallel} and MaxUnavailable"
                f" {_shown(self.max_unavailable)}"
            )
        if _is_zero(self.max_surge) and _is_zero(self.unavailable):
            raise ValueError(
                "MaxSurge and MaxUnavailable are both 0: a rolling update could replace"
                " nothing (allow at least one extra instance, or one out of service)"
            )
        return self

    @property
    def unavailable(self) -> str | int:
        """MaxUnavailable as given, or MaxParallel, or the default 1."""
        if self.max_unavailable is not None:
            return self.max_unavailable
        return self.max_parallel if self.max_parallel is not None else 1

    def max_surge_of(self, size: int) -> int:
        """Extra instances a group of `size` may have during a rollout (a percentage
        rounds up, as Kubernetes' maxSurge does)."""
        return _share_of(self.max_surge, size, floor=0, round_up=True)

    def max_unavailable_of(self, size: int) -> int:
        """Wanted instances of `size` that may be out of service during a rollout (a
        percentage rounds down); 1 when that and the surge both come to 0 for so small a
        group, so that a rollout always moves (Kubernetes' rule)."""
        unavailable = _share_of(self.unavailable, size, floor=0)
        if unavailable == 0 and self.max_surge_of(size) == 0:
            return 1
        return unavailable


class GroupProperties(_Model):
    """The default group plugin's Properties (InfraKit's `types.Spec`, plus Health and Update)."""

    allocation: Allocation = Field(alias="Allocation")
    instance: PluginRef = Field(alias="Instance")
    flavor: PluginRef = Field(alias="Flavor")
    health: Health = Field(default_factory=Health, alias="Health")
    update: Update = Field(default_factory=Update, alias="Update")


_GROUP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class GroupSpec(_Model):
    """A group: `{"ID": ..., "Properties": {...}}`."""

    id: str = Field(alias="ID")
    properties: GroupProperties = Field(alias="Properties")
    raw: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @field_validator("id")
    @classmethod
    def _id_ok(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("Group ID must not be blank")
        if len(value) > MAX_NAME:
            raise ValueError(f"must be at most {MAX_NAME} characters, got {len(value)}")
        if not _GROUP_ID.fullmatch(value):
            raise ValueError(
                "must be letters, digits, '.', '_' or '-' (it names files and tags),"
                f" got {_shown(value)}"
            )
        return value

    # Cached: the planner asks for these once per instance per poll. (Never `model_copy` a
    # spec after use: the copy would carry the cached values; build a new one with `resized`.)
    @cached_property
    def config_hash(self) -> str:
        """The hash tag every instance with this configuration carries."""
        return config_hash(self.properties.instance.to_json(), self.properties.flavor.to_json())

    @cached_property
    def legacy_hashes(self) -> frozenset[str]:
        """Older encodings of the same hash that InfraKit v0.1 wrote; accepted when adopting."""
        return frozenset(
            {
                legacy_config_hash(
                    self.properties.instance.to_json(), self.properties.flavor.to_json()
                )
            }
        )

    @cached_property
    def _logical_ids(self) -> tuple[str, ...]:
        allocation = self.properties.allocation
        if allocation.logical_ids is not None:
            return allocation.logical_ids
        return tuple(f"{self.id}-{slot}" for slot in range(allocation.size or 0))

    def logical_ids(self) -> tuple[str, ...]:
        """One logical ID per wanted instance: the named ones, or slots `<ID>-0 .. <ID>-N-1`."""
        return self._logical_ids

    def resized(self, size: int) -> GroupSpec:
        """This spec with `Allocation` replaced by `{"Size": size}` (used to empty a group)."""
        data = self.to_json()
        data["Properties"]["Allocation"] = {"Size": size}
        return parse_group(data)

    @property
    def is_sized(self) -> bool:
        return self.properties.allocation.logical_ids is None

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON, in InfraKit's shape; what the store keeps and Inspect returns."""
        props = self.properties
        out: dict[str, Any] = {
            "Allocation": props.allocation.to_json(),
            "Instance": props.instance.to_json(),
            "Flavor": props.flavor.to_json(),
        }
        for section in ("Health", "Update"):
            if section in self.raw.get("Properties", {}):
                out[section] = self.raw["Properties"][section]
        return {"ID": self.id, "Properties": out}


class PluginConfig(_Model):
    """A plugin, by the name groups use: a built-in `Kind` run in process (with `Options`), an
    `Endpoint` to connect to, or a `Launch` command the runtime runs and supervises (serving at
    `Endpoint`, by default the plugins directory's socket of that name)."""

    name: str = Field(
        alias="Name", min_length=1, max_length=MAX_NAME, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
    )
    kind: str | None = Field(default=None, alias="Kind", min_length=1)
    options: dict[str, Any] = Field(default_factory=dict, alias="Options")
    endpoint: str | None = Field(default=None, alias="Endpoint", min_length=1)
    launch: tuple[str, ...] | None = Field(default=None, alias="Launch")

    @field_validator("kind")
    @classmethod
    def _builtin(cls, kind: str | None) -> str | None:
        if kind is not None:
            options_model(kind)  # a ValueError names the kinds there are
        return kind

    @field_validator("options")
    @classmethod
    def _options_of_kind(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        kind = info.data.get("kind")
        if kind is not None:
            options_model(kind).model_validate(options)  # its faults, at Options' paths
        return options

    @field_validator("launch", mode="before")
    @classmethod
    def _command(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(shlex.split(value))
        return tuple(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _one_way(self) -> PluginConfig:
        if self.kind is not None and (self.endpoint or self.launch):
            raise ValueError("give either a Kind (in process) or an Endpoint/Launch, not both")
        if self.kind is None and not self.endpoint and not self.launch:
            raise ValueError("needs a Kind (run in process), an Endpoint or a Launch command")
        if self.launch is not None and not self.launch:
            raise ValueError("Launch must not be empty")
        if any("\0" in part for part in (self.launch or ())) or "\0" in (self.endpoint or ""):
            raise ValueError("Launch and Endpoint must not contain a NUL character")
        if self.endpoint and not self.endpoint.startswith(("ipc://", "tcp://", "unix://")):
            raise ValueError(
                f"Endpoint must be ipc://, tcp:// (ZeroMQ) or unix:// (HTTP), got {self.endpoint!r}"
            )
        if self.endpoint and self.endpoint.startswith("unix://") and not self.endpoint[7:8] == "/":
            raise ValueError(
                f"a unix:// Endpoint needs an absolute socket path (unix:///path), got"
                f" {self.endpoint!r}"
            )
        return self


class BackendConfig(_Model):
    """An election or store backend: `file` (one host, the default) or `etcd` (many hosts)."""

    kind: Literal["file", "etcd"] = Field(default="file", alias="Kind")
    endpoints: tuple[str, ...] = Field(default=("http://127.0.0.1:2379",), alias="Endpoints")
    ttl: TTL = Field(default=2.0, alias="TTL")
    key: str = Field(default="/infrakit/leader", alias="Key", min_length=1)
    prefix: str = Field(default="/infrakit/groups/", alias="Prefix", min_length=1)

    @field_validator("endpoints", mode="before")
    @classmethod
    def _endpoint_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return (value,)
        return tuple(value) if isinstance(value, list) else value


class CurveConfig(_Model):
    """CURVE for tcp:// listen endpoints: the server's key pair and the authorized client keys."""

    secret_key: str = Field(alias="SecretKey", min_length=1)
    authorized_keys: str = Field(alias="AuthorizedKeys", min_length=1)


def _listen_endpoint(endpoint: str, info: ValidationInfo) -> str:
    """One Manager.Listen entry: ipc:// or tcp://, and beyond loopback only with CURVE or the
    explicit opt-in `Insecure` (the manager's API can make the host run commands)."""
    if not endpoint.startswith(("ipc://", "tcp://")):
        raise ValueError(f"listen endpoints must be ipc:// or tcp://, got {endpoint!r}")
    curve, insecure = info.data.get("curve"), info.data.get("insecure")
    if exposed(endpoint) and curve is None and not insecure:
        raise ValueError(
            f"{endpoint} serves beyond this host (only 127.0.0.0/8, ::1 and localhost are"
            " loopback), where anyone who connects can make it run commands: set Manager.Curve"
            " to admit only authorized client keys, or Manager.Insecure: true to serve it to"
            " anyone anyway"
        )
    return endpoint


def _metrics_address(address: str | None, info: ValidationInfo) -> str | None:
    """Manager.Metrics: `HOST:PORT` (`[::1]:PORT` for IPv6), beyond loopback only with
    `Insecure`: the metrics are read-only but name every group, plugin and failure, and
    Prometheus' HTTP carries no CURVE."""
    if address is None:
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be HOST:PORT with a port from 1 to 65535, got {address!r}")
    if exposed(f"tcp://{host}:{port}") and not info.data.get("insecure"):
        raise ValueError(
            f"{address} serves metrics beyond this host (only 127.0.0.0/8, ::1 and localhost are"
            " loopback), where anyone who connects reads every group, plugin and failure: use"
            " 127.0.0.1, or set Manager.Insecure: true to serve them to anyone anyway"
        )
    return address


def _mode(mode: str, info: ValidationInfo) -> str:
    """Manager.Mode `shared` needs etcd for both the election and the store: the owners of
    the groups are keys under the managers' leases, and every group's writes are fenced on
    them."""
    if mode == "shared":
        leader, store = info.data.get("leader"), info.data.get("store")
        if leader is not None and store is not None and "file" in (leader.kind, store.kind):
            raise ValueError(
                "shared mode shares the groups among managers on several hosts: it needs"
                ' Leader.Kind and Store.Kind "etcd"'
            )
    return mode


class ManagerConfig(_Model):
    """The manager: election and store backends, and where it serves its API.

    `Curve` and `Insecure` come before `Listen`, which is checked against them.
    """

    leader: BackendConfig = Field(default_factory=BackendConfig, alias="Leader")
    store: BackendConfig = Field(default_factory=BackendConfig, alias="Store")
    mode: Annotated[Literal["leader", "shared"], AfterValidator(_mode)] = Field(
        default="leader", alias="Mode"
    )
    """`leader`: the elected manager runs every group; `shared`: every live manager runs a
    share of the groups (etcd for Leader and Store; docs/etcd.md)."""
    poll: Poll = Field(default=1.0, alias="LeaderPoll")
    curve: CurveConfig | None = Field(default=None, alias="Curve")
    insecure: bool = Field(default=False, alias="Insecure")
    listen: tuple[Annotated[str, AfterValidator(_listen_endpoint)], ...] = Field(
        default=(), alias="Listen"
    )
    advertise: str | None = Field(default=None, alias="Advertise")
    http: bool = Field(default=False, alias="HTTP")
    """Serve the Group API to Go InfraKit's CLI: JSON-RPC over HTTP at `<plugins dir>/group`,
    the ZeroMQ endpoint moving to `<plugins dir>/group.zmq` (docs/protocol.md)."""
    metrics: Annotated[str | None, AfterValidator(_metrics_address)] = Field(
        default=None, alias="Metrics"
    )
    """Serve Prometheus metrics over HTTP at this `HOST:PORT` (docs/spec.md); off by default."""

    @field_validator("listen", mode="before")
    @classmethod
    def _listen_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return (value,)
        return tuple(value) if isinstance(value, list) else value

    @field_validator("advertise")
    @classmethod
    def _connectable(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith(("ipc://", "tcp://")) or wildcard(value)):
            raise ValueError(
                "must be an ipc:// or tcp:// endpoint others can connect to (a host name or"
                f" address, not *, 0.0.0.0 or ::), got {value!r}"
            )
        return value


class ClusterIdentity(_Model):
    """Which cluster this is. Every instance carries its ID (tag `infrakit.cluster.id`), so
    that clusters sharing an engine or an account never adopt nor destroy each other's. Without
    an ID, one is made up when the store is first used, and kept there: managers sharing a store
    share the ID."""

    id: str | None = Field(default=None, alias="ID", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class Limits(_Model):
    """Bounds a cluster may raise: how many instances one group may ask for, and how many
    health checks the whole runtime runs at once (each group also has its own
    `Health.ParallelChecks`)."""

    max_group_size: int = Field(
        default=DEFAULT_MAX_GROUP_SIZE, alias="MaxGroupSize", ge=1, le=MAX_GROUP_SIZE_CEILING
    )
    health_checks: int = Field(default=64, alias="HealthChecks", ge=1, le=1024)


class ClusterConfig(_Model):
    """A cluster file for `infrakit run`: plugins, manager backends and the groups to commit."""

    cluster: ClusterIdentity = Field(default_factory=ClusterIdentity, alias="Cluster")
    plugins: tuple[PluginConfig, ...] = Field(default=(), alias="Plugins")
    manager: ManagerConfig = Field(default_factory=ManagerConfig, alias="Manager")
    groups: tuple[dict[str, Any], ...] = Field(default=(), alias="Groups")
    limits: Limits = Field(default_factory=Limits, alias="Limits")

    @field_validator("plugins", "groups", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value


# Built-in plugins every cluster has unless it names its own: InfraKit's conventional names.
DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("instance-file", "file"),
    ("instance-process", "process"),
    ("flavor-vanilla", "vanilla"),
)


def parse_group(
    data: Any,
    source: str = "",
    path: str = "",
    *,
    max_group_size: int = DEFAULT_MAX_GROUP_SIZE,
) -> GroupSpec:
    """Validate one group spec (parsed JSON, or a value from a program). Raises `SpecError`
    naming every fault's path.

    Nothing is allocated per instance before `Allocation` is known to be within
    `max_group_size`.
    """
    if not isinstance(data, Mapping):
        raise SpecError(
            [(path, f"a group spec must be an object, got {_describe_type(data)}")], source
        )
    problems = json_problems(data, max_depth=jsondoc.MAX_DEPTH, prefix=path)
    if problems:
        raise SpecError(problems, source)
    context = {"max_group_size": max_group_size}
    spec = jsonmodel.parse(GroupSpec, data, source=source, prefix=path, context=context)
    # Keep the user's own Health/Update sections so the stored spec reads as they wrote it.
    folded = GroupSpec.fold_keys(dict(data))
    props = GroupProperties.fold_keys(dict(folded.get("Properties") or {}))
    return spec.model_copy(update={"raw": {"Properties": props}})


def parse_cluster(data: Any, source: str = "", extra_plugins: Iterable[str] = ()) -> ClusterConfig:
    """Validate a cluster file (parsed JSON), its groups included.

    `extra_plugins` names plugins supplied by an embedding program, which groups may use.
    """
    if not isinstance(data, Mapping):
        raise SpecError(
            [("", f"a cluster file must be an object, got {_describe_type(data)}")], source
        )
    problems: list[tuple[str, str]] = json_problems(data, max_depth=jsondoc.MAX_DEPTH)
    if problems:
        raise SpecError(problems, source)
    config = jsonmodel.parse(ClusterConfig, data, source=source)
    names = {name for name, _ in DEFAULT_PLUGINS} | set(extra_plugins)
    kinds: dict[str, str | None] = dict(DEFAULT_PLUGINS)
    kinds.update({name: None for name in extra_plugins})
    kinds.update({plugin.name: plugin.kind for plugin in config.plugins})
    for index, plugin in enumerate(config.plugins):
        names.add(plugin.name)
        if [p.name for p in config.plugins].count(plugin.name) > 1:
            problems.append((f"Plugins[{index}].Name", f"plugin {plugin.name!r} is named twice"))
    seen: set[str] = set()
    for index, raw in enumerate(config.groups):
        where = f"Groups[{index}]"
        try:
            group = parse_group(raw, path=where, max_group_size=config.limits.max_group_size)
        except SpecError as error:
            problems.extend(error.problems)
            continue
        if group.id in seen:
            problems.append((f"{where}.ID", f"group {group.id!r} is declared twice"))
        seen.add(group.id)
        for section, ref in (
            ("Instance", group.properties.instance),
            ("Flavor", group.properties.flavor),
        ):
            if plugin_name(ref.plugin) not in names:
                problems.append(
                    (f"{where}.Properties.{section}.Plugin", no_plugin(ref.plugin, names))
                )
            elif fault := wrong_role(ref.plugin, kinds.get(plugin_name(ref.plugin)), section):
                problems.append((f"{where}.Properties.{section}.Plugin", fault))
    if problems:
        raise SpecError(problems, source)
    return config


def no_plugin(reference: str, known: Iterable[str], what: str = "plugin") -> str:
    """The fault for a plugin reference that names no known plugin, with the likeliest
    intended name (`did you mean 'flavor-vanilla'?`) when one is close."""
    names = sorted(set(known))
    close = difflib.get_close_matches(plugin_name(reference), names, n=1, cutoff=0.85)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"no {what} named {reference!r}{hint} (known: {', '.join(names)})"


def property_path(prefix: str, path: str) -> str:
    """The path from the group spec's root of a fault a plugin found at `path` in its
    properties (which are at `prefix`); a flavor judging the allocation says `Allocation...`."""
    if not path:
        return prefix
    if path.split(".", 1)[0].split("[", 1)[0] == "Allocation":
        group = prefix.split("Properties.", 1)[0]  # e.g. "Groups[0]." in a cluster file
        return f"{group}Properties.{path}"
    joiner = "" if path.startswith("[") else "."
    return prefix + joiner + path


def wrong_role(reference: str, kind: str | None, section: str) -> str:
    """The fault of naming a built-in `kind` of plugin where the other role is wanted
    (`section` is "Instance" or "Flavor"), or "" if it fits or the kind is not known."""
    role = offline.role(kind) if kind is not None else None
    if role is None or role == section:
        return ""
    article = {"Instance": "an", "Flavor": "a"}
    return (
        f"{reference!r} is {article[role]} {role.lower()} plugin,"
        f" not {article[section]} {section.lower()} plugin"
    )


def plugin_name(reference: str) -> str:
    """The plugin a reference names: InfraKit's `socket/type` form means the socket `socket`."""
    return reference.split("/", 1)[0]


def load_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON document strictly (`infrakit.jsondoc`); a fault is a `SpecError` naming
    its path, or its line and column."""
    try:
        return jsondoc.load(path)
    except jsondoc.JsonError as error:
        raise SpecError(error.problems, str(path)) from None


def groups_of(config: ClusterConfig) -> list[GroupSpec]:
    """The groups of a validated cluster file, parsed."""
    limit = config.limits.max_group_size
    return [
        parse_group(raw, path=f"Groups[{i}]", max_group_size=limit)
        for i, raw in enumerate(config.groups)
    ]
