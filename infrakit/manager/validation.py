"""Check a group spec against the plugins that would run it: that they exist in the right
roles, answer, and accept their properties. The manager does it for every commit; the runtime
does it before it starts, for its cluster file's groups."""

from __future__ import annotations

from collections.abc import Mapping

from infrakit.spec import GroupSpec, SpecError, no_plugin, plugin_name, property_path
from infrakit.spi import FlavorPlugin, InstancePlugin, ValidationError

Problems = list[tuple[str, str]]


def validate_with_plugins(
    spec: GroupSpec, plugins: Mapping[str, InstancePlugin | FlavorPlugin]
) -> None:
    """Raise SpecError naming every fault, each with its path from the spec's root. A plugin
    that fails to answer raises PluginError."""
    props = spec.properties
    instance = plugins.get(plugin_name(props.instance.plugin))
    flavor = plugins.get(plugin_name(props.flavor.plugin))
    problems: Problems = []
    if not isinstance(instance, InstancePlugin):
        instances = [n for n, p in plugins.items() if isinstance(p, InstancePlugin)]
        fault = no_plugin(props.instance.plugin, instances, "instance plugin")
        problems.append(("Properties.Instance.Plugin", fault))
    if not isinstance(flavor, FlavorPlugin):
        flavors = [n for n, p in plugins.items() if isinstance(p, FlavorPlugin)]
        fault = no_plugin(props.flavor.plugin, flavors, "flavor plugin")
        problems.append(("Properties.Flavor.Plugin", fault))
    if problems:
        raise SpecError(problems)
    assert isinstance(instance, InstancePlugin) and isinstance(flavor, FlavorPlugin)
    # A plugin in another process says in its handshake which interfaces it serves.
    for section, plugin in (("Instance", instance), ("Flavor", flavor)):
        require = getattr(plugin, "require", None)
        if callable(require):
            try:
                require(section)
            except ValidationError as error:  # serves other interfaces: the wrong plugin
                problems.append((f"Properties.{section}.Plugin", str(error)))
    if problems:
        raise SpecError(problems)
    try:
        instance.validate(props.instance.properties)
    except ValidationError as error:
        problems.extend(_nested("Properties.Instance.Properties", error))
    try:
        flavor.validate(props.flavor.properties, props.allocation.method())
    except ValidationError as error:
        problems.extend(_nested("Properties.Flavor.Properties", error))
    if problems:
        raise SpecError(problems)


def _nested(prefix: str, error: ValidationError) -> Problems:
    """A plugin's faults with paths from the group spec's root (`prefix` is where the plugin's
    properties are)."""
    return [(property_path(prefix, path), reason) for path, reason in error.problems]
