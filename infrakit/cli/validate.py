"""`infrakit validate FILE`: check a cluster file or a group spec offline, as the runtime would.

Besides the spec itself, it runs the built-in plugins' own validation on each group's
properties (nothing is started or written), and says every fault at once: one
`FILE: path: fault` line each.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from infrakit.cli.helpformat import Command
from infrakit.cli.output import json_option, print_json
from infrakit.plugins import offline
from infrakit.spec import (
    DEFAULT_MAX_GROUP_SIZE,
    DEFAULT_PLUGINS,
    ClusterConfig,
    GroupSpec,
    PluginConfig,
    SpecError,
    load_json,
    no_plugin,
    parse_cluster,
    parse_group,
    plugin_name,
    property_path,
    wrong_role,
)

Problems = list[tuple[str, str]]
# Plugin name -> built-in kind, or None for a plugin served elsewhere (not checked offline).
PluginTable = dict[str, str | None]


@click.command(cls=Command)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--cluster",
    "cluster_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="For a group spec: check it against this cluster file's plugins and limits.",
)
@json_option
def validate(file: Path, cluster_file: Path | None, as_json: bool) -> None:
    """Check FILE, a cluster file or a group spec, and say what is wrong and where.

    The built-in plugins' own checks run too (offline). A group spec may name only the
    built-in plugins (instance-file, flavor-vanilla, ...) unless --cluster says which the
    cluster has. With --json: {"File", "Valid": true, "Kind": "cluster" or "group", "Groups":
    [IDs]}; faults and warnings stay on stderr.
    """
    warnings: list[str] = []
    try:
        kind, groups = _validate(file, cluster_file, warnings)
    except SpecError as error:
        for line in warnings:
            click.echo(f"{file}: warning: {line}", err=True)
        source = error.source or str(file)
        for path, fault in error.problems:
            click.echo(f"{source}: {path + ': ' if path else ''}{fault}", err=True)
        sys.exit(1)
    except OSError as error:
        raise click.ClickException(f"cannot read {error.filename}: {error.strerror}") from None
    for line in warnings:
        click.echo(f"{file}: warning: {line}", err=True)
    if as_json:
        print_json({"File": str(file), "Valid": True, "Kind": kind, "Groups": groups})
    elif kind == "group":
        click.echo(f"{file}: a valid group spec for group {groups[0]!r}")
    else:
        click.echo(f"{file}: a valid cluster file ({', '.join(groups) or 'no groups'})")


def _validate(file: Path, cluster_file: Path | None, warnings: list[str]) -> tuple[str, list[str]]:
    """What FILE is, "cluster" or "group", and the IDs of its groups; SpecError if invalid."""
    data: Any = load_json(file)
    if isinstance(data, dict) and "Properties" in GroupSpec.fold_keys(data):
        return _validate_group(data, file, cluster_file, warnings)
    if cluster_file is not None:
        raise SpecError([("", "--cluster goes with a group spec, and this is a cluster file")])
    return _validate_cluster(data, file, warnings)


def _validate_group(
    data: Mapping[str, Any], file: Path, cluster_file: Path | None, warnings: list[str]
) -> tuple[str, list[str]]:
    plugins: PluginTable = dict(offline.builtin_names())
    limit = DEFAULT_MAX_GROUP_SIZE
    if cluster_file is not None:
        config = parse_cluster(load_json(cluster_file), source=str(cluster_file))
        plugins, limit = _plugin_table(config.plugins), config.limits.max_group_size
    spec = parse_group(data, source=str(file), max_group_size=limit)
    problems = _check_plugins(spec, plugins, "", warnings)
    if problems:
        raise SpecError(problems, str(file))
    return "group", [spec.id]


def _validate_cluster(data: Any, file: Path, warnings: list[str]) -> tuple[str, list[str]]:
    problems: Problems = []
    try:
        config = parse_cluster(data, source=str(file))
    except SpecError as error:
        problems.extend(error.problems)
        config = _salvage(data)
    plugins = _plugin_table(config.plugins)
    raw_groups = ClusterConfig.fold_keys(data).get("Groups", []) if isinstance(data, dict) else []
    for index, raw in enumerate(raw_groups if isinstance(raw_groups, list) else []):
        try:
            spec = parse_group(raw, max_group_size=config.limits.max_group_size)
        except SpecError:
            continue  # parse_cluster said what is wrong with it
        for problem in _check_plugins(spec, plugins, f"Groups[{index}].", warnings):
            if problem not in problems:  # parse_cluster may have named an unknown plugin
                problems.append(problem)
    if problems:
        raise SpecError(problems, str(file))
    return "cluster", [str(GroupSpec.fold_keys(g).get("ID")) for g in config.groups]


def _check_plugins(
    spec: GroupSpec, plugins: PluginTable, prefix: str, warnings: list[str]
) -> Problems:
    """The faults the group's plugins find in their properties, with paths from the file's
    root; a plugin name not in `plugins` is a fault too."""
    problems: Problems = []
    allocation = spec.properties.allocation.method()
    for section, ref in (
        ("Instance", spec.properties.instance),
        ("Flavor", spec.properties.flavor),
    ):
        where = f"{prefix}Properties.{section}"
        name = plugin_name(ref.plugin)
        if name not in plugins:
            problems.append((f"{where}.Plugin", no_plugin(ref.plugin, plugins)))
            continue
        kind = plugins[name]
        if kind is None:
            warnings.append(f"{where}.Plugin: {name!r} runs elsewhere; its checks run at commit")
            continue
        fault = wrong_role(ref.plugin, kind, section)
        if fault:
            problems.append((f"{where}.Plugin", fault))
            continue
        findings = offline.check(kind, ref.properties, allocation if section == "Flavor" else None)
        problems.extend(
            (property_path(f"{where}.Properties", path), reason)
            for path, reason in findings.problems
        )
        warnings.extend(f"{where}.Properties: {line}" for line in findings.warnings)
    return problems


def _plugin_table(configured: tuple[PluginConfig, ...]) -> PluginTable:
    """The plugins a cluster has: the defaults, then its own (a Kind, or served elsewhere)."""
    table: PluginTable = {name: kind for name, kind in DEFAULT_PLUGINS}
    for plugin in configured:
        table[plugin.name] = plugin.kind if plugin.kind is not None else None
    return table


def _salvage(data: Any) -> ClusterConfig:
    """What can be read of a faulty cluster file's Plugins and Limits, to check its groups'
    properties anyway (every fault at once)."""
    if not isinstance(data, dict):
        return ClusterConfig()
    folded = ClusterConfig.fold_keys(data)
    plugins = []
    raw_plugins = folded.get("Plugins")
    for raw in raw_plugins if isinstance(raw_plugins, list) else []:
        if not isinstance(raw, dict):
            continue
        # A plugin whose only fault is in its options still names a plugin of its kind.
        without_options = {k: v for k, v in PluginConfig.fold_keys(raw).items() if k != "Options"}
        for candidate in (raw, without_options):
            try:
                PluginConfig.model_validate(candidate)
            except ValueError:
                continue
            plugins.append(candidate)
            break
    limits = folded.get("Limits")
    try:
        return ClusterConfig.model_validate({"Plugins": plugins, "Limits": limits or {}})
    except ValueError:
        return ClusterConfig.model_validate({"Plugins": plugins})
