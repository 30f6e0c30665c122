"""`infrakit group history|rollback|pause|resume|scale`: a group's revisions and the steering
of its rolling updates, over the runtime's Group API (docs/protocol.md). Adds these commands to
`infrakit.cli.client`'s `group` (loaded by its name when used: `GROUP_COMMANDS` there)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import click

from infrakit.cli.client import (
    connect_manager,
    expect_revision_option,
    group,
    local_user,
    manager_options,
    wait_for_change,
)
from infrakit.cli.output import json_option, print_json, print_table
from infrakit.cli.progress import wait_options
from infrakit.wire.common import param


@group.command()
@click.argument("group_id", metavar="ID")
@json_option
@manager_options
def history(
    group_id: str, as_json: bool, endpoint: str, curve_key: Path | None, server_key: Path | None
) -> None:
    """List the last revisions of group ID, oldest first: REV, TIME, WHO, CONFIG (the config
    hash's first 8 characters), CHANGE, and `*` after REV for a revision that fully rolled
    out. WHO is the CURVE key's name when the runtime checks keys, else the user name the
    client sent (not checked). With --json: {"ID", "Revision", "Paused", "Revisions": [...]}.

    \b
    Example:
      infrakit group history web
    """
    with connect_manager(endpoint, curve_key, server_key) as manager:
        found = manager.ask(lambda g: g.group_history(group_id))
    if as_json:
        print_json(found)
        return
    revisions = param(found, "Revisions") or []
    rows = [_row(revision) for revision in revisions if isinstance(revision, dict)]
    print_table(("REV", "TIME", "WHO", "CONFIG", "CHANGE"), rows)
    paused = param(found, "Paused")
    if paused:
        click.echo(f"{group_id}: rolling updates {paused}", err=True)


def _row(revision: dict[str, Any]) -> tuple[str, str, str, str, str]:
    number = f"{param(revision, 'Revision')}{'*' if param(revision, 'RolledOut') else ''}"
    at = param(revision, "Time")
    when = (
        datetime.datetime.fromtimestamp(at).isoformat(sep=" ", timespec="seconds")
        if isinstance(at, int | float) and at > 0
        else "-"
    )
    return (
        number,
        when,
        str(param(revision, "Who") or "-"),
        str(param(revision, "Config") or "")[:8],
        str(param(revision, "Change") or ""),
    )


@group.command()
@click.argument("group_id", metavar="ID")
@click.option(
    "--to",
    "to",
    type=click.IntRange(min=1),
    metavar="REV",
    help="The revision to go back to (default: the latest earlier one that fully rolled out).",
)
@expect_revision_option
@wait_options
@json_option
@manager_options
def rollback(
    group_id: str,
    to: int | None,
    expect_revision: int | None,
    wait: bool,
    timeout: float,
    as_json: bool,
    endpoint: str,
    curve_key: Path | None,
    server_key: Path | None,
) -> None:
    """Commit an earlier revision of group ID again, as a new revision ("rollback to rev N"),
    rolling its instances back. If that rollback fails it pauses; it is never rolled back in
    turn. --wait follows it until converged (exit 1 if it pauses). With --json: {"ID",
    "Revision", "Details"}.

    \b
    Example:
      infrakit group rollback web --to 2 --wait
    """
    who = local_user()
    with connect_manager(endpoint, curve_key, server_key) as manager:
        done = manager.ask(lambda g: g.rollback_group(group_id, to, expect_revision, who))
        _changed(group_id, done, as_json, "Rolled back")
        if wait:
            wait_for_change(manager, group_id, param(done, "Revision"), timeout, as_json)
    if as_json:
        print_json(done)


@group.command()
@click.argument("group_id", metavar="ID")
@click.argument("size", type=click.IntRange(min=0))
@expect_revision_option
@wait_options
@json_option
@manager_options
def scale(
    group_id: str,
    size: int,
    expect_revision: int | None,
    wait: bool,
    timeout: float,
    as_json: bool,
    endpoint: str,
    curve_key: Path | None,
    server_key: Path | None,
) -> None:
    """Set the size of group ID (a Size group) to SIZE, as a revision of its own. Nothing is
    replaced (the config hash ignores Allocation) and a rolling update under way stays as it
    is. Bounded by the cluster's Limits.MaxGroupSize. --wait follows the group until it has
    converged at the new size. With --json: {"ID", "Revision", "Details"}.

    \b
    Example:
      infrakit group scale web 5 --wait
    """
    who = local_user()
    with connect_manager(endpoint, curve_key, server_key) as manager:
        done = manager.ask(lambda g: g.scale_group(group_id, size, expect_revision, who))
        _changed(group_id, done, as_json, "Scaled")
        if wait:
            wait_for_change(manager, group_id, param(done, "Revision"), timeout, as_json)
    if as_json:
        print_json(done)


@group.command()
@click.argument("group_id", metavar="ID")
@json_option
@manager_options
def pause(
    group_id: str, as_json: bool, endpoint: str, curve_key: Path | None, server_key: Path | None
) -> None:
    """Pause the rolling updates of group ID: no more instances are replaced for an update
    (one already under way finishes) until `infrakit group resume ID`; self-healing goes on.
    Kept across restarts. With --json: {"ID", "Paused": true, "Details"}.

    \b
    Example:
      infrakit group pause web
    """
    who = local_user()
    with connect_manager(endpoint, curve_key, server_key) as manager:
        done = manager.ask(lambda g: g.pause_group(group_id, who))
    _said(f"Paused {group_id}", done, as_json)


@group.command()
@click.argument("group_id", metavar="ID")
@json_option
@manager_options
def resume(
    group_id: str, as_json: bool, endpoint: str, curve_key: Path | None, server_key: Path | None
) -> None:
    """Resume the rolling update of group ID, whether `pause` or a failure paused it.
    With --json: {"ID", "Paused": false, "Details"}.

    \b
    Example:
      infrakit group resume web
    """
    who = local_user()
    with connect_manager(endpoint, curve_key, server_key) as manager:
        done = manager.ask(lambda g: g.resume_group(group_id, who))
    _said(f"Resumed {group_id}", done, as_json)


def _changed(group_id: str, done: dict[str, Any], as_json: bool, verb: str) -> None:
    """Say what a change did (its JSON is printed once the change is done, or waited for)."""
    if not as_json:
        _said(f"{verb} {group_id} (revision {param(done, 'Revision')})", done, as_json)


def _said(what: str, done: dict[str, Any], as_json: bool) -> None:
    """The runtime's answer: whole with --json, else `what: Details`."""
    if as_json:
        print_json(done)
    else:
        click.echo(f"{what}: {param(done, 'Details')}")
