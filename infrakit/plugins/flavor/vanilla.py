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
from infrakit.plugins._props import Faults, join_path, object_fields, string_list
from infrakit.spi.errors import ValidationError
from infrakit.spi.flavor import AllocationMethod, FlavorPlugin, Health
from infrakit.spi.instance import Attachment, Description, Spec

log = logging.getLogger(__name__)

DEFAULT_HEALTH_TIMEOUT = 5.0
# Bounds (docs/spec.md): the Init travels in an environment variable (Linux caps one at 128 KiB),
# tags become labels and environment variables, a health check holds a worker while it runs.
MAX_INIT_BYTES = 64 * 1024
MAX_TAGS = 1000
MAX_TAG_NAME = 253
MAX_TAG_VALUE = 4096
MAX_ATTACHMENTS = 1000
MIN_HEALTH_TIMEOUT = 0.001
MAX_HEALTH_TIMEOUT = 600.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
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
    """Check vanilla properties and return them parsed; faults (all of them) raise
    `ValidationError`."""
    if properties is None:
        return VanillaOptions()
    faults = Faults()
    fields = object_fields(properties, ("Init", "Tags", "Attachments", "Health"), faults=faults)
    init: list[str] = []
    if fields.get("Init") is not None:
        init = faults.take(lambda: _init(fields["Init"]), [])
    tags: dict[str, str] = {}
    if fields.get("Tags") is not None:
        tags = faults.take(lambda: _tags(fields["Tags"]), {})
    no_attachments: tuple[Attachment, ...] = ()
    attachments = faults.take(lambda: _attachments(fields.get("Attachments") or []), no_attachments)
    health = None
    if fields.get("Health") is not None:
        health = faults.take(lambda: _health(fields["Health"]), None)
    faults.check()
    return VanillaOptions(tuple(init), tags, attachments, health)


def _init(value: Any) -> list[str]:
    lines = string_list(value, "Init")
    faults = Faults()
    for i, line in enumerate(lines):
        if "\0" in line:
            faults.add("must not contain a NUL character", f"Init[{i}]")
    size = sum(len(line.encode("utf-8", "replace")) + 1 for line in lines)
    if size > MAX_INIT_BYTES:
        faults.add(f"must be at most {MAX_INIT_BYTES} bytes in all, got {size}", "Init")
    faults.check()
    return lines


def _tags(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValidationError("must be an object of strings", path="Tags")
    faults = Faults()
    if len(value) > MAX_TAGS:
        faults.add(f"must be at most {MAX_TAGS} tags, got {len(value)}", "Tags")
    for key, text in value.items():
        where = join_path("Tags", key)
        if not key:
            faults.add("a tag name must not be empty", "Tags")
        elif len(key) > MAX_TAG_NAME:
            faults.add(f"a tag name must be at most {MAX_TAG_NAME} characters", where)
        elif "=" in key or _CONTROL.search(key):
            faults.add("a tag name must not contain '=' or control characters", where)
        if not isinstance(text, str):
            faults.add("must be a string", where)
        elif len(text) > MAX_TAG_VALUE:
            faults.add(f"must be at most {MAX_TAG_VALUE} characters, got {len(text)}", where)
        elif "\0" in text:
            faults.add("must not contain a NUL character", where)
    faults.check()
    return dict(value)


def _attachments(value: Any) -> tuple[Attachment, ...]:
    if not isinstance(value, list):
        raise ValidationError("must be a list", path="Attachments")
    if len(value) > MAX_ATTACHMENTS:
        raise ValidationError(f"must be at most {MAX_ATTACHMENTS} attachments", "Attachments")
    faults = Faults()
    attachments = []
    for i, item in enumerate(value):
        path = f"Attachments[{i}]"
        att = object_fields(item, ("ID", "Type"), path, faults)
        for key, text in att.items():
            if not isinstance(text, str):
                faults.add("must be a string", f"{path}.{key}")
            elif len(text) > MAX_TAG_VALUE or "\0" in text:
                faults.add(f"must be at most {MAX_TAG_VALUE} characters, no NUL", f"{path}.{key}")
        attachments.append(Attachment(id=str(att.get("ID", "")), type=str(att.get("Type", ""))))
    faults.check()
    return tuple(attachments)


def _health(value: Any) -> HealthCheck | None:
    faults = Faults()
    fields = object_fields(value, ("Command", "Timeout"), "Health", faults)
    command = fields.get("Command")
    if command is not None and not isinstance(command, str):
        faults.add("must be a string", "Health.Command")
    elif command is not None and (len(command) > MAX_INIT_BYTES or "\0" in command):
        faults.add(f"must be at most {MAX_INIT_BYTES} characters, no NUL", "Health.Command")
    timeout = DEFAULT_HEALTH_TIMEOUT
    if fields.get("Timeout") is not None:
        try:
            timeout = parse_duration(
                fields["Timeout"], minimum=MIN_HEALTH_TIMEOUT, maximum=MAX_HEALTH_TIMEOUT
            )
        except ValueError as exc:
            faults.add(str(exc), "Health.Timeout")
    faults.check()
    if isinstance(command, str) and command:
        return HealthCheck(command=command, timeout=timeout)
    return None


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

    def probes_health(self, properties: Any) -> bool:
        """Only a Health command makes `healthy` check anything."""
        return parse_options(properties).health is not None

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
