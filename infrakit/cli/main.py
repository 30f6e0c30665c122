"""The `infrakit` command: run a cluster in the foreground, validate files.

Each command imports what it needs when it runs: `infrakit keys generate` has no use for the
actor tree or pydantic, whose imports cost several times its own work (and under load, tens of
seconds).
"""

from __future__ import annotations

import contextlib
import os
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
    """The root group: lazy subcommands, errors shown with a red `Error:` on a terminal, and
    a quick exit for a command that started nothing to tear down."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run as the program (click exits the process itself); `main()` stays as it is for
        callers that embed the command, such as click's test runner."""
        try:
            return super().__call__(*args, **kwargs)
        except SystemExit as done:
            exit_now(done)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; an error it raises is shown with a red `Error:` on a terminal."""
        try:
            return super().invoke(ctx)
        except click.ClickException as error:
            show_error(error)
            ctx.exit(error.exit_code)


def exit_now(done: SystemExit) -> None:
    """End the process with `done`'s status, skipping the interpreter's teardown when the
    command left nothing behind it: only this thread runs and no runtime was started.

    The teardown (every module's finalisers, pyzmq's context) costs a client command about
    11 ms of its 80 (bench/cli.py); the process holds nothing the OS does not release, so
    once its output is flushed there is nothing left to do. Anything else (a runtime, a thread
    still working, output that cannot be written) takes Python's ordinary exit.
    """
    if "pykka" in sys.modules or threading_active() > 1:
        raise done
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.shutdown()  # what Python's exit does: flush every handler
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        raise done from None  # Python's own exit says what it can
    code = done.code
    if code is not None and not isinstance(code, int):
        sys.stderr.write(f"{code}\n")  # as Python's own exit prints a message
        code = 1
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code or 0)


def threading_active() -> int:
    """How many threads run, without importing `threading` when nothing else has."""
    threading = sys.modules.get("threading")
    return threading.active_count() if threading else 1


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
        waiting = "; waiting as a follower" if runtime.config.manager.mode == "leader" else ""
        log.info("%s%s", runtime.following(), waiting)
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
