"""The Docker instance plugin: each instance is a container on one Docker engine.

Its properties are in `options.py`.

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
- The container is named after its group and logical ID, or a Size group's slot (`workers-0`;
  the rule is in `names.py`). A dead container (exited, dead, never started) of the same group
  and cluster that holds the name is removed first; a live one of ours (an old instance still
  running beside its replacement), or any container that is not ours, is left alone and the new
  one takes the name with a short suffix (`workers-0-3fa9c1`).
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
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import docker
import docker.errors

from infrakit.plugins.instance.docker.events import EventWatcher
from infrakit.plugins.instance.docker.names import is_ours, suffixed, wanted_name
from infrakit.plugins.instance.docker.options import (
    LABEL_LOGICAL_ID,
    PRIVATE_PREFIX,
    DockerOptions,
    parse_options,
)
from infrakit.spi.errors import PluginError, ValidationError
from infrakit.spi.instance import (
    TAG_GROUP,
    Description,
    InstanceID,
    InstancePlugin,
    Spec,
    Sweepable,
    Unsubscribe,
    Watchable,
    logical_id_or_slot,
    tags_match,
)

log = logging.getLogger(__name__)

# Events that mean "a container may have gone"; only containers made by a group are followed.
WATCH_EVENTS = ("die", "stop", "kill", "destroy", "oom")
_STATE_RUNNING = "running"
_STATE_CREATED = "created"
# Not running and never coming back by itself: removed after `gone_retention`
# (`created_retention` for containers never started).
_GARBAGE_STATES = frozenset({"exited", "dead", _STATE_CREATED})
# States `sweep` leaves alone: a live container, one the engine is removing already.
_NOT_DEAD = frozenset({_STATE_RUNNING, "removing"})
_CLIENT_POOL = 32  # concurrent calls before urllib3 discards connections
_NAME_TRIES = 3  # creates refused for a name taken meanwhile before giving up


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
        self._watcher = EventWatcher(self._events, self._lost, name=f"{type(self).__name__}-events")

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
        name = wanted_name(spec)
        if name is not None:
            name = self._claim_name(name, spec)
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
        create = {
            "image": options.image,
            "command": command,
            "entrypoint": options.entrypoint,
            "environment": env,
            "labels": labels,
            "hostname": options.hostname,
            "user": options.user,
            "working_dir": options.working_dir,
            "host_config": api.create_host_config(**host_config),
        }
        with self._engine("create a container"):
            for attempt in range(1, _NAME_TRIES + 1):
                try:
                    created = api.create_container(**create, name=name)
                    break
                except docker.errors.ImageNotFound:
                    raise PluginError(missing_image_message(options.image)) from None
                except docker.errors.APIError as exc:
                    # Taken since we looked (by a provision beside this one): another suffix.
                    if exc.status_code != 409 or name is None or attempt == _NAME_TRIES:
                        raise
                    name = suffixed(wanted_name(spec) or name)
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
        env["INFRAKIT_LOGICAL_ID"] = logical_id_or_slot(spec) or ""
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

    def _claim_name(self, name: str, spec: Spec) -> str:
        """The name the spec's container can take: `name` if free, or once the dead container
        of ours holding it is removed; else `name` with a suffix, the holder left alone."""
        api = self.client().api
        with self._engine(f"inspect container {name!r}"):
            try:
                info = api.inspect_container(name)
            except docker.errors.NotFound:
                return name
            holder = str(info.get("Id", ""))
            state = (info.get("State") or {}).get("Status")
            labels = (info.get("Config") or {}).get("Labels") or {}
            if not is_ours(labels, spec):
                log.info(
                    "container name %s is taken by %s (%s), which is not this group's:"
                    " leaving it alone and naming the new container after it with a suffix",
                    name,
                    holder[:12],
                    state,
                )
                return suffixed(name)
            with self._lock:
                provisioning = holder in self._provisioning
            if state not in _GARBAGE_STATES or provisioning:
                return suffixed(name)  # a live one of ours, such as the one being replaced
            log.info("removing %s container %s to reuse its name %s", state, holder[:12], name)
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_container(holder, v=True, force=True)
            with self._lock:
                self._gone_since.pop(holder, None)
            return name

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
