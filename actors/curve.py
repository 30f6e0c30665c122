"""CURVE for `actors.remote`: key pairs, and what a server or a client needs to use them
(immutable records as NamedTuples, not dataclasses: a short-lived client does not pay for
the dataclasses module).

Encryption plus client authentication: a server accepts the clients whose public keys are in a
directory, checked by pyzmq's ZAP authenticator (see `RpcServer`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import stat
from typing import NamedTuple

__all__ = [
    "CurveClientConfig",
    "CurveServerConfig",
    "generate_keypair",
    "load_keypair",
    "server_file_problems",
]


class CurveServerConfig(NamedTuple):
    """The server's CURVE keypair (Z85) and the directory of client public keys it accepts.

    `authorized_keys_dir=None` accepts any client key: encryption without authentication.
    The directory is read when the server starts.
    """

    public_key: bytes
    secret_key: bytes
    authorized_keys_dir: str | None


class CurveClientConfig(NamedTuple):
    """The client's CURVE keypair and the server's public key (all Z85)."""

    public_key: bytes
    secret_key: bytes
    server_key: bytes


def generate_keypair(directory: str | os.PathLike[str], name: str) -> tuple[str, str]:
    """Write `name.key` (public) and `name.key_secret` into `directory`; return their paths."""
    import zmq.auth  # on first use: a client without CURVE has no use for it

    os.makedirs(directory, exist_ok=True)
    return zmq.auth.create_certificates(directory, name)


def load_keypair(path: str | os.PathLike[str]) -> tuple[bytes, bytes | None]:
    """Read (public, secret) Z85 keys from a certificate file; secret is None for `.key`."""
    import zmq.auth

    return zmq.auth.load_certificate(path)


def server_file_problems(
    secret_key_file: str | os.PathLike[str], authorized_keys_dir: str | os.PathLike[str] | None
) -> list[str]:
    """What is wrong with a CURVE server's files, one sentence each: a secret key that group or
    others may read, and an authorized keys directory through which no client could connect
    (missing, holding no `*.key` public key, or holding one that does not load, which makes
    pyzmq's authenticator refuse every key)."""
    problems = []
    with contextlib.suppress(OSError):  # a missing key file fails the server's start instead
        mode = stat.S_IMODE(os.stat(secret_key_file).st_mode)
        if mode & 0o077:
            problems.append(
                f"{secret_key_file}: the server's secret key is open to group or others"
                f" (mode {mode:#o}); anyone who reads it can pose as this server: chmod 600 it"
            )
    if authorized_keys_dir is None:
        return problems
    directory = os.fspath(authorized_keys_dir)
    if not os.path.isdir(directory):
        problems.append(f"{directory}: no such directory of authorized keys: no client can connect")
        return problems
    loaded = 0
    for path in sorted(glob.glob(os.path.join(glob.escape(directory), "*.key"))):
        try:
            public, _ = load_keypair(path)
        except (OSError, ValueError) as error:
            problems.append(f"{path}: not a public key ({error}): no client can connect")
            return problems
        loaded += bool(public)
    if not loaded:
        problems.append(
            f"{directory}: holds no client public key (NAME.key): no client can connect"
        )
    return problems
