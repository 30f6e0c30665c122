"""The Vagrantfile of a vagrant instance: the built-in templates, or `Template`, the path of a
template of your own, in Python `string.Template` syntax (`$Name` or `${Name}`; `$$` for a
literal `$`, which Ruby rarely needs). `{...}` is *not* a placeholder: Ruby uses braces for
blocks and hashes. Each placeholder becomes a Ruby literal:
`$Box` (a string, or `nil`), `$CPUs`, `$Memory` (integers), `$Hostname`, `$InstanceID`,
`$Provider` (strings), `$LogicalID` (a named group's logical ID, else `nil`), `$Env` (a hash of
the `INFRAKIT_INSTANCE_ID` and `INFRAKIT_LOGICAL_ID` variables, the latter a Size group's slot
when there is no logical ID), `$NetworkOptions` (`, ip: '...'` when
the logical ID is an IPv4 address, else `, type: 'dhcp'`, for `config.vm.network
"private_network"$NetworkOptions`) and `$DockerProvider` (the whole `config.vm.provider "docker"`
block built from `Docker`, or nothing for another provider).
"""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Mapping

from infrakit.plugins.instance.vagrant.options import DockerOptions, VagrantOptions
from infrakit.spi.errors import ValidationError

BOOT_SCRIPT = "boot.sh"
BOOT_STATUS = "boot.status"  # docker provider: boot.sh's exit status, written by the container
SYNCED_DIR = "/vagrant"
INSTANCE_LABEL = "infrakit.vagrant.instance"  # docker label on each machine's container
DEFAULT_CPUS = 2
DEFAULT_MEMORY = 512
DEFAULT_NAME_PREFIX = "infrakit"

# The docker machine's command: run boot.sh once, record how it ended, then stay up like a VM.
BOOT_COMMAND = (
    "trap 'exit 0' TERM INT; "
    f"/bin/sh {SYNCED_DIR}/{BOOT_SCRIPT}; echo $? > {SYNCED_DIR}/{BOOT_STATUS}; "
    "while :; do sleep 3600 & wait $!; done"
)

VM_TEMPLATE = """\
# Made by infrakit's vagrant instance plugin for instance $InstanceID.
Vagrant.configure("2") do |config|
  config.vm.box = $Box
  config.vm.hostname = $Hostname
  config.vm.network "private_network"$NetworkOptions
  config.vm.provision "shell", path: "boot.sh", env: $Env
  config.vm.provider "virtualbox" do |vb|
    vb.memory = $Memory
    vb.cpus = $CPUs
  end
  config.vm.provider "libvirt" do |lv|
    lv.memory = $Memory
    lv.cpus = $CPUs
  end
end
"""

DOCKER_TEMPLATE = """\
# Made by infrakit's vagrant instance plugin for instance $InstanceID.
Vagrant.configure("2") do |config|
  config.vm.hostname = $Hostname
  config.vm.synced_folder ".", "/vagrant"
$DockerProvider
end
"""


def ruby_string(value: str) -> str:
    """A single-quoted Ruby string literal: no interpolation, only `\\\\` and `\\'` escapes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ruby_list(items: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(ruby_string(i) for i in items) + "]"


def _ruby_hash(items: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{ruby_string(k)} => {ruby_string(v)}" for k, v in items.items()) + "}"


def _ruby_optional(value: str | None) -> str:
    return "nil" if value is None else ruby_string(value)


def _docker_block(
    docker: DockerOptions,
    options: VagrantOptions,
    instance_id: str,
    env: Mapping[str, str],
) -> str:
    """The `config.vm.provider "docker"` block of the Vagrantfile."""
    create_args: list[str] = []
    if docker.network_mode is not None:
        create_args += ["--network", docker.network_mode]
    if options.cpus is not None:
        create_args += ["--cpus", str(options.cpus)]
    if options.memory is not None:
        create_args += ["--memory", f"{options.memory}m"]
    create_args += ["--label", f"{INSTANCE_LABEL}={instance_id}", *docker.create_args]
    cmd = docker.cmd if docker.cmd is not None else ("/bin/sh", "-c", BOOT_COMMAND)
    prefix = docker.name or DEFAULT_NAME_PREFIX
    lines = [
        '  config.vm.provider "docker" do |d|',
        f"    d.image = {ruby_string(docker.image)}",
        f"    d.name = {ruby_string(f'{prefix}-{instance_id}')}",
        f"    d.cmd = {_ruby_list(cmd)}",
        "    d.has_ssh = false",
        "    d.remains_running = true",
        f"    d.env = {_ruby_hash({**docker.env, **env})}",
        f"    d.create_args = {_ruby_list(create_args)}",
    ]
    if docker.ports:
        lines.append(f"    d.ports = {_ruby_list(docker.ports)}")
    if docker.volumes:
        lines.append(f"    d.volumes = {_ruby_list(docker.volumes)}")
    if docker.privileged:
        lines.append("    d.privileged = true")
    lines.append("  end")
    return "\n".join(lines)


def _network_options(logical_id: str | None) -> str:
    """InfraKit's: a logical ID that is an IP address is the machine's private address."""
    if logical_id:
        try:
            return f", ip: {ruby_string(str(ipaddress.IPv4Address(logical_id)))}"
        except ValueError:
            pass
    return ", type: 'dhcp'"


def render_vagrantfile(
    options: VagrantOptions,
    instance_id: str,
    logical_id: str | None = None,
    slot: str | None = None,
) -> str:
    """The Vagrantfile of one instance, from `Template` or the built-in template. `slot` (a Size
    group's) is the machine's `INFRAKIT_LOGICAL_ID` when it has no `logical_id`."""
    env = {"INFRAKIT_INSTANCE_ID": instance_id, "INFRAKIT_LOGICAL_ID": logical_id or slot or ""}
    docker = options.docker
    hostname: str | None = instance_id
    if docker is not None and (docker.network_mode or "").split(":")[0] in ("host", "container"):
        hostname = None  # Docker refuses a hostname in the host's or another container's network
    fields = {
        "Box": _ruby_optional(options.box),
        "CPUs": str(options.cpus or DEFAULT_CPUS),
        "Memory": str(options.memory or DEFAULT_MEMORY),
        "Hostname": _ruby_optional(hostname),
        "InstanceID": ruby_string(instance_id),
        "LogicalID": _ruby_optional(logical_id),
        "Provider": ruby_string(options.provider),
        "Env": _ruby_hash(env),
        "NetworkOptions": _network_options(logical_id),
        "DockerProvider": (
            _docker_block(docker, options, instance_id, env) if docker is not None else ""
        ),
    }
    if options.template is not None:
        try:
            text = options.template.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationError(f"cannot read template: {exc}", path="Template") from exc
    else:
        text = DOCKER_TEMPLATE if docker is not None else VM_TEMPLATE
    try:
        return string.Template(text).substitute(fields)
    except KeyError as exc:
        known = ", ".join(f"${name}" for name in fields)
        raise ValidationError(
            f"unknown placeholder ${exc.args[0]} (known: {known})", path="Template"
        ) from None
    except ValueError as exc:
        raise ValidationError(f"bad template: {exc}", path="Template") from None
