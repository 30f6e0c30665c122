"""What the client commands share: reaching a server through a typed client of the wire
(infrakit/wire), turning its errors into one clear line, reading JSON files and printing tables."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Generic, Self, TypeVar

import click

from actors.blocking_client import BlockingRef
from actors.curve import CurveClientConfig, load_keypair
from infrakit import jsondoc
from infrakit.cli.output import print_table
from infrakit.spi.errors import PluginError, SpecError, ValidationError
from infrakit.spi.group import GroupNotFoundError, NotLeaderError, RevisionError
from infrakit.wire.common import Client, Unreachable, param

CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a connection before saying that nothing answers."""
CALL_TIMEOUT = 60.0
"""Seconds to wait for the reply to one call once connected."""

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=Client)
T = TypeVar("T")


class Problems(click.ClickException):
    """A refused spec: every fault on a line of its own (`path: fault`), then exit status 1."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)

    def show(self, file: IO[Any] | None = None) -> None:
        for line in self.problems:
            click.echo(line, file=file, err=file is None)


class Reached(Generic[C]):
    """A typed client of a server the CLI reached (`connect`), with the sentence to print when
    the server stops answering. Leaving a `with` block closes it quickly: a CLI process is
    about to exit."""

    def __init__(self, client: C, unreachable: str, curve: CurveClientConfig | None = None) -> None:
        self.client = client
        self.endpoint = client.endpoint
        self.unreachable = unreachable
        self.curve = curve

    def ask(self, question: Callable[[C], T]) -> T:
        """`question(client)`; each failure it raises as the SPI's error becomes a
        `click.ClickException` worth printing: one line, or a line per fault of a spec."""
        try:
            return self._answer(question)
        except Unreachable:
            raise click.ClickException(self.unreachable) from None
        except (SpecError, ValidationError) as error:
            lines = [f"{path}: {fault}" if path else fault for path, fault in error.problems]
            raise Problems(lines) from None
        except NotLeaderError as error:
            message = str(error)
            if error.leader and error.leader not in message:
                message = f"{message} (the leader is {error.leader})"
            raise click.ClickException(message) from None
        except (PluginError, GroupNotFoundError, RevisionError) as error:
            raise click.ClickException(str(error)) from None

    def _answer(self, question: Callable[[C], T]) -> T:
        """`question(client)`, raising the SPI's errors (a subclass may ask elsewhere too)."""
        return question(self.client)

    def close(self) -> None:
        self.client.close(timeout=1.0)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def ipc_listening(endpoint: str) -> bool:
    """False if `endpoint` is an ipc:// path that nothing listens on (missing or stale).

    A quick local check, so a client fails at once instead of waiting for a connection.
    Endpoints of other transports are assumed reachable (the connect timeout decides).
    """
    if not endpoint.startswith("ipc://") or endpoint.startswith("ipc://@"):
        return True
    from actors.unix_socket import accepting  # (socket is not cheap to import; connect needs none)

    try:
        return accepting(endpoint[len("ipc://") :], 1.0)
    except NotADirectoryError:
        return False
    except OSError:
        return True  # e.g. a path too long for a socket: let ZeroMQ say what is wrong


def connect(
    endpoint: str,
    unreachable: str,
    kind: type[C],
    curve: CurveClientConfig | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    call_timeout: float = CALL_TIMEOUT,
) -> Reached[C]:
    """A client of `kind` for the server at `endpoint`, once connected (waiting at most
    `connect_timeout` seconds).

    Raises `click.ClickException(unreachable)` if nothing answers in time, so that a command
    never hangs on a server that is not there.
    """
    try:
        ref = BlockingRef(
            endpoint, timeout=call_timeout, retries=1, idempotent=kind.IDEMPOTENT, curve=curve
        )
    except Exception as error:  # zmq refuses a malformed endpoint
        raise click.ClickException(f"cannot connect to {endpoint}: {error}") from None
    # A local socket that refuses the connection has nothing listening: say so at once.
    local = endpoint.startswith("ipc://") and not endpoint.startswith("ipc://@")
    if not ref.wait_up(connect_timeout, until_refused=local):
        ref.close()
        if ref.refused:  # the handshake was refused, e.g. CURVE authentication
            raise click.ClickException(f"cannot talk to {endpoint}: {ref.down_reason}")
        raise click.ClickException(unreachable)
    return Reached(kind(ref), unreachable, curve)


def plugin_endpoint(name: str) -> str:
    """The endpoint of plugin `name`; `sock/type` means socket `sock`; a URL stays itself."""
    from infrakit import paths

    return name if "://" in name else paths.plugin_endpoint(name)


def connect_to_plugin(name: str, kind: type[C]) -> Reached[C]:
    """A client of `kind` for plugin `name` (found in the plugins directory, or an endpoint),
    or one clear error line if it does not run."""
    from infrakit.wire.plugin import http_endpoint

    endpoint = plugin_endpoint(name)
    unreachable = f"no plugin answers at {endpoint} (is `infrakit plugin start` running?)"
    http = http_endpoint(endpoint)  # Go InfraKit's wire: `unix://`, or a socket answering HTTP
    if http is not None:
        return connect_http(http, unreachable, kind)
    return connect(endpoint, unreachable, kind)


