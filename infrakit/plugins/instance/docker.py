"""The Docker instance plugin: each instance is a container on one Docker engine.

Properties are modelled on `docker run` (keys case-insensitive, as Go's JSON decoding was):

    {"Image": "busybox:latest",             required; never pulled (see below)
     "Cmd": ["sh", "-c", "..."],            list, or a string split like a shell would
     "Entrypoint": ["/bin/sh"],             list or string
     "Env": {"K": "V"} or ["K=V"],
     "Labels": {"k": "v"},                  extra container labels (the spec's tags win)
     "NetworkMode": "none",                 the default: a container gets no network unless asked
     "Mounts": [{"Source": "/srv", "Target": "/data", "Type": "bind", "ReadOnly": true}],
     "Privileged": false, "Hostname": "...", "User": "...", "WorkingDir": "/abs/path",
     "Memory": 268435456 or "256m",         bytes; k/m/g/t suffixes are powers of 1024
     "CPUs": 0.5}                           -> NanoCPUs

What runs in the container:

- no `Cmd`: the flavor's Init (`spec.init`) runs as the command, `["/bin/sh", "-c", init]`
  (after the `Entrypoint`, if one is given, as Docker does). An empty Init leaves the image's
  own command.
- `Cmd` given: `Cmd` runs, and the Init is handed to it in the environment as `INFRAKIT_INIT`.

`INFRAKIT_LOGICAL_ID` is set in the environment too (the spec's logical ID, else the
`infrakit.logical_id` tag).

Instances, tags and liveness:

- The instance ID is the container's full 64-hex-digit ID (what Docker's API returns; short
  IDs are ambiguous in principle and Docker accepts the full one everywhere).
- Tags are container labels (with the properties' `Labels` beneath them), so describing a group
  is one `GET /containers/json` with label filters. Described tags are the container's labels,
  which include the image's own labels and `Labels`, less the plugin's private ones.
- A container that is not running (created, exited, dead, paused...) is gone, as InfraKit's
  dind plugin saw it. Exited or dead containers carrying `infrakit.group` are removed once they
  have been seen gone for `gone_retention` seconds (10 minutes), so that they do not pile up
  while still leaving time to read their logs. A container is created with its labels and then
  started, so one left `created` was made by a provision killed in between: nothing ever ran in
  it, and it is removed once seen so for `created_retention` seconds (30), unless this plugin is
  provisioning it. `sweep` removes a group's containers that are not running at once.
- `LogicalID` (given for named groups) names the container. A stopped container of that name is
  removed first; a running one is an error ("a container named X is already running").
- Docker cannot change a running container's labels, so `label` succeeds only when the labels
  are already there and otherwise says so (InstanceActor logs it and carries on).
- Images are never pulled: a missing image is a `ValidationError` at `Image` from `validate`
  and a `PluginError` from `provision`, both saying to build or import it first.

Loss is seen fast: `watch` follows the engine's event stream (die/stop/kill/destroy/oom of
containers carrying `infrakit.group`) in one daemon thread per plugin, and calls back once an
inspect of the event's container says it has stopped: the engine's container list lags its
`kill` and `die` events, and a look taken at the event alone often still sees the container
running, leaving the loss to the next poll.

`destroy` stops a container (`stop_timeout`, then SIGKILL) and removes it with its anonymous
volumes; named volumes stay.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import re
import shlex
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import docker
import docker.errors
from docker.types import Mount

from infrakit.plugins._props import Faults, join_path, object_fields, string_list, string_map
from infrakit.plugins.instance._watch import call_each
from infrakit.spi.errors import PluginError, ValidationError
from infrakit.spi.instance import (
    TAG_GROUP,
    TAG_LOGICAL_ID,
    Description,
    InstanceID,
    InstancePlugin,
    Spec,
    Sweepable,
    Unsubscribe,
    Watchable,
    tags_match,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_NETWORK_MODE = "none"
# Private labels: the plugin's own memory, not shown as tags.
PRIVATE_PREFIX = "infrakit.docker."
LABEL_LOGICAL_ID = PRIVATE_PREFIX + "logical_id"

# Events that mean "a container may have gone"; only containers made by a group are followed.
WATCH_EVENTS = ("die", "stop", "kill", "destroy", "oom")

_FIELDS = (
    "Image",
    "Cmd",
    "Entrypoint",
    "Env",
    "Labels",
    "NetworkMode",
    "Mounts",
    "Privileged",
    "Hostname",
    "Memory",
    "CPUs",
    "User",
    "WorkingDir",
)
_MOUNT_FIELDS = ("Source", "Target", "Type", "ReadOnly")
_MOUNT_TYPES = ("bind", "volume", "tmpfs")
# Docker refuses memory limits below 6 MiB.
MIN_MEMORY = 6 * 1024 * 1024
MAX_MEMORY = 1 << 50
_MEMORY_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
# Docker's rule for container names.
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+\Z")  # \Z: `$` would allow a final newline
_STATE_RUNNING = "running"
_STATE_CREATED = "created"
# Not running and never coming back by itself: removed after `gone_retention`
# (`created_retention` for containers never started).
_GARBAGE_STATES = frozenset({"exited", "dead", _STATE_CREATED})
# States `sweep` leaves alone: a live container, one the engine is removing already.
_NOT_DEAD = frozenset({_STATE_RUNNING, "removing"})
_CLIENT_POOL = 32  # concurrent calls before urllib3 discards connections


@dataclass(frozen=True)
class MountOptions:
    """One entry of `Mounts`."""

    target: str
    type: str
    source: str | None = None
    read_only: bool = False

    def to_docker(self) -> Any:
        return Mount(
            target=self.target, source=self.source, type=self.type, read_only=self.read_only
        )


@dataclass(frozen=True)
class DockerOptions:
    """The instance properties this plugin understands, parsed."""

    image: str
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    network_mode: str = DEFAULT_NETWORK_MODE
    mounts: tuple[MountOptions, ...] = ()
    privileged: bool = False
    hostname: str | None = None
    memory: int | None = None
    cpus: float | None = None
    user: str | None = None
    working_dir: str | None = None


def parse_options(properties: Any, *, default_image: str | None = None) -> DockerOptions:
    """Check instance properties (keys case-insensitive) and return them parsed.

    `Image` is required unless a `default_image` is given. Raises `ValidationError` with the
    JSON path of every fault.
    """
    if properties is None:
        properties = {}
    faults = Faults()
    fields = object_fields(properties, _FIELDS, faults=faults)

    def optional(key: str, parse: Callable[[Any], T], default: T) -> T:
        return faults.optional(fields, key, parse, default)

    if fields.get("Image") is None and default_image is None:
        faults.add("is required (the image to run)", "Image")
    options = DockerOptions(
        image=optional("Image", lambda v: _non_empty_string(v, "Image"), default_image or ""),
        cmd=optional("Cmd", lambda v: _argv(v, "Cmd"), None),
        entrypoint=optional("Entrypoint", lambda v: _argv(v, "Entrypoint"), None),
        env=optional("Env", _env, {}),
        labels=optional("Labels", _labels, {}),
        network_mode=optional(
            "NetworkMode", lambda v: _non_empty_string(v, "NetworkMode"), DEFAULT_NETWORK_MODE
        ),
        mounts=optional("Mounts", _mounts, ()),
        privileged=optional("Privileged", lambda v: _bool(v, "Privileged"), False),
        hostname=optional("Hostname", lambda v: _non_empty_string(v, "Hostname"), None),
        memory=optional("Memory", _memory, None),
        cpus=optional("CPUs", _cpus, None),
        user=optional("User", lambda v: _non_empty_string(v, "User"), None),
        working_dir=optional("WorkingDir", _working_dir, None),
    )
    faults.check()
    return options


def _labels(value: Any) -> dict[str, str]:
    labels = string_map(value, "Labels")
    faults = Faults()
    for key in labels:
        if not key or "\0" in key:
            faults.add("not a valid label name", join_path("Labels", key))
        elif key.startswith(PRIVATE_PREFIX):
            faults.add(
                f"labels starting with {PRIVATE_PREFIX!r} are the plugin's own",
                join_path("Labels", key),
            )
    faults.check()
    return labels


def _cpus(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError("must be a number of CPUs, such as 0.5", path="CPUs")
    if not math.isfinite(value) or value < 0.01:
        raise ValidationError(f"must be at least 0.01, got {value}", path="CPUs")
    return float(value)


def _working_dir(value: Any) -> str:
    working_dir = _non_empty_string(value, "WorkingDir")
    if not working_dir.startswith("/"):
        raise ValidationError("must be an absolute path", path="WorkingDir")
    return working_dir


def parse_memory(value: Any, path: str = "Memory") -> int:
    """Bytes from a number or a string such as `"256m"`, `"1.5g"`, `"512MiB"` (binary units)."""
    if isinstance(value, bool):
        raise ValidationError("must be a number of bytes or a size such as '256m'", path=path)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        match = _MEMORY_RE.fullmatch(value)
        if match is not None:
            number, unit = match.groups()
            return int(float(number) * _MEMORY_UNITS[unit.lower()])
    raise ValidationError(
        f"must be a number of bytes or a size such as '256m', got {value!r}", path=path
    )


def _memory(value: Any) -> int:
    memory = parse_memory(value)
    if memory < MIN_MEMORY:
        raise ValidationError(
            f"must be at least 6 MiB (Docker's minimum), got {memory} bytes", path="Memory"
        )
    if memory > MAX_MEMORY:
        raise ValidationError(f"must be at most 1 PiB, got {memory} bytes", path="Memory")
    return memory


def _non_empty_string(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError("must be a non-empty string", path=path)
    if "\0" in value:
        raise ValidationError("must not contain a NUL character", path=path)
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError("must be true or false", path=path)
    return value


def _argv(value: Any, path: str) -> list[str]:
    """A command: a list of strings, or one string split the way a shell would."""
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ValidationError(f"cannot split into arguments: {exc}", path=path) from None
        if not argv:
            raise ValidationError("must not be empty", path=path)
    else:
        if not isinstance(value, list):
            raise ValidationError("must be a list of strings or a string", path=path)
        argv = string_list(value, path, non_empty=True)
    for i, arg in enumerate(argv):
        if "\0" in arg:
            raise ValidationError("must not contain a NUL character", path=f"{path}[{i}]")
    return argv


def _env(value: Any) -> dict[str, str]:
    """`{"K": "V"}` or `["K=V", ...]` as a dict."""
    env: dict[str, str] = {}
    faults = Faults()
    if isinstance(value, list):
        for i, item in enumerate(string_list(value, "Env")):
            key, sep, val = item.partition("=")
            if not sep or not key or "\0" in item:
                faults.add("must look like NAME=value", f"Env[{i}]")
            env[key] = val
    elif not isinstance(value, dict):
        raise ValidationError("must be an object of strings or a list of NAME=value", path="Env")
    else:
        for key, val in string_map(value, "Env").items():
            if not key or "=" in key or "\0" in key or "\0" in val:
                faults.add("not a valid environment variable", join_path("Env", key))
            env[key] = val
    faults.check()
    return env


def _mounts(value: Any) -> tuple[MountOptions, ...]:
    if not isinstance(value, list):
        raise ValidationError("must be a list of mounts", path="Mounts")
    faults = Faults()
    mounts = [
        faults.take(partial(_mount, item, f"Mounts[{i}]"), None) for i, item in enumerate(value)
    ]
    faults.check()
    return tuple(mount for mount in mounts if mount is not None)


def _mount(item: Any, path: str) -> MountOptions:
    fields = object_fields(item, _MOUNT_FIELDS, path)
    if fields.get("Target") is None:
        raise ValidationError("is required", path=join_path(path, "Target"))
    target = _non_empty_string(fields["Target"], join_path(path, "Target"))
    if not target.startswith("/"):
        raise ValidationError("must be an absolute path", path=join_path(path, "Target"))
    source = fields.get("Source")
    if source is not None:
        source = _non_empty_string(source, join_path(path, "Source"))
    kind = fields.get("Type")
    if kind is None:
        # As `docker run -v`: an absolute path is a bind mount, a name is a volume.
        kind = "bind" if source is not None and source.startswith("/") else "volume"
    elif not isinstance(kind, str) or kind.lower() not in _MOUNT_TYPES:
        raise ValidationError(
            f"must be one of {', '.join(_MOUNT_TYPES)}, got {kind!r}",
            path=join_path(path, "Type"),
        )
    kind = kind.lower()
    if kind == "bind" and (source is None or not source.startswith("/")):
        raise ValidationError(
            "a bind mount needs an absolute host path", path=join_path(path, "Source")
        )
    if kind == "tmpfs" and source is not None:
        raise ValidationError("a tmpfs mount has no source", path=join_path(path, "Source"))
    read_only = False
    if fields.get("ReadOnly") is not None:
        read_only = _bool(fields["ReadOnly"], join_path(path, "ReadOnly"))
    return MountOptions(target=target, type=kind, source=source, read_only=read_only)


def missing_image_message(image: str) -> str:
    """What to say when `image` is not on the engine (the plugin never pulls)."""
    return (
        f"image {image!r} is not on this Docker engine (the plugin never pulls from a "
        "registry: build, load or import it first)"
    )


class DockerInstancePlugin(InstancePlugin, Watchable, Sweepable):
    """Instances as containers on the Docker engine behind `client` (default: `docker.from_env`).

    The client is made on first use, so a plugin can be built while the engine is down; every
    engine failure is a `PluginError`. `destroy` gives a container `stop_timeout` seconds to
    stop before it is killed; stopped containers of a group are removed after `gone_retention`
    seconds, never-started ones after `created_retention`.
    """

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        stop_timeout: float = 5.0,
        gone_retention: float = 600.0,
        created_retention: float = 30.0,
    ) -> None:
        if stop_timeout < 0:
            raise ValueError(f"stop_timeout must not be negative, not {stop_timeout}")
        self._docker = client
        self._owns_client = client is None  # close() closes only a client it made
        self._client_lock = threading.Lock()
        self._stop_timeout = stop_timeout
        self._gone_retention = gone_retention
        self._created_retention = created_retention
        self._lock = threading.Lock()  # guards _gone_since and _provisioning
        self._gone_since: dict[str, float] = {}  # container ID -> when first seen not running
        self._provisioning: set[str] = set()  # containers created here, not yet started
        self._watcher = _EventWatcher(
            self._events, self._lost, name=f"{type(self).__name__}-events"
        )

    # -- the instance SPI ------------------------------------------------------------------

    def validate(self, properties: Any) -> None:
        """Check the properties' shape, then that the engine has the image (never pulled)."""
        options = self._options(properties)
        client = self.client()
        with self._engine("inspect image"):
            try:
                client.api.inspect_image(options.image)
            except docker.errors.ImageNotFound:
                raise ValidationError(missing_image_message(options.image), path="Image") from None
            if options.cpus is not None:
                ncpu = int(client.info().get("NCPU") or 0)
                if ncpu and options.cpus > ncpu:
                    raise ValidationError(
                        f"must be at most {ncpu} (the engine's CPUs), got {options.cpus}",
                        path="CPUs",
                    )

    def provision(self, spec: Spec) -> InstanceID:
        """Create and start the spec's container; return its full ID.

        Killed at any step, it leaves nothing a later look cannot settle: before `create`
        nothing exists; from it on, the container carries the group's labels. One killed
        before `start` never ran: it is not an instance, and a later look removes it after
        `created_retention` (`sweep` at once). Once started it is described, and so adopted;
        a dind node killed during its Init lines is adopted too, and its flavor's health check
        says whether it works.
        """
        options = self._options(spec.properties)
        client = self.client()
        api = client.api
        name = spec.logical_id or None
        if name is not None:
            if not _NAME_RE.match(name):
                raise PluginError(
                    f"logical ID {name!r} cannot name a container (Docker allows letters, "
                    "digits and '_.-', starting with a letter or digit, at least 2 characters)"
                )
            self._clear_name(name)
        labels = {**options.labels, **spec.tags}
        if spec.logical_id:
            labels[LABEL_LOGICAL_ID] = spec.logical_id
        command, env = self._command(options, spec)
        host_config: dict[str, Any] = {
            "network_mode": options.network_mode,
            "privileged": options.privileged,
        }
        if options.mounts:
            host_config["mounts"] = [m.to_docker() for m in options.mounts]
        if options.memory is not None:
            host_config["mem_limit"] = options.memory
        if options.cpus is not None:
            host_config["nano_cpus"] = round(options.cpus * 1e9)
        with self._engine("create a container"):
            try:
                created = api.create_container(
                    image=options.image,
                    command=command,
                    entrypoint=options.entrypoint,
                    environment=env,
                    labels=labels,
                    hostname=options.hostname,
                    user=options.user,
                    working_dir=options.working_dir,
                    name=name,
                    host_config=api.create_host_config(**host_config),
                )
            except docker.errors.ImageNotFound:
                raise PluginError(missing_image_message(options.image)) from None
            except docker.errors.APIError as exc:
                if exc.status_code == 409 and name is not None:
                    raise PluginError(f"a container named {name!r} already exists") from None
                raise
        container_id = str(created["Id"])
        with self._lock:
            self._provisioning.add(container_id)
        try:
            with self._engine("start the container"):
                api.start(container_id)
            self._after_start(container_id, spec)
        except BaseException:
            with contextlib.suppress(docker.errors.DockerException, OSError):
                api.remove_container(container_id, v=True, force=True)
            raise
        finally:
            with self._lock:
                self._provisioning.discard(container_id)
        log.debug("started container %s (%s)", container_id[:12], options.image)
        return container_id

    def destroy(self, instance_id: InstanceID) -> None:
        """Stop the container (`stop_timeout`, then SIGKILL) and remove it with its anonymous
        volumes. A container that is already gone is not an error. Killed between the two, it
        leaves an exited container: no instance, removed by `sweep` or after `gone_retention`."""
        self._check_id(instance_id)
        api = self.client().api
        with self._engine(f"destroy container {instance_id[:12]}"):
            try:
                api.stop(instance_id, timeout=math.ceil(self._stop_timeout))
                api.remove_container(instance_id, v=True, force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code != 409 or "in progress" not in str(exc.explanation or ""):
                    raise
        with self._lock:
            self._gone_since.pop(instance_id, None)

    def describe_instances(self, tags: Mapping[str, str]) -> list[Description]:
        """Every running container whose labels include all of `tags` (one engine call)."""
        wanted = {str(k): str(v) for k, v in tags.items()}
        filters = {"label": [f"{k}={v}" for k, v in wanted.items()]} if wanted else None
        client = self.client()
        with self._engine("list containers"):
            listed = client.api.containers(all=True, filters=filters)
        now = time.monotonic()
        live: list[Description] = []
        garbage: list[str] = []
        with self._lock:
            for entry in listed:
                container_id = str(entry.get("Id", ""))
                labels = {str(k): str(v) for k, v in (entry.get("Labels") or {}).items()}
                state = str(entry.get("State") or "")
                if state == _STATE_RUNNING:
                    self._gone_since.pop(container_id, None)
                    if tags_match(labels, wanted):
                        live.append(_describe(container_id, entry, labels))
                elif TAG_GROUP in labels and state in _GARBAGE_STATES:
                    since = self._gone_since.setdefault(container_id, now)
                    retention = (
                        self._created_retention if state == _STATE_CREATED else self._gone_retention
                    )
                    if now - since > retention and container_id not in self._provisioning:
                        garbage.append(container_id)
            # Forget containers that vanished without being seen again (removed by others).
            for cid, since in list(self._gone_since.items()):
                if now - since > 2 * self._gone_retention + 60:
                    del self._gone_since[cid]
        for container_id in garbage:
            self._remove_garbage(container_id)
        live.sort(key=lambda d: d.id)
        return live

    def sweep(self, tags: Mapping[str, str]) -> list[InstanceID]:
        """Remove every container made by a group (it carries `infrakit.group`) whose labels
        include all of `tags` and that is not running (exited, dead, never started, paused...),
        except one this plugin is provisioning; return their IDs."""
        wanted = {str(k): str(v) for k, v in tags.items()}
        filters = {"label": [TAG_GROUP, *(f"{k}={v}" for k, v in wanted.items())]}
        api = self.client().api
        with self._engine("list containers"):
            listed = api.containers(all=True, filters=filters)
        swept = []
        for entry in listed:
            container_id = str(entry.get("Id", ""))
            with self._lock:
                provisioning = container_id in self._provisioning
            if entry.get("State") in _NOT_DEAD or provisioning:
                continue
            with (
                self._engine(f"remove container {container_id[:12]}"),
                contextlib.suppress(docker.errors.NotFound),
            ):
                api.remove_container(container_id, v=True, force=True)
            with self._lock:
                self._gone_since.pop(container_id, None)
            swept.append(container_id)
        return sorted(swept)

    def label(self, instance_id: InstanceID, labels: Mapping[str, str]) -> None:
        """Succeed if the container already carries `labels`; Docker cannot add labels to an
        existing container, so anything else is a `PluginError` saying so."""
        self._check_id(instance_id)
        with self._engine(f"inspect container {instance_id[:12]}"):
            try:
                info = self.client().api.inspect_container(instance_id)
            except docker.errors.NotFound:
                raise PluginError(f"no such instance: {instance_id}") from None
        current = (info.get("Config") or {}).get("Labels") or {}
        missing = {k: v for k, v in labels.items() if current.get(k) != v}
        if missing:
            shown = ", ".join(f"{k}={v}" for k, v in sorted(missing.items()))
            raise PluginError(
                f"Docker cannot change the labels of existing container {instance_id[:12]} "
                f"(it lacks {shown}); replace the instance to relabel it"
            )

    def watch(self, callback: Callable[[], None]) -> Unsubscribe:
        """Call `callback` (from a daemon thread) whenever a group's container dies or goes."""
        return self._watcher.subscribe(callback)

    def close(self) -> None:
        """Stop following events and close the client if the plugin made it (it is made again
        if the plugin is used after). The containers keep running."""
        self._watcher.close()
        if not self._owns_client:
            return
        with self._client_lock:
            client, self._docker = self._docker, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    # -- the engine ------------------------------------------------------------------------

    def client(self) -> Any:
        """The Docker client, made on first use; `PluginError` if the engine cannot be reached."""
        with self._client_lock:
            if self._docker is None:
                try:
                    self._docker = docker.from_env(max_pool_size=_CLIENT_POOL)
                except (docker.errors.DockerException, OSError) as exc:
                    raise PluginError(
                        f"cannot reach the Docker engine (is it running? DOCKER_HOST?): {exc}"
                    ) from None
            return self._docker

    @contextlib.contextmanager
    def _engine(self, doing: str) -> Iterator[None]:
        """Turn the Docker SDK's and the transport's errors into `PluginError`s."""
        try:
            yield
        except PluginError:
            raise
        except docker.errors.APIError as exc:
            raise PluginError(f"Docker engine refused to {doing}: {_explain(exc)}") from None
        except (docker.errors.DockerException, OSError) as exc:
            raise PluginError(
                f"cannot reach the Docker engine at {self._base_url()} to {doing}: {exc}"
            ) from None

    def _base_url(self) -> str:
        client = self._docker
        return str(getattr(getattr(client, "api", None), "base_url", "")) or "DOCKER_HOST"

    def _events(self) -> Any:
        return self.client().events(
            decode=True,
            filters={"type": "container", "event": list(WATCH_EVENTS), "label": [TAG_GROUP]},
        )

    def _lost(self, event: Any) -> bool:
        """Whether an event's container is now gone as `describe_instances` will see it.

        The engine sends `kill` before the process dies, and `die` before the container list
        shows it stopped (the list is updated at the end of the exit handling, while the
        container is locked). Inspecting waits for that lock, so once it says "not running" a
        look will see the loss; a look at the first event alone could miss it and leave the
        loss to the next poll.
        """
        if not isinstance(event, dict):
            return True
        action = event.get("Action") or event.get("status")
        container_id = event.get("id") or (event.get("Actor") or {}).get("ID")
        if action == "destroy" or not container_id:
            return True
        try:
            state = self.client().api.inspect_container(container_id).get("State") or {}
        except docker.errors.NotFound:
            return True
        except Exception:
            return True  # when in doubt, look
        return not state.get("Running", False)

    # -- hooks for variants (dind) ---------------------------------------------------------

    def _options(self, properties: Any) -> DockerOptions:
        return parse_options(properties)

    def _command(
        self, options: DockerOptions, spec: Spec
    ) -> tuple[list[str] | None, dict[str, str]]:
        """The container's command and environment: Init as the command unless `Cmd` is given."""
        env = dict(options.env)
        env["INFRAKIT_LOGICAL_ID"] = spec.logical_id or spec.tags.get(TAG_LOGICAL_ID, "")
        if options.cmd is not None:
            env["INFRAKIT_INIT"] = spec.init
            return options.cmd, env
        if spec.init:
            return ["/bin/sh", "-c", spec.init], env
        return None, env

    def _after_start(self, container_id: str, spec: Spec) -> None:
        """Called once the container has started; raising removes it and fails the provision."""

    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _check_id(instance_id: InstanceID) -> None:
        if not isinstance(instance_id, str) or not instance_id or "/" in instance_id:
            raise PluginError(f"not a container ID: {instance_id!r}")

    def _clear_name(self, name: str) -> None:
        """Remove a stopped container called `name`; refuse if one of that name runs."""
        api = self.client().api
        with self._engine(f"inspect container {name!r}"):
            try:
                info = api.inspect_container(name)
            except docker.errors.NotFound:
                return
            state = (info.get("State") or {}).get("Status")
            if state == _STATE_RUNNING:
                raise PluginError(f"a container named {name!r} is already running")
            log.info("removing stopped container %s (%s) to reuse its name", name, state)
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_container(info["Id"], v=True, force=True)

    def _remove_garbage(self, container_id: str) -> None:
        log.info("removing container %s, stopped for a while", container_id[:12])
        try:
            with (
                self._engine(f"remove container {container_id[:12]}"),
                contextlib.suppress(docker.errors.NotFound),
            ):
                self.client().api.remove_container(container_id, v=True, force=True)
        except PluginError as error:
            log.warning("%s", error)
            return
        with self._lock:
            self._gone_since.pop(container_id, None)


def _describe(container_id: str, entry: Mapping[str, Any], labels: dict[str, str]) -> Description:
    names = entry.get("Names") or []
    name = str(names[0]).lstrip("/") if names else ""
    tags = {k: v for k, v in labels.items() if not k.startswith(PRIVATE_PREFIX)}
    return Description(
        id=container_id,
        logical_id=labels.get(LABEL_LOGICAL_ID),
        tags=tags,
        properties={"Name": name, "Image": entry.get("Image", "")},
    )


def _explain(exc: Any) -> str:
    explanation = getattr(exc, "explanation", None)
    if explanation:
        return str(explanation)
    return str(exc)


class _EventWatcher:
    """One daemon thread that follows the engine's event stream and calls every subscriber
    for each event that `matters`.

    Started with the first subscriber and stopped with the last (closing the stream unblocks
    the thread). A broken stream is reopened with backoff, and subscribers are called once on
    reconnection, since events may have been missed. Callbacks run with no lock held; one that
    raises is logged and ignored.
    """

    _FIRST_CONNECT_WAIT = 5.0
    _JOIN_TIMEOUT = 5.0

    def __init__(
        self, open_stream: Callable[[], Any], matters: Callable[[Any], bool], name: str
    ) -> None:
        self._open = open_stream
        self._matters = matters
        self._name = name
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._ids = itertools.count()
        self._session: _Session | None = None

    def subscribe(self, callback: Callable[[], None]) -> Unsubscribe:
        """Register `callback`; if it is the first, start following events and wait (a little)
        for the stream to open, so that what happens after `subscribe` returns is seen."""
        with self._lock:
            token = next(self._ids)
            self._callbacks[token] = callback
            session = None
            if self._session is None:
                session = self._session = _Session()
                session.thread = threading.Thread(
                    target=self._run, args=(session,), name=self._name, daemon=True
                )
                session.thread.start()
        if session is not None:
            session.tried.wait(self._FIRST_CONNECT_WAIT)

        def unsubscribe() -> None:
            with self._lock:
                self._callbacks.pop(token, None)
                if self._callbacks:
                    return
                session, self._session = self._session, None
            if session is not None:
                session.stop()

        return unsubscribe

    def close(self) -> None:
        """Drop every subscriber and stop the thread (waiting a little for it to end)."""
        with self._lock:
            self._callbacks.clear()
            session, self._session = self._session, None
        if session is not None:
            session.stop()
            thread = session.thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(self._JOIN_TIMEOUT)

    @property
    def running(self) -> bool:
        with self._lock:
            session = self._session
        return session is not None and session.thread is not None and session.thread.is_alive()

    def _notify(self, session: _Session) -> None:
        with self._lock:
            if session.stopped.is_set():
                return
            callbacks = list(self._callbacks.values())
        call_each(callbacks, self._name)

    def _run(self, session: _Session) -> None:
        delay = 0.1
        connected_before = False
        while not session.stopped.is_set():
            try:
                stream = self._open()
            except Exception as exc:
                log.warning("%s: cannot follow Docker events (retrying): %s", self._name, exc)
                session.tried.set()
                session.stopped.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            if not session.attach(stream):
                return
            session.tried.set()
            if connected_before:
                self._notify(session)  # events may have been missed while disconnected
            connected_before = True
            try:
                for event in stream:
                    delay = 0.1
                    if session.stopped.is_set():
                        break
                    if self._matters(event):
                        self._notify(session)
            except Exception as exc:
                if not session.stopped.is_set():
                    log.warning("%s: Docker event stream broke: %s", self._name, exc)
            finally:
                session.detach(stream)
            if not session.stopped.is_set():
                log.info("%s: Docker event stream ended; reconnecting", self._name)
                session.stopped.wait(delay)
                delay = min(delay * 2, 5.0)


class _Session:
    """One run of the watcher thread: its stop flag and the stream it is reading."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.tried = threading.Event()  # the first attempt to open the stream is over
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stream: Any = None

    def attach(self, stream: Any) -> bool:
        """Note the open stream; False (and close it) if the session was stopped meanwhile."""
        with self._lock:
            if self.stopped.is_set():
                _close_quietly(stream)
                return False
            self._stream = stream
            return True

    def detach(self, stream: Any) -> None:
        with self._lock:
            if self._stream is stream:
                self._stream = None
        _close_quietly(stream)

    def stop(self) -> None:
        """Stop the thread: set the flag and close the stream it may be blocked on."""
        with self._lock:
            self.stopped.set()
            stream, self._stream = self._stream, None
        if stream is not None:
            _close_quietly(stream)
        self.tried.set()


def _close_quietly(stream: Any) -> None:
    with contextlib.suppress(Exception):
        stream.close()
