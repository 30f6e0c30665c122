"""The vanilla flavor: adds Init lines and Tags to a spec, and optionally checks health by command.

Properties (all optional, keys case-insensitive as Go's JSON):
`{"Init": [lines], "Tags": {k: v}, "Attachments": [{"ID", "Type"}],
"Health": {"Command": "shell command", "Timeout": "2s"}}`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

from infrakit.duration import parse_duration
from infrakit.plugins._props import object_fields, string_list, string_map
from infrakit.spi.errors import ValidationError
from infrakit.spi.flavor import AllocationMethod, FlavorPlugin, Health
from infrakit.spi.instance import Attachment, Description, Spec

log = logging.getLogger(__name__)

DEFAULT_HEALTH_TIMEOUT = 5.0
_OUTPUT_TAIL = 500  # bytes of a failing health command's output to log


@dataclass(frozen=True)
class HealthCheck:
    """A shell command whose exit status says whether an instance is healthy."""

    command: str
    timeout: float = DEFAULT_HEALTH_TIMEOUT


@dataclass(frozen=True)
class VanillaOptions:
    """Parsed vanilla flavor properties."""

    init: tuple[str, ...] = ()
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()
    health: HealthCheck | None = None


def parse_options(properties: Any) -> VanillaOptions:
    """Check vanilla properties and return them parsed; faults raise `ValidationError`."""
    if properties is None:
        return VanillaOptions()
    fields = object_fields(properties, ("Init", "Tags", "Attachments", "Health"))
    init = string_list(fields["Init"], "Init") if fields.get("Init") is not None else []
    tags = string_map(fields["Tags"], "Tags") if fields.get("Tags") is not None else {}
    raw_attachments = fields.get("Attachments") or []
    if not isinstance(raw_attachments, list):
        raise ValidationError("must be a list", path="Attachments")
    attachments = []
    for i, item in enumerate(raw_attachments):
        path = f"Attachments[{i}]"
        att = object_fields(item, ("ID", "Type"), path)
        for key, value in att.items():
            if not isinstance(value, str):
                raise ValidationError("must be a string", path=f"{path}.{key}")
        attachments.append(Attachment(id=att.get("ID", ""), type=att.get("Type", "")))
    health = None
    if fields.get("Health") is not None:
        hfields = object_fields(fields["Health"], ("Command", "Timeout"), "Health")
        command = hfields.get("Command")
        if command is not None and not isinstance(command, str):
            raise ValidationError("must be a string", path="Health.Command")
        timeout = DEFAULT_HEALTH_TIMEOUT
        if hfields.get("Timeout") is not None:
            try:
                timeout = parse_duration(hfields["Timeout"])
            except ValueError as exc:
                raise ValidationError(str(exc), path="Health.Timeout") from exc
            if timeout <= 0:
                raise ValidationError("must be positive", path="Health.Timeout")
        if command:
            health = HealthCheck(command=command, timeout=timeout)
    return VanillaOptions(tuple(init), tags, tuple(attachments), health)


def tag_env_name(tag: str) -> str:
    """`INFRAKIT_TAG_<UPPER_SNAKE>` for a tag name, e.g. infrakit.group -> ..._INFRAKIT_GROUP."""
    return "INFRAKIT_TAG_" + re.sub(r"[^A-Za-z0-9]", "_", tag).upper()


class VanillaFlavor(FlavorPlugin):
    """InfraKit's vanilla flavor, plus an optional health command."""

    def validate(self, properties: Any, allocation: AllocationMethod) -> None:
        """Raise `ValidationError` with the JSON path if `properties` are malformed."""
        parse_options(properties)

    def prepare(self, properties: Any, spec: Spec, allocation: AllocationMethod) -> Spec:
        """Append the Init lines to the spec's Init and merge in the Tags and Attachments.

        Flavor tags win over the spec's, except the group's own `infrakit.*` tags.
        """
        options = parse_options(properties)
        init = spec.init
        if options.init:
            lines = "\n".join(options.init)
            init = f"{init}\n{lines}" if init else lines
        tags = dict(spec.tags)
        for key, value in options.tags.items():
            if not (key.startswith("infrakit.") and key in spec.tags):
                tags[key] = value
        return dataclasses.replace(
            spec, init=init, tags=tags, attachments=spec.attachments + options.attachments
        )

    def healthy(self, properties: Any, instance: Description) -> Health:
        """Run the Health command if there is one: exit 0 healthy, else (or timeout) unhealthy."""
        check = parse_options(properties).health
        if check is None:
            return Health.HEALTHY
        return run_health_check(check, instance)

    def drain(self, properties: Any, instance: Description) -> None:
        """Nothing to drain for a vanilla instance."""


def run_health_check(check: HealthCheck, instance: Description) -> Health:
    """Run `check.command` with the instance's identity and tags in the environment."""
    env = dict(os.environ)
    for key, value in instance.tags.items():
        env[tag_env_name(key)] = value
    env["INFRAKIT_INSTANCE_ID"] = instance.id
    env["INFRAKIT_LOGICAL_ID"] = instance.logical_id or ""
    with tempfile.TemporaryFile() as output:
        try:
            child = subprocess.Popen(
                ["/bin/sh", "-c", check.command],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # so a timeout kills the whole pipeline
            )
        except (OSError, ValueError) as exc:
            log.warning("cannot run health check for %s: %s", instance.id, exc)
            return Health.UNKNOWN
        try:
            code = child.wait(check.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(child)
            log.info("health check for %s timed out after %gs", instance.id, check.timeout)
            return Health.UNHEALTHY
        if code == 0:
            return Health.HEALTHY
        output.seek(max(0, output.tell() - _OUTPUT_TAIL))
        tail = output.read().decode(errors="replace").strip()
        log.debug("health check for %s exited %d: %s", instance.id, code, tail)
        return Health.UNHEALTHY


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        child.kill()
    child.wait()
