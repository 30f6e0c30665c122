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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from infrakit.duration import parse_duration
from infrakit.jsonmodel import Faults
from infrakit.plugins._props import PropertiesModel, Strings, parse
from infrakit.spi.flavor import AllocationMethod, FlavorPlugin, Health
from infrakit.spi.instance import Attachment, Description, Spec, logical_id_or_slot

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


def _init_lines(lines: list[str]) -> list[str]:
    faults = Faults()
    for i, line in enumerate(lines):
        if "\0" in line:
            faults.add("must not contain a NUL character", i)
    size = sum(len(line.encode("utf-8", "replace")) + 1 for line in lines)
    if size > MAX_INIT_BYTES:
        faults.add(f"must be at most {MAX_INIT_BYTES} bytes in all, got {size}")
    faults.check()
    return lines


def _tags(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError("must be an object of strings")
    faults = Faults()
    if len(value) > MAX_TAGS:
        faults.add(f"must be at most {MAX_TAGS} tags, got {len(value)}")
    for key, text in value.items():
        if not key:
            faults.add("a tag name must not be empty")
        elif len(key) > MAX_TAG_NAME:
            faults.add(f"a tag name must be at most {MAX_TAG_NAME} characters", key)
        elif "=" in key or _CONTROL.search(key):
            faults.add("a tag name must not contain '=' or control characters", key)
        if not isinstance(text, str):
            faults.add("must be a string", key, value=text)
        elif len(text) > MAX_TAG_VALUE:
            faults.add(f"must be at most {MAX_TAG_VALUE} characters, got {len(text)}", key)
        elif "\0" in text:
            faults.add("must not contain a NUL character", key)
    faults.check()
    return dict(value)


def _bounded(limit: int) -> Callable[[str], str]:
    """A validator of a string of at most `limit` characters without NUL."""

    def check(text: str) -> str:
        if len(text) > limit or "\0" in text:
            raise ValueError(f"must be at most {limit} characters, no NUL")
        return text

    return check


def _health_timeout(value: Any) -> float:
    return parse_duration(value, minimum=MIN_HEALTH_TIMEOUT, maximum=MAX_HEALTH_TIMEOUT)


AttachmentText = Annotated[str, AfterValidator(_bounded(MAX_TAG_VALUE))]


class AttachmentOptions(PropertiesModel):
    """One of `Attachments`: `{"ID", "Type"}`."""

    id: AttachmentText = Field(default="", alias="ID")
    type: AttachmentText = Field(default="", alias="Type")


class HealthOptions(PropertiesModel):
    """`Health`: `{"Command", "Timeout"}`; no command, no check."""

    command: Annotated[str, AfterValidator(_bounded(MAX_INIT_BYTES))] | None = Field(
        default=None, alias="Command"
    )
    timeout: Annotated[float, BeforeValidator(_health_timeout)] = Field(
        default=DEFAULT_HEALTH_TIMEOUT, alias="Timeout"
    )


class VanillaOptions(PropertiesModel):
    """Parsed vanilla flavor properties."""

    init: Annotated[Strings, AfterValidator(_init_lines)] = Field(
        default_factory=list, alias="Init"
    )
    tags: Annotated[dict[str, str], BeforeValidator(_tags)] = Field(
        default_factory=dict, alias="Tags"
    )
    attachments_given: Annotated[list[AttachmentOptions], Field(max_length=MAX_ATTACHMENTS)] = (
        Field(default_factory=list, alias="Attachments")
    )
    health_given: HealthOptions | None = Field(default=None, alias="Health")

    @property
    def attachments(self) -> tuple[Attachment, ...]:
        return tuple(Attachment(id=a.id, type=a.type) for a in self.attachments_given)

    @property
    def health(self) -> HealthCheck | None:
        """The health check, if there is a command to run."""
        given = self.health_given
        if given is None or not given.command:
            return None
        return HealthCheck(command=given.command, timeout=given.timeout)


def parse_options(properties: Any) -> VanillaOptions:
    """Check vanilla properties and return them parsed; every fault raises one
    `ValidationError`, each with its JSON path."""
    return parse(VanillaOptions, properties)


def tag_env_name(tag: str) -> str:
    """`INFRAKIT_TAG_<UPPER_SNAKE>` for a tag name, e.g. infrakit.group -> ..._INFRAKIT_GROUP."""
    return "INFRAKIT_TAG_" + re.sub(r"[^A-Za-z0-9]", "_", tag).upper()


class VanillaFlavor(FlavorPlugin):
    """InfraKit's vanilla flavor, plus an optional health command."""

    def __init__(self) -> None:
        # Parsed properties by the identity of the object parsed: a group passes the same
        # properties for each of its instances, and parsing them 10,000 times cost a tenth
        # of a converge. An entry keeps its object alive, so an identity is never reused.
        self._parsed: dict[int, tuple[Any, VanillaOptions]] = {}

    def _options(self, properties: Any) -> VanillaOptions:
        known = self._parsed.get(id(properties))
        if known is not None and known[0] is properties:
            return known[1]
        options = parse_options(properties)
        if len(self._parsed) >= 256:
            self._parsed.clear()
        self._parsed[id(properties)] = (properties, options)
        return options

    def validate(self, properties: Any, allocation: AllocationMethod) -> None:
        """Raise `ValidationError` with the JSON path if `properties` are malformed."""
        parse_options(properties)

    def prepare(self, properties: Any, spec: Spec, allocation: AllocationMethod) -> Spec:
        """Append the Init lines to the spec's Init and merge in the Tags and Attachments.

        Flavor tags win over the spec's, except the group's own `infrakit.*` tags.
        """
        options = self._options(properties)
        init = spec.init
        if options.init:
            lines = "\n".join(options.init)
            init = f"{init}\n{lines}" if init else lines
        tags = dict(spec.tags)
        for key, value in options.tags.items():
            if not (key.startswith("infrakit.") and key in spec.tags):
                tags[key] = value
        attachments = spec.attachments
        if options.attachments_given:
            attachments += options.attachments
        return dataclasses.replace(spec, init=init, tags=tags, attachments=attachments)

    def healthy(self, properties: Any, instance: Description) -> Health:
        """Run the Health command if there is one: exit 0 healthy, else (or timeout) unhealthy."""
        check = self._options(properties).health
        if check is None:
            return Health.HEALTHY
        return run_health_check(check, instance)

    def probes_health(self, properties: Any) -> bool:
        """Only a Health command makes `healthy` check anything."""
        return self._options(properties).health is not None

    def drain(self, properties: Any, instance: Description) -> None:
        """Nothing to drain for a vanilla instance."""


def run_health_check(check: HealthCheck, instance: Description) -> Health:
    """Run `check.command` with the instance's identity and tags in the environment."""
    env = dict(os.environ)
    for key, value in instance.tags.items():
        env[tag_env_name(key)] = value
    env["INFRAKIT_INSTANCE_ID"] = instance.id
    env["INFRAKIT_LOGICAL_ID"] = logical_id_or_slot(instance) or ""
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
