"""The `infrakit` command: run a cluster in the foreground, validate files.

Each command imports what it needs when it runs: `infrakit keys generate` has no use for the
actor tree or pydantic, whose imports cost several times its own work (and under load, tens of
seconds).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import FrameType
from typing import Any

import click

from infrakit.cli.lazy import LazyGroup
from infrakit.cli.output import json_option, print_json, show_error
from infrakit.paths import default_home

# Command groups in modules of their own: name -> "module:attribute", imported on first use.
LAZY_COMMANDS = {
    "validate": "infrakit.cli.validate:validate",
    "plugin": "infrakit.cli.plugin:plugin",
    "group": "infrakit.cli.client:group",
    "instance": "infrakit.cli.instance:instance",
    "flavor": "infrakit.cli.flavor:flavor",
    "manager": "infrakit.cli.manager:manager",
    "events": "infrakit.cli.events:events",
    "keys": "infrakit.cli.keys:keys",
}


class _Main(LazyGroup):
    """The root group: lazy subcommands, and errors shown with a red `Error:` on a terminal."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; an error it raises is shown with a red `Error:` on a terminal."""
        try:
            return super().invoke(ctx)
        except click.ClickException as error:
            show_error(error)
            ctx.exit(error.exit_code)


@click.group(
    cls=_Main,
    lazy=LAZY_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="infrakit")
def main() -> None:
    """InfraKit for Python: declarative, self-healing infrastructure.

    Everything the runtime writes goes under $INFRAKIT_HOME (default ~/.infrakit).
    """


@main.command()
@click.argument("cluster", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
    help="How much to log.",
)
@click.option("--json-logs", is_flag=True, help="Log one JSON object per line.")
@click.option(
    "--http-group",
    is_flag=True,
    help="Serve the Group API to Go InfraKit's CLI over HTTP at <plugins dir>/group (ZeroMQ"
    " moves to group.zmq), as the cluster file's Manager.HTTP does.",
)
def run(cluster: Path, log_level: str, json_logs: bool, http_group: bool) -> None:
    """Run the groups of CLUSTER (a cluster file) in the foreground.

    Ctrl-C or SIGTERM stops the runtime cleanly and leaves the instances running; the next
    `infrakit run` adopts them. A second `infrakit run` on the same home waits as a follower.
    A runtime that can no longer act (its supervisors gave up, a shared thread died) says what
    died in one CRITICAL line and exits with status 1.
    """
    import logging  # here, not above: the client commands have no use for them
    import signal
    import threading

    from infrakit.cli.logs import configure
    from infrakit.runtime import Runtime
    from infrakit.spec import SpecError

    log = logging.getLogger("infrakit")
    configure(log_level, json_logs)
    try:
        runtime = Runtime.from_file(cluster, http_group=True if http_group else None)
    except (SpecError, OSError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping (instances keep running)", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("home is %s", runtime.home)
    try:
        runtime.start()
    except Exception as error:  # a group its plugins refuse, a key that will not load...
        log.debug("cannot start", exc_info=True)
        runtime.stop()
        reason = str(error) if isinstance(error, SpecError) else f"cannot start: {error}"
        raise click.ClickException(reason) from None
    if not runtime.is_leader():
        log.info("another runtime leads on this home; waiting as a follower")
    try:
        while not stop.wait(0.5):
            lost = runtime.cannot_act()
            if lost:
                log.critical("the runtime cannot act: %s; exiting", "; ".join(lost))
                sys.exit(1)
    finally:
        runtime.stop()
        log.info("stopped")


@main.command()
@json_option
def home(as_json: bool) -> None:
    """Print the home directory the runtime would use."""
    if as_json:
        print_json({"Home": str(default_home())})
    else:
        click.echo(default_home())


if __name__ == "__main__":
    main()
