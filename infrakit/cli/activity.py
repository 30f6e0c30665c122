"""`infrakit group activity ID`: what the runtime did to a group and why, newest last."""

from __future__ import annotations

import time
from pathlib import Path

import click

from infrakit.cli.client import connect_manager, group, manager_options
from infrakit.cli.output import json_option, print_json, print_table


@group.command()
@click.argument("group_id", metavar="ID")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Show only the last N entries (the runtime keeps the last 100 per group).",
)
@json_option
@manager_options
def activity(
    group_id: str,
    limit: int | None,
    as_json: bool,
    endpoint: str,
    curve_key: Path | None,
    server_key: Path | None,
) -> None:
    """Show what the runtime did to group ID and why: TIME, WHAT, CAUSE, oldest first.

    Every action is kept (the last 100 per group) in the runtime's store, so the history
    survives restarts and leader changes. With --json: [{"Time", "What", "Cause", "Kind",
    "LogicalID", "Instance"}].

    Example: infrakit group activity workers --limit 10
    """
    with connect_manager(endpoint, curve_key, server_key) as manager:
        entries = manager.ask(lambda client: client.group_activity(group_id, limit))
    if as_json:
        print_json(entries)
        return
    rows = [
        (
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(entry.get("Time") or 0))),
            str(entry.get("What", "")),
            str(entry.get("Cause", "")),
        )
        for entry in entries
    ]
    print_table(("TIME", "WHAT", "CAUSE"), rows)
