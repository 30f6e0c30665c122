"""`infrakit manager status`: what a running runtime says about itself."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import click

from infrakit.cli.client import connect_manager, manager_options, status_if_served
from infrakit.cli.helpformat import Group
from infrakit.cli.output import json_option, paint, pretty, print_json
from infrakit.wire.common import Unsupported
from infrakit.wire.group import GroupClient


@click.group(cls=Group)
def manager() -> None:
    """Ask the runtime about itself: leadership, location, groups."""


@manager.command()
@json_option
@manager_options
def status(as_json: bool, endpoint: str, curve_key: Path | None, server_key: Path | None) -> None:
    """Print whether the runtime leads, where the leader is, and a summary of each group.

    With --json, the runtime's Manager.Status as it sent it (times in seconds since the epoch).
    """
    with connect_manager(endpoint, curve_key, server_key) as manager:
        result = manager.ask(status_or_leadership)
    if as_json:
        print_json(result)
        return
    listed = result.pop("ManagerList", None)
    managers = [manager_line(m) for m in listed or [] if isinstance(m, dict)]
    if managers:
        result.pop("Managers", None)  # the same managers, by location only
    for line in render(result):
        click.echo(line)
    if managers:
        click.echo("Managers:")
        for line in managers:
            click.echo(f"  - {line}")


def manager_line(manager: dict[str, Any]) -> str:
    """One manager of `ManagerList` in a line: where, whether it leads (or in shared mode how
    many groups it owns), its home and host, its pid and since when it runs."""
    words = [str(manager.get("Location") or "?")]
    if manager.get("Leader"):
        words.append("(leader)")
    if isinstance(manager.get("Owns"), int):  # shared mode: how many groups it runs
        words.append(f"owns {manager['Owns']} group{'s' if manager['Owns'] != 1 else ''}")
    for key, label in (("Home", "home"), ("HostName", "host"), ("PID", "pid")):
        if manager.get(key) is not None:
            words.append(f"{label} {manager[key]}")
    since = manager.get("Since")
    if isinstance(since, int | float):
        words.append(f"since {scalar('Since', since)}")
    return " ".join(words)


def status_or_leadership(group: GroupClient) -> dict[str, Any]:
    """`Manager.Status`, or what an older runtime (or Go InfraKit's manager) can say instead:
    whether it leads, and where the leader is if it says."""
    status = status_if_served(group)
    if status is not None:
        return status
    result: dict[str, Any] = {"Leader": group.is_leader()}
    with contextlib.suppress(Unsupported):  # Go InfraKit's manager: IsLeader only
        result["Location"] = group.leader_location()
    return result


def render(data: dict[str, Any], indent: int = 0) -> list[str]:
    """`data` as aligned `Key: value` lines, nested objects and lists of objects indented
    beneath their key (YAML-like), so any shape of status reads well."""
    lines: list[str] = []
    width = max((len(str(key)) for key in data), default=0) + 1
    for key, value in data.items():
        label = " " * indent + f"{key}:".ljust(width)
        if isinstance(value, dict) and value:
            lines.append(label.rstrip())
            lines.extend(render(value, indent + 2))
        elif isinstance(value, list) and any(isinstance(item, dict) for item in value):
            lines.append(label.rstrip())
            for item in value:
                if isinstance(item, dict) and item:
                    block = render(item, indent + 4)
                    block[0] = " " * (indent + 2) + "- " + block[0].lstrip()
                    lines.extend(block)
                else:
                    lines.append(" " * (indent + 2) + "- " + scalar(str(key), item))
        else:
            lines.append(f"{label} {painted(str(key), value)}")
    return lines


def painted(key: str, value: Any) -> str:
    """`scalar(key, value)`, coloured on a terminal where it says how a group is: Converged
    green or yellow, Conditions (what keeps a group from acting) yellow."""
    text = scalar(key, value)
    if key == "Converged" and isinstance(value, bool):
        return paint(text, fg="green" if value else "yellow")
    if key == "Conditions" and value:
        return paint(text, fg="yellow")
    return text


def scalar(key: str, value: Any) -> str:
    """One value for people: `yes`/`no`, `-` for nothing, lists joined by commas, and a
    wall-clock time for `...Since` and `...At` keys."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or value == [] or value == {}:
        return "-"
    if key.endswith(("Since", "At")) and isinstance(value, int | float):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    if isinstance(value, list):
        return ", ".join(scalar("", item) for item in value)
    if isinstance(value, dict):
        return pretty(value)
    return str(value)
