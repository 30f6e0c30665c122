"""`infrakit group promote|suspend|unsuspend` and `infrakit instance standby|unstandby`: an
operator's hand on a group, over the runtime's Group API (docs/protocol.md). Registers these on
`infrakit.cli.client`'s `group` and `infrakit.cli.instance`'s `instance`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from infrakit.cli.client import connect_manager, group, local_user, manager_options
from infrakit.cli.instance import instance as instance
from infrakit.cli.output import json_option, print_json
from infrakit.spi.group import PROCESSES, Caller
from infrakit.wire.common import param
from infrakit.wire.group import GroupClient

_PROCESS = click.Choice(PROCESSES)


@group.command()
@click.argument("group_id", metavar="ID")
@json_option
@manager_options
def promote(
    group_id: str, as_json: bool, endpoint: str, curve_key: Path | None, server_key: Path | None
) -> None:
    """Promote the canaries of group ID: a rolling update with Update.Canary N replaces N
    instances, then waits, once they are healthy, for this (or Update.AutoPromote); the rest
    then rolls. A group with no canary waiting is refused, saying why. With --json: {"ID",
    "Promoted": true, "Details"}.

    \b
    Example:
      infrakit group promote web
    """
    who = local_user()
    with connect_manager(endpoint, curve_key, server_key) as manager:
        done = manager.ask(lambda g: g.promote_group(group_id, who))
    _said(f"Promoted {group_id}", done, as_json)


def _command(ask: Callable[[GroupClient, str, Any, Caller], dict[str, Any]]) -> Any:
    """A command that asks the runtime `ask(group API, group ID, WHAT, who)` and says the
    answer."""

    def command(
        group_id: str,
        what: Any,
        as_json: bool,
        endpoint: str,
        curve_key: Path | None,
        server_key: Path | None,
    ) -> None:
        who = local_user()
        with connect_manager(endpoint, curve_key, server_key) as manager:
            done = manager.ask(lambda g: ask(g, group_id, what, who))
        _said(group_id, done, as_json)

    return command


def _suspender(on: bool) -> Callable[[GroupClient, str, Any, Caller], dict[str, Any]]:
    def ask(g: GroupClient, group_id: str, processes: Any, who: Caller) -> dict[str, Any]:
        return g.suspend_group(group_id, list(dict.fromkeys(processes)), on, who)

    return ask


def _stander(on: bool) -> Callable[[GroupClient, str, Any, Caller], dict[str, Any]]:
    def ask(g: GroupClient, group_id: str, logical_id: Any, who: Caller) -> dict[str, Any]:
        return g.standby_instance(group_id, str(logical_id), on, who)

    return ask


_SUSPEND_HELP = """Suspend processes of group ID, as AWS ASG does, until `infrakit group
unsuspend ID PROCESS...`: `heal` replaces no unhealthy or vanished instance; `launch`
provisions nothing (no scale-out, no healing, the rolling update stops); `terminate` destroys
nothing (no scale-in, no replacement: old instances are kept); `rollout` takes no
rolling-update step. Kept across restarts; shown in `group describe` (Conditions) and
`manager status`. A destroy ignores them. (`group pause`/`resume` steer a rolling update;
this is not that.) With --json: {"ID", "Suspended": [...], "Details"}.

\b
Example:
  infrakit group suspend web heal terminate
"""

_UNSUSPEND_HELP = """Resume suspended processes of group ID (see `infrakit group suspend`):
what waited on them goes on. With --json: {"ID", "Suspended": [...], "Details"}.

\b
Example:
  infrakit group unsuspend web heal
"""

for _name, _on, _help in (
    ("suspend", True, _SUSPEND_HELP),
    ("unsuspend", False, _UNSUSPEND_HELP),
):
    group.command(name=_name, help=_help)(
        click.argument("group_id", metavar="ID")(
            click.argument("what", metavar="PROCESS...", nargs=-1, required=True, type=_PROCESS)(
                json_option(manager_options(_command(_suspender(_on))))
            )
        )
    )


_STANDBY_HELP = """Put the instance LOGICAL_ID of group GROUP in standby (for forensics): it is
out of the group's counts, and the group never replaces, heals nor destroys it (if it
vanishes, its slot stays empty) until `infrakit instance unstandby GROUP LOGICAL_ID`. Its slot
gets no replacement meanwhile (as AWS ASG's standby that decrements the desired capacity).
`group destroy` destroys it with the rest. LOGICAL_ID is as `group describe` shows it (a Size
group's slot, e.g. web-2). Kept across restarts. Needs no --name. With --json: {"ID",
"LogicalID", "Standby": [...], "Details"}.

\b
Example:
  infrakit instance standby web web-2
"""

_UNSTANDBY_HELP = """Take the instance LOGICAL_ID of group GROUP out of standby: counted,
healed and replaced again (an unhealthy one is replaced, a vanished one provisioned again, a
stale one rolled). With --json: {"ID", "LogicalID", "Standby": [...], "Details"}.

\b
Example:
  infrakit instance unstandby web web-2
"""

for _name, _on, _help in (
    ("standby", True, _STANDBY_HELP),
    ("unstandby", False, _UNSTANDBY_HELP),
):
    instance.command(name=_name, help=_help)(
        click.argument("group_id", metavar="GROUP")(
            click.argument("what", metavar="LOGICAL_ID")(
                json_option(manager_options(_command(_stander(_on))))
            )
        )
    )


def _said(what: str, done: dict[str, Any], as_json: bool) -> None:
    """The runtime's answer: whole with --json, else `what: Details`."""
    if as_json:
        print_json(done)
    else:
        click.echo(f"{what}: {param(done, 'Details')}")
