"""`infrakit flavor --name PLUGIN ...`: call a flavor plugin directly, as InfraKit's CLI did."""

from __future__ import annotations

from typing import IO, Any

import click

from infrakit.cli.helpformat import Group
from infrakit.cli.instance import NAME_HELP, require_name
from infrakit.cli.output import json_option, print_json, print_valid, status_word
from infrakit.cli.remote import connect_to_plugin, parsed, read_json
from infrakit.spi.flavor import AllocationMethod
from infrakit.spi.instance import Description, Spec
from infrakit.wire.common import param
from infrakit.wire.flavor import FlavorClient


@click.group(cls=Group)
@click.option("--name", metavar="PLUGIN", help=NAME_HELP)
@click.pass_context
def flavor(ctx: click.Context, name: str | None) -> None:
    """Talk to the flavor plugin PLUGIN: validate, prepare, healthy.

    Example: infrakit flavor --name flavor-vanilla prepare params.json
    """
    ctx.obj = name


def read_object(file: IO[str]) -> dict[str, Any]:
    """The JSON object in `file`; anything else is an error."""
    data = read_json(file)
    if not isinstance(data, dict):
        raise click.ClickException(f"{file.name}: must be a JSON object")
    return data


@flavor.command()
@click.argument("file", type=click.File("r"))
@click.option("--size", type=int, default=0, show_default=True, help="The group's Size.")
@click.option(
    "--logical-id",
    "logical_ids",
    multiple=True,
    help="A logical ID of the group (repeatable; instead of --size).",
)
@json_option
@click.pass_obj
def validate(
    name: str | None, file: IO[str], size: int, logical_ids: tuple[str, ...], as_json: bool
) -> None:
    """Ask the plugin whether FILE ("-" for stdin), flavor Properties in JSON, is valid for a
    group allocated by --size or --logical-id: `valid` ({"Valid": true} with --json)."""
    properties = read_json(file)
    allocation = AllocationMethod(size=size, logical_ids=tuple(logical_ids) or None)
    with connect_to_plugin(require_name(name), FlavorClient) as plugin:
        plugin.ask(lambda client: client.validate(properties, allocation))
    print_valid(as_json)


@flavor.command()
@click.argument("file", type=click.File("r"))
@json_option
@click.pass_obj
def prepare(name: str | None, file: IO[str], as_json: bool) -> None:
    """Print the instance Spec the flavor makes of FILE's, as JSON (--json or not).

    FILE ("-" for stdin) is {"Properties": flavor properties, "Spec": an instance Spec,
    "Allocation": {"Size": n} or {"LogicalIDs": [...]}}.
    """
    params = read_object(file)
    properties = param(params, "Properties")
    spec = parsed(param(params, "Spec") or {}, Spec.from_json, f"{file.name}: Spec")
    allocation = parsed(
        param(params, "Allocation") or {}, AllocationMethod.from_json, f"{file.name}: Allocation"
    )
    with connect_to_plugin(require_name(name), FlavorClient) as plugin:
        prepared = plugin.ask(lambda client: client.prepare(properties, spec, allocation))
    print_json(prepared.to_json())


@flavor.command()
@click.argument("file", type=click.File("r"))
@json_option
@click.pass_obj
def healthy(name: str | None, file: IO[str], as_json: bool) -> None:
    """Print `healthy`, `unhealthy` or `unknown` for an instance ({"Health": ...} with --json).

    FILE ("-" for stdin) is {"Properties": flavor properties, "Instance": a Description
    {"ID", "LogicalID", "Tags"}}.
    """
    params = read_object(file)
    properties = param(params, "Properties")
    instance = parsed(param(params, "Instance"), Description.from_json, f"{file.name}: Instance")
    with connect_to_plugin(require_name(name), FlavorClient) as plugin:
        health = plugin.ask(lambda client: client.healthy(properties, instance))
    if as_json:
        print_json({"Health": health.name.lower()})
    else:
        click.echo(status_word(health.name.lower()))
