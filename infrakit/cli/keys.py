"""`infrakit keys generate`: CURVE key pairs for encrypted, authenticated tcp:// connections."""

from __future__ import annotations

import os
from pathlib import Path

import click
import zmq.auth

from infrakit.cli.helpformat import Group
from infrakit.cli.output import json_option, print_json


@click.group(cls=Group)
def keys() -> None:
    """Make CURVE key pairs for talking to a runtime over tcp://, encrypted and authenticated.

    \b
    How it fits together:
    - The runtime has a key pair: in the cluster file, "Manager": {"Listen":
      ["tcp://..."], "Curve": {"SecretKey": "server.key_secret",
      "AuthorizedKeys": "clients/"}}. Clients get its public key (server.key).
    - Each client has a key pair of its own; its public key (NAME.key) goes into
      the runtime's AuthorizedKeys directory, which is read when the runtime
      starts: restart it after adding a key. Other clients get no answer at all.
    - A client passes --curve-key NAME.key_secret --server-key server.key, e.g.
      infrakit group ls --endpoint tcp://host:port --curve-key ... --server-key ...
    """


@keys.command()
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default="client", show_default=True, help="The key files' base name.")
@json_option
def generate(directory: Path, name: str, as_json: bool) -> None:
    """Write a CURVE key pair into DIR: NAME.key (public) and NAME.key_secret (private, mode 0600).

    Give NAME.key to the other side (a server's authorized keys directory, or clients'
    --server-key); keep NAME.key_secret to yourself. Existing files of that name are replaced.
    With --json: {"PublicKey": path, "SecretKey": path}.
    """
    if not name or "/" in name:
        raise click.ClickException(f"a key name must be non-empty and without '/': {name!r}")
    mask = os.umask(0o077)  # the secret file is never readable by others, not even briefly
    try:
        # zmq.auth itself, not actors.curve: importing `actors` would cost this command more
        # than its own work (see the main module).
        directory.mkdir(parents=True, exist_ok=True)
        public, secret = zmq.auth.create_certificates(directory, name)
        os.chmod(public, 0o644)
    except OSError as error:
        raise click.ClickException(f"cannot write keys into {directory}: {error}") from None
    finally:
        os.umask(mask)
    if as_json:
        print_json({"PublicKey": str(public), "SecretKey": str(secret)})
        return
    click.echo(f"public key: {public}")
    click.echo(f"secret key: {secret}")
