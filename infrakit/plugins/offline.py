"""Check the properties of a built-in plugin kind without making the plugin, for `infrakit
validate`: the same checks as the plugin's own `validate`, but nothing is written or started.

The Docker kinds also ask the engine whether the image is there (read-only); when no engine
answers, that part is a warning, not a fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infrakit.spi.errors import PluginError, ValidationError
from infrakit.spi.flavor import AllocationMethod

INSTANCE_KINDS = ("file", "process", "docker", "dind", "vagrant", "gcp", "aws", "terraform")
FLAVOR_KINDS = ("vanilla", "zookeeper", "swarm")
_ENGINE_TIMEOUT = 5  # seconds for the Docker engine to answer an offline check


@dataclass
class Findings:
    """What a check found: faults (JSON path under the properties, reason) and warnings."""

    problems: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def role(kind: str) -> str | None:
    """`"Instance"` or `"Flavor"` for a built-in kind, None for an unknown one."""
    if kind in INSTANCE_KINDS:
        return "Instance"
    if kind in FLAVOR_KINDS:
        return "Flavor"
    return None


def builtin_names() -> dict[str, str]:
    """Plugin name -> kind for InfraKit's conventional names of the built-in kinds
    (`instance-docker`, `flavor-vanilla`, ...)."""
    names = {f"instance-{kind}": kind for kind in INSTANCE_KINDS}
    names.update({f"flavor-{kind}": kind for kind in FLAVOR_KINDS})
    return names


def check(kind: str, properties: Any, allocation: AllocationMethod | None = None) -> Findings:
    """Validate `properties` as the plugin of `kind` would (a flavor against `allocation`)."""
    findings = Findings()
    try:
        _check(kind, properties, allocation or AllocationMethod())
    except ValidationError as error:
        findings.problems.extend(error.problems)
        return findings
    if kind in ("docker", "dind"):
        _check_engine(kind, properties, findings)
    return findings


def _check(kind: str, properties: Any, allocation: AllocationMethod) -> None:
    if kind == "file":
        from infrakit.plugins.instance.file import check_properties

        check_properties(properties)
    elif kind == "process":
        from infrakit.plugins.instance import process

        process.parse_options(properties)
    elif kind == "docker":
        from infrakit.plugins.instance import docker

        docker.parse_options(properties)
    elif kind == "dind":
        from infrakit.plugins.instance.dind import parse_dind_options

        parse_dind_options(properties)
    elif kind == "vagrant":
        from infrakit.plugins.instance import vagrant

        vagrant.render_vagrantfile(vagrant.parse_options(properties), "vagrant-000000000000")
    elif kind == "gcp":
        from infrakit.plugins.instance.gcp import parse_properties

        parse_properties(properties)
    elif kind == "aws":
        from infrakit.plugins.instance import aws

        aws.parse_options(properties)
    elif kind == "terraform":
        from infrakit.plugins.instance import terraform

        terraform.parse_properties(properties)
    elif kind == "vanilla":
        from infrakit.plugins.flavor import vanilla

        vanilla.parse_options(properties)
    elif kind == "zookeeper":
        from infrakit.plugins.flavor import zookeeper

        zookeeper.check_ensemble(zookeeper.parse_options(properties), allocation)
    elif kind == "swarm":
        from infrakit.plugins.flavor import swarm

        swarm.validate_allocation(swarm.parse_options(properties), allocation)
    else:
        raise ValueError(f"unknown plugin kind {kind!r}")


def _check_engine(kind: str, properties: Any, findings: Findings) -> None:
    """Ask the Docker engine about the image (read-only); no engine is only a warning."""
    import docker

    from infrakit.plugins.instance.dind import DindInstancePlugin
    from infrakit.plugins.instance.docker import DockerInstancePlugin

    try:
        client = docker.from_env(timeout=_ENGINE_TIMEOUT)
    except Exception as error:  # the SDK raises several kinds when no engine answers
        findings.warnings.append(f"the image could not be checked: no Docker engine ({error})")
        return
    plugin = DindInstancePlugin(client) if kind == "dind" else DockerInstancePlugin(client)
    try:
        plugin.validate(properties)
    except ValidationError as error:
        findings.problems.extend(error.problems)
    except PluginError as error:
        findings.warnings.append(f"the image could not be checked: {error}")
    finally:
        plugin.close()
        client.close()
