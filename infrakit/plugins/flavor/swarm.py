"""The swarm flavor: makes each instance a node of the Docker swarm that this engine manages.

Properties (keys case-insensitive as Go's JSON):

    {"Type": "manager" | "worker",             required
     "DockerRestartCommand": "shell command",  default: service docker restart ||
                                               systemctl restart docker || true
     "DaemonConfig": "/etc/docker/daemon.json", where the new machine's engine reads its labels
     "InitScript": "template" | ["lines"]}     replaces the default Init; `{{.NAME}}` placeholders

A manager group needs an odd number of LogicalIDs (managers are a named Raft quorum); workers
may be a Size or LogicalIDs.

As InfraKit's swarm flavor: `prepare` asks the swarm for the join token of the Type and for the
manager's address, tags the instance `swarm-association-id=<uuid>` and writes an Init that puts
the same label on the new machine's engine (its daemon.json), restarts the engine, waits for it
to answer with the label and runs `docker swarm join`. `healthy` finds the node carrying the
label in the swarm's node list, and `drain` sets the node to `drain` and, for workers, removes
it from the swarm.

The flavor talks to the engine through the Docker SDK: `SwarmFlavor(client)`, or by default the
engine `docker.from_env()` finds (DOCKER_HOST...), which must be a swarm manager.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import posixpath
import re
import shlex
import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BeforeValidator, Field

from infrakit.jsonmodel import Faults, describe_type, shown
from infrakit.plugins._props import PropertiesModel, parse
from infrakit.spi.errors import PluginError, ValidationError
from infrakit.spi.flavor import AllocationMethod, FlavorPlugin, Health
from infrakit.spi.instance import Description, Spec

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)

ASSOCIATION_TAG = "swarm-association-id"
MANAGER = "manager"
WORKER = "worker"
TYPES = (MANAGER, WORKER)
DEFAULT_RESTART_COMMAND = "service docker restart || systemctl restart docker || true"
DEFAULT_DAEMON_CONFIG = "/etc/docker/daemon.json"
SWARM_PORT = 2377
# How long the Init waits for the restarted engine to answer with its new label, in seconds.
ENGINE_WAIT = 120
_UPDATE_ATTEMPTS = 3  # node updates race with the swarm bumping the node's version

# The placeholders an InitScript may use, as InfraKit's templates wrote them: `{{.NAME}}`.
TEMPLATE_VARIABLES = (
    "ASSOCIATION_ID",  # the uuid this instance is tagged with
    "ASSOCIATION_TAG",  # swarm-association-id
    "LABEL",  # swarm-association-id=<uuid>, the engine label to set
    "JOIN_TOKEN",  # the swarm's join token for the Type
    "MANAGER_ADDR",  # host:port of the manager to join
    "MY_IP",  # InfraKit's name for MANAGER_ADDR
    "RESTART_DOCKER",  # the DockerRestartCommand
    "DAEMON_CONFIG",  # the DaemonConfig path
    "TYPE",  # manager or worker
    "JOIN_COMMAND",  # the whole `docker swarm join ...` line
)
MAX_INIT_SCRIPT_BYTES = 64 * 1024  # as the vanilla flavor's Init (docs/spec.md)
_PLACEHOLDER = re.compile(r"\{\{\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

# The default Init. Unlike InfraKit's it merges the label into an existing daemon.json (with
# python3) rather than overwrite it, and waits for the restarted engine before joining. Every
# line is a whole command, so that plugins that run an Init line by line (dind) can run it too.
DEFAULT_INIT_SCRIPT = "\n".join(
    (
        "#!/bin/sh",
        "# InfraKit swarm flavor: label this engine {{.LABEL}}, restart it, join as a {{.TYPE}}.",
        "set -o errexit",
        "mkdir -p {{.DAEMON_CONFIG_DIR}}",
        "if [ ! -s {{.DAEMON_CONFIG}} ];"
        ' then printf \'{"labels": ["%s"]}\\n\' {{.LABEL}} >{{.DAEMON_CONFIG}};'
        " elif command -v python3 >/dev/null;"
        " then python3 -c {{.MERGE_LABEL}} {{.DAEMON_CONFIG}} {{.LABEL}};"
        ' else echo "swarm flavor: python3 is needed to add the label to "{{.DAEMON_CONFIG}} >&2;'
        " exit 1; fi",
        "{{.RESTART_DOCKER}}",
        "n=0; until docker info 2>/dev/null | grep -qF {{.LABEL}};"
        ' do n=$((n + 1)); if [ "$n" -ge {{.ENGINE_WAIT}} ];'
        ' then echo "swarm flavor: the engine did not come back labelled "{{.LABEL}} >&2; exit 1;'
        " fi; sleep 1; done",
        "{{.JOIN_COMMAND}}",
        "",
    )
)

# Python (one line) that puts the label (argv[2]) into the daemon.json at argv[1], replacing any
# older association label and keeping everything else.
_MERGE_LABEL = (
    "import json, os, sys; path, label = sys.argv[1:]; config = json.load(open(path));"
    ' key = label.split("=", 1)[0] + "=";'
    ' config["labels"] = [x for x in config.get("labels", []) if not x.startswith(key)] + [label];'
    ' out = open(path + ".infrakit", "w"); json.dump(config, out, indent=2); out.close();'
    ' os.replace(path + ".infrakit", path)'
)


def _type(kind: Any) -> Any:
    if kind is None:
        raise ValueError(f"required: one of {', '.join(TYPES)}")
    if not isinstance(kind, str) or kind not in TYPES:
        raise ValueError(f"must be one of {', '.join(TYPES)}, not {shown(kind)}")
    return kind


def _command(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ValueError("must be a non-empty string without NUL")
    return value


def _init_script(value: Any) -> Any:
    """The script: a string, or a list of lines (each a string)."""
    if isinstance(value, str):
        script = value
    else:
        if not isinstance(value, list):
            raise ValueError(f"must be a string or a list of strings, got {describe_type(value)}")
        faults = Faults()
        for i, line in enumerate(value):
            if not isinstance(line, str):
                faults.add(f"must be a string, got {describe_type(line)}", i, value=line)
        faults.check()
        script = "\n".join(value) + "\n"
    if len(script.encode("utf-8", "replace")) > MAX_INIT_SCRIPT_BYTES:
        raise ValueError(f"must be at most {MAX_INIT_SCRIPT_BYTES} bytes")
    unknown = sorted(set(_PLACEHOLDER.findall(script)) - set(TEMPLATE_VARIABLES))
    if unknown:
        raise ValueError(
            "unknown placeholder(s) "
            + ", ".join("{{." + name + "}}" for name in unknown)
            + f" (known: {', '.join(TEMPLATE_VARIABLES)})"
        )
    return script


ShellText = Annotated[str, BeforeValidator(_command)]


class SwarmOptions(PropertiesModel):
    """Parsed swarm flavor properties (see the module's doc)."""

    type: Annotated[str, BeforeValidator(_type)] = Field(
        default=None, alias="Type", validate_default=True
    )
    restart_command: ShellText = Field(
        default=DEFAULT_RESTART_COMMAND, alias="DockerRestartCommand"
    )
    daemon_config: ShellText = Field(default=DEFAULT_DAEMON_CONFIG, alias="DaemonConfig")
    init_script: Annotated[str, BeforeValidator(_init_script)] | None = Field(
        default=None, alias="InitScript"
    )


def parse_options(properties: Any) -> SwarmOptions:
    """Check swarm flavor properties and return them parsed; every fault raises one
    `ValidationError`, each with its JSON path."""
    return parse(SwarmOptions, properties)


def validate_allocation(options: SwarmOptions, allocation: AllocationMethod) -> None:
    """Managers are a named Raft quorum: an odd number of LogicalIDs. Workers may use a Size."""
    if options.type != MANAGER:
        return
    ids = allocation.logical_ids
    if ids is None:
        raise ValidationError(
            "a manager group needs LogicalIDs (an odd number: 1, 3, 5...), not a Size:"
            " swarm managers form a Raft quorum of named members",
            path="Allocation.LogicalIDs",
        )
    if len(ids) % 2 == 0:
        raise ValidationError(
            f"a manager group needs an odd number of LogicalIDs (1, 3, 5...), not {len(ids)}:"
            " an even-sized Raft quorum tolerates no more failures than one member fewer",
            path="Allocation.LogicalIDs",
        )


def render_init(template: str, values: Mapping[str, str]) -> str:
    """Replace each `{{.NAME}}` in `template` by `values[NAME]`; other `{{...}}` stay as is."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        return values[name] if name in values else match.group(0)

    return _PLACEHOLDER.sub(substitute, template)


class SwarmFlavor(FlavorPlugin):
    """InfraKit's swarm flavor: instances join the swarm of the engine `client` talks to."""

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        self._client = client
        self._lock = threading.Lock()

    # -- the plugin contract --------------------------------------------------------------

    def validate(self, properties: Any, allocation: AllocationMethod) -> None:
        """Raise `ValidationError` with the JSON path if properties or allocation do not fit."""
        validate_allocation(parse_options(properties), allocation)

    def prepare(self, properties: Any, spec: Spec, allocation: AllocationMethod) -> Spec:
        """Tag the spec with a fresh association ID and give it the Init that joins the swarm.

        An Init already in the spec runs after the join.
        """
        options = parse_options(properties)
        token, manager_addr = self._join_parameters(options.type)
        association_id = uuid.uuid4().hex
        label = f"{ASSOCIATION_TAG}={association_id}"
        join = f"docker swarm join --token {shlex.quote(token)} {shlex.quote(manager_addr)}"
        values = {
            "ASSOCIATION_ID": association_id,
            "ASSOCIATION_TAG": ASSOCIATION_TAG,
            "LABEL": label,
            "JOIN_TOKEN": token,
            "MANAGER_ADDR": manager_addr,
            "MY_IP": manager_addr,
            "RESTART_DOCKER": options.restart_command,
            "DAEMON_CONFIG": options.daemon_config,
            "TYPE": options.type,
            "JOIN_COMMAND": join,
        }
        if options.init_script is None:
            init = render_init(
                DEFAULT_INIT_SCRIPT,
                {
                    **values,
                    "LABEL": shlex.quote(label),
                    "DAEMON_CONFIG": shlex.quote(options.daemon_config),
                    "DAEMON_CONFIG_DIR": shlex.quote(
                        posixpath.dirname(options.daemon_config) or "."
                    ),
                    "MERGE_LABEL": shlex.quote(_MERGE_LABEL),
                    "ENGINE_WAIT": str(ENGINE_WAIT),
                },
            )
        else:
            init = render_init(options.init_script, values)
        if spec.init:
            init = f"{init.rstrip()}\n{spec.init}"
        return dataclasses.replace(
            spec, init=init, tags={**spec.tags, ASSOCIATION_TAG: association_id}
        )

    def healthy(self, properties: Any, instance: Description) -> Health:
        """Judge the swarm node that carries the instance's association label.

        No association tag: unhealthy (it can never be found). No such node yet: unknown (not
        joined yet). A node that is `ready` (and, for managers, `reachable`): healthy; `down`,
        `disconnected` or `unreachable`: unhealthy. Several nodes with the label (one that left
        and joined again): the best of them counts.
        """
        options = parse_options(properties)
        association_id = instance.tags.get(ASSOCIATION_TAG)
        if not association_id:
            log.info("%s has no %s tag: reporting unhealthy", instance.id, ASSOCIATION_TAG)
            return Health.UNHEALTHY
        nodes = list(self._nodes_of(association_id))
        if not nodes:
            return Health.UNKNOWN
        verdicts = [node_health(node.attrs, options.type) for node in nodes]
        for verdict in (Health.HEALTHY, Health.UNKNOWN):
            if verdict in verdicts:
                return verdict
        return Health.UNHEALTHY

    def drain(self, properties: Any, instance: Description) -> None:
        """Set the instance's node to `drain` so its tasks move away; remove it if a worker.

        A node that is not (or no longer) in the swarm is nothing to drain. Managers stay
        members: removing one from a quorum is for an operator (`docker node demote`) to do.
        """
        import docker.errors

        options = parse_options(properties)
        association_id = instance.tags.get(ASSOCIATION_TAG)
        if not association_id:
            log.info("%s has no %s tag: nothing to drain", instance.id, ASSOCIATION_TAG)
            return
        for node in self._nodes_of(association_id):
            with _docker_errors(f"draining node {node.id} of {instance.id}"):
                try:
                    self._set_availability(node, "drain")
                    if options.type == WORKER:
                        node.remove(force=True)
                        log.info("removed worker node %s of %s", node.id, instance.id)
                except docker.errors.NotFound:
                    continue  # gone meanwhile: nothing left to do

    # -- talking to the engine ------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        """The Docker client; made from the environment on first use if none was given."""
        with self._lock:
            if self._client is None:
                import docker

                with _docker_errors("connecting to the Docker engine"):
                    self._client = docker.from_env()
            return self._client

    def _join_parameters(self, kind: str) -> tuple[str, str]:
        """The join token for `kind` and the `host:port` of this manager."""
        with _docker_errors("asking the engine about its swarm"):
            info = self.client.info()
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active":
            raise PluginError("this engine is not a swarm manager: run `docker swarm init` first")
        if not swarm.get("ControlAvailable"):
            raise PluginError(
                "this engine is a swarm worker, not a manager: point the swarm flavor at a"
                " manager's engine (DOCKER_HOST) to read join tokens"
            )
        with _docker_errors("reading the swarm's join tokens"):
            tokens = self.client.swarm.attrs.get("JoinTokens") or {}
        token = tokens.get(kind.capitalize())
        if not token:
            raise PluginError(f"the swarm did not give a {kind} join token")
        addr = ""
        for manager in swarm.get("RemoteManagers") or ():
            if manager.get("NodeID") == swarm.get("NodeID"):
                addr = manager.get("Addr") or ""
        if not addr and swarm.get("NodeAddr"):
            addr = f"{swarm['NodeAddr']}:{SWARM_PORT}"
        if not addr:
            raise PluginError("cannot tell this swarm manager's address from `docker info`")
        return token, addr

    def _nodes_of(self, association_id: str) -> Iterator[Any]:
        """The swarm nodes labelled with `association_id`.

        The label is looked for on the node's engine (what the Init sets in daemon.json) and
        among the node's swarm labels (`docker node update --label-add`), which a manager can
        set on an existing node without restarting its engine: that is how an operator
        associates a node that the Init did not make.
        """
        with _docker_errors("listing the swarm's nodes"):
            nodes = self.client.nodes.list()
        for node in nodes:
            attrs = node.attrs
            engine_labels = ((attrs.get("Description") or {}).get("Engine") or {}).get("Labels")
            node_labels = (attrs.get("Spec") or {}).get("Labels")
            if association_id in (
                (engine_labels or {}).get(ASSOCIATION_TAG),
                (node_labels or {}).get(ASSOCIATION_TAG),
            ):
                yield node

    def _set_availability(self, node: Any, availability: str) -> None:
        """Set the node's availability, keeping the rest of its spec; retry on a stale version."""
        import docker.errors

        for attempt in range(_UPDATE_ATTEMPTS):
            spec = dict(node.attrs.get("Spec") or {})
            if spec.get("Availability") == availability:
                return
            spec["Availability"] = availability
            try:
                node.update(spec)
                return
            except docker.errors.APIError as error:
                if error.status_code == 404 or attempt == _UPDATE_ATTEMPTS - 1:
                    raise
                log.debug("updating node %s: %s; retrying", node.id, error)
                node.reload()


def node_health(attrs: Mapping[str, Any], kind: str) -> Health:
    """The health of a swarm node, from its `docker node inspect` attributes."""
    state = (attrs.get("Status") or {}).get("State")
    if state in ("down", "disconnected"):
        return Health.UNHEALTHY
    if state != "ready":
        return Health.UNKNOWN
    if kind != MANAGER:
        return Health.HEALTHY
    manager_status = attrs.get("ManagerStatus")
    if manager_status is None:
        log.warning("node %s is in a manager group but is not a manager", attrs.get("ID"))
        return Health.UNKNOWN
    reachability = manager_status.get("Reachability")
    if reachability == "reachable":
        return Health.HEALTHY
    if reachability == "unreachable":
        return Health.UNHEALTHY
    return Health.UNKNOWN


@contextlib.contextmanager
def _docker_errors(doing: str) -> Iterator[None]:
    """Turn Docker SDK and connection errors into `PluginError`s that say what was being done."""
    import docker.errors

    try:
        yield
    except (docker.errors.DockerException, OSError) as error:  # requests' errors are OSErrors
        raise PluginError(f"{doing}: {_explain(error)}") from error


def _explain(error: BaseException) -> str:
    explanation = getattr(error, "explanation", None)
    return str(explanation or error)
