"""`infrakit instance --name PLUGIN ...`: call an instance plugin directly, as InfraKit did."""

from __future__ import annotations

from typing import IO

import click

from infrakit.cli.lazy import LazyGroup
from infrakit.cli.output import json_option, print_json, print_valid
from infrakit.cli.remote import (
    connect_to_plugin,
    parse_pairs,
    print_descriptions,
    read_as,
    read_json,
)
from infrakit.spi.instance import Spec
from infrakit.wire.instance import InstanceClient

NAME_HELP = (
    "The plugin: its name in the plugins directory (`sock/type` means socket `sock`),"
    " or an endpoint such as tcp://host:port."
)


def require_name(name: str | None) -> str:
    """The plugin named by the group's --name, which every subcommand needs."""
    if not name:
        raise click.UsageError("Missing option '--name': which plugin to talk to.")
    return name


@click.group(
    cls=LazyGroup,
    # Through the runtime, not a plugin: registered on this group by their module.
    lazy={"standby": "infrakit.cli.maintenance", "unstandby": "infrakit.cli.maintenance"},
)
@click.option("--name", metavar="PLUGIN", help=NAME_HELP)
@click.pass_context
def instance(ctx: click.Context, name: str | None) -> None:
    """Talk to the instance plugin PLUGIN: describe, provision, destroy, validate; or, through
    the runtime, put a group's instance in standby (no --name needed).

    Example: infrakit instance --name instance-file describe -q
    """
    ctx.obj = name


@instance.command()
@click.option("--tags", multiple=True, metavar="K=V", help="Only instances with this tag (AND).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the instance IDs, one per line.")
@json_option
@click.pass_obj
def describe(name: str | None, tags: tuple[str, ...], quiet: bool, as_json: bool) -> None:
    """List the plugin's instances (ID, LOGICAL, TAGS), optionally only those with all --tags.

    With --json, the plugin's Descriptions: [{"ID", "LogicalID", "Tags", ...}].
    """
    wanted = parse_pairs(tags, "--tags")
    with connect_to_plugin(require_name(name), InstanceClient) as plugin:
        found = plugin.ask(lambda client: client.describe_instances(wanted))
    descriptions = [description.to_json() for description in found]
    if as_json:
        print_json(descriptions)
    else:
        print_descriptions(descriptions, quiet)


@instance.command()
@click.argument("file", type=click.File("r"))
@json_option
@click.pass_obj
def provision(name: str | None, file: IO[str], as_json: bool) -> None:
    """Create an instance from FILE, an instance Spec, and print its ID ({"ID"} with --json).

    FILE ("-" for stdin) is JSON: {"Properties": ..., "Tags": {...}, "Init": "...",
    "LogicalID": "...", "Attachments": [...]}; every key optional.
    """
    spec = read_as(file, Spec.from_json, "an instance Spec")
    with connect_to_plugin(require_name(name), InstanceClient) as plugin:
        instance_id = plugin.ask(lambda client: client.provision(spec))
    if as_json:
        print_json({"ID": instance_id})
    else:
        click.echo(instance_id)


@instance.command()
@click.argument("instance_id", metavar="ID")
@json_option
@click.pass_obj
def destroy(name: str | None, instance_id: str, as_json: bool) -> None:
    """Destroy the instance ID."""
    with connect_to_plugin(require_name(name), InstanceClient) as plugin:
        plugin.ask(lambda client: client.destroy(instance_id))
    if as_json:
        print_json({"ID": instance_id, "Destroyed": True})
    else:
        click.echo(f"Destroyed {instance_id}")


@instance.command()
@click.argument("file", type=click.File("r"))
@json_option
@click.pass_obj
def validate(name: str | None, file: IO[str], as_json: bool) -> None:
    """Ask the plugin whether FILE ("-" for stdin), instance Properties in JSON, is valid.

    Prints `valid` ({"Valid": true} with --json); each fault of invalid ones on stderr.
    """
    properties = read_json(file)
    with connect_to_plugin(require_name(name), InstanceClient) as plugin:
        plugin.ask(lambda client: client.validate(properties))
    print_valid(as_json)
