"""The docker-in-docker instance plugin (InfraKit's `infrakit-dind`): each instance is a
privileged container, by default of the `docker:dind` image, that runs its own Docker engine.

It is the Docker instance plugin with three differences, after infrakit-dind:

- containers are always privileged (`"Privileged": false` is refused), and so are the execs;
- `Image` is optional and defaults to `docker:dind` (never pulled: it must be on the engine);
- the image's own command runs (for `docker:dind`, `dockerd`), unless `Cmd` says otherwise, and
  the flavor's Init is run after the start, one line at a time, each with `docker exec`
  (`/bin/sh -c LINE`, privileged). The lines run in order and each must exit 0; one that fails
  (or an exec that cannot run) removes the container and fails the provision, rather than leave
  a half-initialised node behind (a provision killed outright during the lines leaves a running
  node, which a restarted group adopts: give the flavor a health check that tells whether its
  Init finished). Each line runs in a shell of its own, so a construct that spans lines
  (`if ... fi`, a here-document) does not work; a line that should keep running must put
  itself in the background with its output redirected (`nohup cmd >/dev/null 2>&1 &`).

An engine that cannot grant privileges at all (one that itself runs in a container without
every capability: runc then fails with "unable to apply caps") can still run Init-by-exec
containers with `DindInstancePlugin(privileged=False)`, though not `docker:dind` itself.

Tags are labels and only running containers are alive, exactly as for the Docker plugin, and
the network mode defaults to `none` as there: give `"NetworkMode": "bridge"` (or a network
name) to nodes that must talk to each other.
"""

from __future__ import annotations

import logging
from typing import Any

import docker
import docker.errors
from pydantic import Field, field_validator

from infrakit.plugins._props import Text, parse
from infrakit.plugins.instance.docker import DockerInstancePlugin, DockerOptions
from infrakit.spi.errors import PluginError
from infrakit.spi.instance import Spec, logical_id_or_slot

log = logging.getLogger(__name__)

DEFAULT_DIND_IMAGE = "docker:dind"


class DindInstancePlugin(DockerInstancePlugin):
    """Instances as privileged docker-in-docker containers, their Init lines run by exec.

    Takes the Docker plugin's arguments, and `privileged` (default True: what `docker:dind`
    needs; False only for engines that cannot grant it, see the module's notes).
    """

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        stop_timeout: float = 5.0,
        gone_retention: float = 600.0,
        created_retention: float = 30.0,
        privileged: bool = True,
    ) -> None:
        super().__init__(
            client,
            stop_timeout=stop_timeout,
            gone_retention=gone_retention,
            created_retention=created_retention,
        )
        self._privileged = privileged

    def _options(self, properties: Any) -> DockerOptions:
        return parse_dind_options(properties).model_copy(update={"privileged": self._privileged})

    def _command(
        self, options: DockerOptions, spec: Spec
    ) -> tuple[list[str] | None, dict[str, str]]:
        env = dict(options.env)
        env["INFRAKIT_LOGICAL_ID"] = logical_id_or_slot(spec) or ""
        return options.cmd, env

    def _after_start(self, container_id: str, spec: Spec) -> None:
        """Run each non-blank Init line with `docker exec`; the first failure fails it all."""
        api = self.client().api
        for number, line in enumerate(spec.init.splitlines(), start=1):
            if not line.strip():
                continue
            with self._engine(f"exec Init line {number} in {container_id[:12]}"):
                try:
                    exec_id = api.exec_create(
                        container_id, ["/bin/sh", "-c", line], privileged=self._privileged
                    )["Id"]
                    output = api.exec_start(exec_id)
                    code = api.exec_inspect(exec_id).get("ExitCode")
                except docker.errors.NotFound:
                    raise PluginError(
                        f"container {container_id[:12]} stopped before Init line {number} ran"
                    ) from None
            if code != 0:
                shown = output.decode("utf-8", "replace").strip()[-500:] if output else ""
                raise PluginError(
                    f"Init line {number} ({line.strip()!r}) exited with {code}"
                    + (f": {shown}" if shown else "")
                )
            log.debug("%s: Init line %d done", container_id[:12], number)


class DindOptions(DockerOptions):
    """The Docker plugin's properties, with `Image` defaulting to docker:dind and `"Privileged":
    false` refused."""

    image: Text = Field(default=DEFAULT_DIND_IMAGE, alias="Image")

    @field_validator("privileged")
    @classmethod
    def _always_privileged(cls, privileged: bool) -> bool:
        if not privileged:
            raise ValueError("docker-in-docker containers are always privileged")
        return privileged


def parse_dind_options(properties: Any) -> DockerOptions:
    """Check instance properties and return them parsed; every fault raises one
    `ValidationError`, each with its JSON path."""
    return parse(DindOptions, properties)