def connect_http(
    endpoint: str, unreachable: str, kind: type[C], call_timeout: float = CALL_TIMEOUT
) -> Reached[C]:
    """A client of `kind` for the HTTP JSON-RPC server (Go InfraKit's wire) at `unix://`
    `endpoint`, once it has answered a handshake; `click.ClickException(unreachable)` if not."""
    from actors.http_probe import probe_http, socket_path  # only for HTTP: not cheap
    from actors.http_rpc import HttpRef

    if probe_http(socket_path(endpoint), timeout=CONNECT_TIMEOUT) is None:
        raise click.ClickException(unreachable)
    ref = HttpRef(endpoint, timeout=call_timeout, retries=1, idempotent=kind.IDEMPOTENT, name="cli")
    return Reached(kind(ref), unreachable)


def curve_config(curve_key: Path | None, server_key: Path | None) -> CurveClientConfig | None:
    """The CURVE settings for `--curve-key` and `--server-key`, or None when neither is given."""
    if curve_key is None and server_key is None:
        return None
    if curve_key is None or server_key is None:
        raise click.ClickException("--curve-key and --server-key go together")
    try:
        public, secret = load_keypair(curve_key)
        server_public, _ = load_keypair(server_key)
    except (OSError, ValueError) as error:
        raise click.ClickException(f"cannot read a CURVE key: {error}") from None
    if secret is None:
        raise click.ClickException(f"{curve_key} holds no secret key (use the .key_secret file)")
    return CurveClientConfig(public_key=public, secret_key=secret, server_key=server_public)


def curve_options(function: F) -> F:
    """Add `--curve-key` and `--server-key` (CURVE encryption and authentication)."""
    function = click.option(
        "--server-key",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="The server's public CURVE key file (NAME.key); with --curve-key.",
    )(function)
    function = click.option(
        "--curve-key",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Your CURVE key pair (NAME.key_secret from `infrakit keys generate`).",
    )(function)
    return function


def read_json(file: IO[str]) -> Any:
    """The JSON document in `file` (a click.File), read strictly (`infrakit.jsondoc`); each
    fault of a bad one is a line `FILE: path: fault`."""
    try:
        return jsondoc.read(file)
    except jsondoc.JsonError as error:
        raise Problems(
            [
                f"{file.name}: {path}: {fault}" if path else f"{file.name}: {fault}"
                for path, fault in error.problems
            ]
        ) from None
    except OSError as error:
        raise click.ClickException(f"{file.name}: cannot read: {error}") from None


def read_as(file: IO[str], parse: Callable[[Mapping[str, Any]], T], what: str) -> T:
    """The JSON object in `file` made into `what` by `parse` (e.g. `Spec.from_json`); one
    clear line if it cannot be."""
    return parsed(read_json(file), parse, f"{file.name}: {what}")


def parsed(data: Any, parse: Callable[[Mapping[str, Any]], T], what: str) -> T:
    """`parse(data)` of a JSON object, or one line saying why `data` is not `what`."""
    if not isinstance(data, dict):
        raise click.ClickException(f"{what}: must be a JSON object")
    try:
        return parse(data)
    except KeyError as error:
        raise click.ClickException(f"{what}: missing {error}") from None
    except (TypeError, ValueError, AttributeError) as error:
        raise click.ClickException(f"{what}: not usable: {error}") from None


def format_tags(tags: Mapping[str, Any] | None) -> str:
    """Tags as `k=v,k=v`, sorted, or `-` when there are none."""
    if not tags:
        return "-"
    return ",".join(f"{key}={value}" for key, value in sorted(tags.items()))


def parse_pairs(pairs: Iterable[str], what: str) -> dict[str, str]:
    """`["k=v", ...]` as a dict; a pair without `=` is an error naming the option."""
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.ClickException(f"{what} must be KEY=VALUE, not {pair!r}")
        result[key] = value
    return result


def print_descriptions(descriptions: Iterable[Mapping[str, Any]], quiet: bool) -> None:
    """Instance descriptions as a table of ID, LOGICAL and TAGS, or just the IDs (`quiet`).
    LOGICAL is the LogicalID, else the `infrakit.logical_id` tag (a Size group's slot)."""
    from infrakit.spi.instance import TAG_LOGICAL_ID  # here: `group ls` need not load it

    items = list(descriptions)
    if quiet:
        for item in items:
            click.echo(str(param(item, "ID")))
        return
    rows = [
        (
            str(param(d, "ID")),
            str(param(d, "LogicalID") or (param(d, "Tags") or {}).get(TAG_LOGICAL_ID) or "-"),
            format_tags(param(d, "Tags")),
        )
        for d in items
    ]
    print_table(("ID", "LOGICAL", "TAGS"), rows)
