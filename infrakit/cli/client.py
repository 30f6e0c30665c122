"""`infrakit group ...`: talk to a running `infrakit run` over its Group API (by default at
ipc://<plugins dir>/group, or group.zmq when the runtime gives `group` to Go's CLI)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from infrakit.cli.helpformat import Command
from infrakit.cli.lazy import LazyGroup
from infrakit.cli.output import (
    json_option,
    print_json,
    print_table,
    status_column,
    status_word,
)
from infrakit.cli.progress import Reading, find, follow, reading, revision_said, wait_options
from infrakit.cli.remote import (
    Reached,
    connect,
    curve_config,
    curve_options,
    ipc_listening,
    print_descriptions,
    read_json,
)
from infrakit.paths import GROUP_SOCKET, GROUP_ZMQ_SOCKET, plugins_dir
from infrakit.spi.group import Caller, NotLeaderError
from infrakit.wire.common import Unsupported, param
from infrakit.wire.group import GroupClient

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def default_endpoint() -> str:
    """Where a runtime serves the Group API by default: `ipc://<plugins dir>/group.zmq` if
    something listens there (a runtime with `Manager.HTTP`, whose `group` speaks HTTP to Go
    InfraKit's CLI), else `ipc://<plugins dir>/group`."""
    moved = plugins_dir() / GROUP_ZMQ_SOCKET
    if moved.exists() and ipc_listening(f"ipc://{moved}"):
        return f"ipc://{moved}"
    return f"ipc://{plugins_dir() / GROUP_SOCKET}"


def manager_options(function: F) -> F:
    """Add `--endpoint` (env INFRAKIT_ENDPOINT) and the CURVE options to a command."""
    function = curve_options(function)
    function = click.option(
        "--endpoint",
        envvar="INFRAKIT_ENDPOINT",
        default=default_endpoint,
        show_default="ipc://<plugins dir>/group (group.zmq if served); env INFRAKIT_ENDPOINT",
        help="Where the runtime serves the Group API (ipc://PATH or tcp://HOST:PORT).",
    )(function)
    return function


class Manager(Reached[GroupClient]):
    """A runtime's Group API as the CLI reaches it: a question that a follower refuses with
    the leader's location is asked of the leader (once, never further), saying so on stderr."""

    def _answer(self, question: Callable[[GroupClient], T]) -> T:
        try:
            return question(self.client)
        except NotLeaderError as error:
            if not error.leader or error.leader == self.endpoint:
                raise
            leader = error.leader
        click.echo(f"(forwarded to the leader at {leader})", err=True)
        unreachable = f"the leader at {leader} does not answer"
        with connect(leader, unreachable, GroupClient, self.curve) as other:
            return other.ask(question)


def connect_manager(endpoint: str, curve_key: Path | None, server_key: Path | None) -> Manager:
    """The Group API of the runtime at `endpoint`, or one clear error line if none answers."""
    unreachable = f"no runtime answers at {endpoint} (is `infrakit run` running?)"
    curve = curve_config(curve_key, server_key)
    reached = connect(endpoint, unreachable, GroupClient, curve=curve)
    return Manager(reached.client, unreachable, curve)


def local_user() -> Caller:
    """Who this CLI runs as, sent with each change: a runtime that authenticates clients by
    their CURVE keys records the key's name instead."""
    try:
        import getpass  # (its terminal machinery is for passwords; only getuser is used)

        return Caller(getpass.getuser())
    except (KeyError, OSError):
        return Caller("unknown")


def expect_revision_option(function: F) -> F:
    """Add `--expect-revision N`: refuse the change unless the group is at revision N."""
    return click.option(
        "--expect-revision",
        type=click.IntRange(min=0),
        metavar="N",
        help="Refuse the change, naming the current revision, unless the group is at revision"
        " N (0: a new group); see `infrakit group history`.",
    )(function)


def status_if_served(group: GroupClient) -> dict[str, Any] | None:
    """`Manager.Status`, or None from a runtime that does not serve it (an older one)."""
    try:
        return group.status()
    except Unsupported:
        return None


# Subcommands in modules of their own, which register themselves on `group` when imported.
GROUP_COMMANDS = {
    "activity": "infrakit.cli.activity",
    "history": "infrakit.cli.revisions",
    "rollback": "infrakit.cli.revisions",
    "scale": "infrakit.cli.revisions",
    "pause": "infrakit.cli.revisions",
    "resume": "infrakit.cli.revisions",
    "promote": "infrakit.cli.maintenance",
    "suspend": "infrakit.cli.maintenance",
    "unsuspend": "infrakit.cli.maintenance",
}


@click.group(cls=LazyGroup, lazy=GROUP_COMMANDS)
def group() -> None:
    """Commit, describe, inspect, list, free and destroy the groups of a running runtime;
    read their history, roll back, pause, resume and scale them."""


def wait_for_change(
    manager: Manager, group_id: str, revision: int | None, timeout: float, as_json: bool
) -> Reading:
    """Follow group `group_id` until it has converged at `revision` (`--wait`), showing its
    progress unless `as_json`; exit 1 with the reason if it pauses, fails or moves on."""

    def status() -> dict[str, Any]:
        found = manager.ask(status_if_served)
        if found is None:
            raise click.ClickException(
                "this runtime does not serve Manager.Status, which --wait follows"
            )
        return found

    history = revision_said(lambda: manager.ask(lambda g: g.group_history(group_id)))
    last = follow(status, group_id, revision, timeout, moved_on=history, show=not as_json)
    if not as_json:
        at = f" at revision {last.revision}" if last.revision is not None else ""
        click.echo(f"{group_id} converged{at}: {last.healthy}/{last.size} healthy")
    return last


class _Failed(click.UsageError):
    """Bad usage that exits 1, as any error of `commit --detailed-exitcode` does."""

    exit_code = 1


class _CommitCommand(Command):
    """`group commit`: with --detailed-exitcode, bad usage exits 1 as any error does (2 says
    that changes are pending, as Terraform's plan does)."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        given = list(args)  # parsing consumes `args`
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as error:
            if "--detailed-exitcode" in given:
                raise _Failed(error.format_message(), error.ctx) from None
            raise


@group.command(cls=_CommitCommand)
@click.argument("file", type=click.File("r"))
@click.option("--pretend", is_flag=True, help="Only say what committing would do.")
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="With --pretend: exit 0 if committing would change nothing, 2 if it would, 1 on an"
    " error (Terraform's convention).",
)
@expect_revision_option
@wait_options
@json_option
@manager_options
def commit(
    file: IO[str],
    pretend: bool,
    detailed_exitcode: bool,
    expect_revision: int | None,
    wait: bool,
    timeout: float,
    as_json: bool,
    endpoint: str,
    curve_key: Path | None,
    server_key: Path | None,
) -> None:
    """Commit the group spec in FILE ("-" for stdin): create the group or change it.

    Prints `Committed ID: <what it does>`; with --pretend, `Committing ID would involve: ...`
    and changes nothing. A refused spec prints each fault as `path: fault`. With --json:
    {"Group": ID, "Pretend": bool, "Message" and "Sentence": what it does, "Revision": the
    group's now}, and with --pretend "Plan": per logical instance {"LogicalID", "Action"
    (keep, replace, add, remove), "Reason", "Instance"}. A real change is a new revision
    (`infrakit group history ID`). --wait follows the rollout until the group has converged
    (a live progress bar on a terminal, a line per change otherwise) and exits 1, saying why,
    if it pauses or fails first.

    \b
    Examples:
      infrakit group commit web.json --expect-revision 3 --wait
      infrakit group commit web.json --pretend --json --detailed-exitcode
    """
    if detailed_exitcode and not pretend:
        raise click.ClickException("--detailed-exitcode goes with --pretend")
    if wait and pretend:
        raise click.ClickException("--wait has nothing to follow with --pretend")
    spec = read_json(file)
    if isinstance(spec, dict) and param(spec, "Groups") is not None and not param(spec, "ID"):
        raise click.ClickException(
            f"{file.name} is a cluster file (it has Groups), and `group commit` takes one group"
            ' spec, {"ID": ..., "Properties": ...}: run the cluster with'
            f" `infrakit run {file.name}`, or commit one of its Groups from a file of its own"
        )
    who = local_user()
    group_id = param(spec, "ID") if isinstance(spec, dict) else None
    with connect_manager(endpoint, curve_key, server_key) as manager:
        done = manager.ask(lambda group: group.commit_revision(spec, pretend, expect_revision, who))
        details = param(done, "Details")
        revision = param(done, "Revision")
        if not as_json:
            said = "Committing {} would involve: {}" if pretend else "Committed {}: {}"
            click.echo(said.format(group_id, details))
        if wait:
            wait_for_change(manager, str(group_id), revision, timeout, as_json)
    if as_json:
        answer = {
            "Group": group_id,
            "Pretend": pretend,
            "Message": details,
            "Sentence": details,
            "Revision": revision,
        }
        if pretend:
            answer["Plan"] = param(done, "Plan")
        print_json(answer)
    if detailed_exitcode and _changes(done):
        click.get_current_context().exit(2)


def _changes(done: dict[str, Any]) -> bool:
    """Whether a pretend commit's answer says committing would change anything: a new
    revision (the runtime says, if it is new enough), else InfraKit's sentence is not Noop."""
    changes = param(done, "Changes")
    if isinstance(changes, bool):
        return changes
    return bool(param(done, "Details") != "Noop")


@group.command()
@click.argument("group_id", metavar="ID")
@json_option
@manager_options
def status(
    group_id: str, as_json: bool, endpoint: str, curve_key: Path | None, server_key: Path | None
) -> None:
    """Say where group ID is, as `commit --wait` shows it: its revision, the instances its
    rolling update replaced of those it has to, how many are healthy, and what it waits for
    (`waiting for web-2 to turn healthy (12s of HealthyTimeout 1m)`, `paused: ...`). With
    --json, the group's summary from Manager.Status (ID, Revision, Size, Phases, Converged,
    Update {Total, Done, Paused, InFlight...}, Conditions).

    \b
    Example:
      infrakit group status web
    """
    with connect_manager(endpoint, curve_key, server_key) as manager:
        found = find(manager.ask(status_if_served), group_id)
    if found is None:
        raise click.ClickException(f"Group '{group_id}' is not being watched")
    if as_json:
        print_json(found)
        return
    now = reading(found)
    paused = param(param(found, "Update") or {}, "Paused")
    state = "converged" if now.done else "paused" if paused else "converging"
    click.echo(f"{group_id}: {status_word(state)}")
    click.echo(f"  {now.line(timed=True)}")


@group.command()
@click.argument("group_id", metavar="ID")
@click.option("-q", "--quiet", is_flag=True, help="Print only the instance IDs, one per line.")
@json_option
@manager_options
def describe(
    group_id: str,
    quiet: bool,
    as_json: bool,
    endpoint: str,
    curve_key: Path | None,
    server_key: Path | None,
) -> None:
    """List the instances of group ID: ID, LOGICAL and TAGS (with --json, the whole
    description: Instances, Converged, Conditions)."""
    with connect_manager(endpoint, curve_key, server_key) as manager:
        description = manager.ask(lambda group: group.describe_group(group_id))
    if as_json:
        print_json(description)
        return
    for condition in param(description, "Conditions") or []:
        click.echo(f"{group_id}: {condition}", err=True)  # on stderr: stdout stays a table
    print_descriptions(param(description, "Instances") or [], quiet)


@group.command()
@click.argument("group_id", metavar="ID")
@json_option
@manager_options
def inspect(
    group_id: str, as_json: bool, endpoint: str, curve_key: Path | None, server_key: Path | None
) -> None:
    """Print the committed spec of group ID as JSON (--json changes nothing: it is JSON)."""
    with connect_manager(endpoint, curve_key, server_key) as manager:
        groups = manager.ask(GroupClient.inspect_groups)
    for spec in groups:
        if param(spec, "ID") == group_id:
            print_json(spec)
            return
    raise click.ClickException(f"Group '{group_id}' is not being watched")


def group_size(spec: dict[str, Any]) -> int | None:
    """The size a spec asks for: its Allocation's Size, or how many LogicalIDs it lists."""
    allocation = param(param(spec, "Properties") or {}, "Allocation") or {}
    if not isinstance(allocation, dict):
        return None
    ids = param(allocation, "LogicalIDs")
    if isinstance(ids, list):
        return len(ids)
    size = param(allocation, "Size")
    return size if isinstance(size, int) else None


@group.command(name="ls")
@click.option("-q", "--quiet", is_flag=True, help="Print only the group IDs, one per line.")
@json_option
@manager_options
def ls(
    quiet: bool, as_json: bool, endpoint: str, curve_key: Path | None, server_key: Path | None
) -> None:
    """List the groups the runtime manages, with the size each one asks for and its state.

    With --json: [{"ID", "Size", "State", "Conditions"}], State and Size null when unknown.
    """
    with connect_manager(endpoint, curve_key, server_key) as manager:
        groups = manager.ask(GroupClient.inspect_groups)
        status = manager.ask(status_if_served) if groups and (as_json or not quiet) else None
    states = group_states(status)
    unknown: dict[str, Any] = {"State": None, "Conditions": []}
    listed = []
    for spec in groups:
        group_id = str(param(spec, "ID"))
        listed.append({"ID": group_id, "Size": group_size(spec), **states.get(group_id, unknown)})
    if as_json:
        print_json(listed)
    elif quiet:
        for entry in listed:
            click.echo(entry["ID"])
    else:
        rows = [
            (g["ID"], "?" if g["Size"] is None else str(g["Size"]), g["State"] or "-")
            for g in listed
        ]
        print_table(("ID", "SIZE", "STATE"), rows, style=status_column(2, others="yellow"))


def group_states(status: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Group ID -> {"State": one word on how it is, or what keeps it from acting, "Conditions":
    [...]}, from Manager.Status."""
    summaries = param(status, "Groups") if status is not None else None
    states: dict[str, dict[str, Any]] = {}
    for summary in summaries if isinstance(summaries, list) else []:
        if not isinstance(summary, dict):
            continue
        conditions = [str(c) for c in param(summary, "Conditions") or []]
        if conditions:
            state = "; ".join(conditions)
        elif param(summary, "Destroying"):
            state = "destroying"
        else:
            state = "converged" if param(summary, "Converged") else "converging"
        states[str(param(summary, "ID"))] = {"State": state, "Conditions": conditions}
    return states


@group.command()
@click.argument("group_id", metavar="ID")
@json_option
@manager_options
def free(
    group_id: str, as_json: bool, endpoint: str, curve_key: Path | None, server_key: Path | None
) -> None:
    """Stop managing group ID; its instances keep running (a later commit adopts them)."""
    with connect_manager(endpoint, curve_key, server_key) as manager:
        manager.ask(lambda group: group.free_group(group_id))
    if as_json:
        print_json({"Group": group_id, "Freed": True})
    else:
        click.echo(f"Freed {group_id}")


@group.command()
@click.argument("group_id", metavar="ID")
@click.option("--wait", is_flag=True, help="Wait until every instance is gone.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=120.0,
    show_default=True,
    help="Seconds --wait waits at most.",
)
@json_option
@manager_options
def destroy(
    group_id: str,
    wait: bool,
    timeout: float,
    as_json: bool,
    endpoint: str,
    curve_key: Path | None,
    server_key: Path | None,
) -> None:
    """Drain and destroy every instance of group ID, then forget the group.

    The runtime goes on destroying in the background (and after a restart); --wait polls
    until the group is gone. With --json: {"Group": ID, "Destroyed": true once gone, false
    while under way}.
    """
    with connect_manager(endpoint, curve_key, server_key) as manager:
        manager.ask(lambda group: group.destroy_group(group_id))
        if not as_json:
            click.echo(f"Destroying {group_id}")
        if not wait:
            if as_json:
                print_json({"Group": group_id, "Destroyed": False})
            return
        deadline = time.monotonic() + timeout
        while any(param(s, "ID") == group_id for s in manager.ask(GroupClient.inspect_groups)):
            if time.monotonic() > deadline:
                raise click.ClickException(
                    f"group {group_id} is still being destroyed after {timeout:g}s;"
                    " the runtime keeps at it"
                )
            time.sleep(0.2)
    if as_json:
        print_json({"Group": group_id, "Destroyed": True})
    else:
        click.echo(f"Destroyed {group_id}")
