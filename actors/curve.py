"""CURVE for `actors.remote`: key pairs, and what a server or a client needs to use them.

Encryption plus client authentication: a server accepts the clients whose public keys are in a
directory, checked by pyzmq's ZAP authenticator (see `RpcServer`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import zmq.auth

__all__ = ["CurveClientConfig", "CurveServerConfig", "generate_keypair", "load_keypair"]


@dataclass(frozen=True)
class CurveServerConfig:
    """The server's CURVE keypair (Z85) and the directory of client public keys it accepts.

    `authorized_keys_dir=None` accepts any client key: encryption without authentication.
    The directory is read when the server starts.
    """

    public_key: bytes
    secret_key: bytes
    authorized_keys_dir: str | None


@dataclass(frozen=True)
class CurveClientConfig:
    """The client's CURVE keypair and the server's public key (all Z85)."""

    public_key: bytes
    secret_key: bytes
    server_key: bytes


def generate_keypair(directory: str | os.PathLike[str], name: str) -> tuple[str, str]:
    """Write `name.key` (public) and `name.key_secret` into `directory`; return their paths."""
    os.makedirs(directory, exist_ok=True)
    return zmq.auth.create_certificates(directory, name)


def load_keypair(path: str | os.PathLike[str]) -> tuple[bytes, bytes | None]:
    """Read (public, secret) Z85 keys from a certificate file; secret is None for `.key`."""
    return zmq.auth.load_certificate(path)
