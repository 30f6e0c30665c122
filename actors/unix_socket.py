"""Who listens on a unix socket file: the check that both RPC servers make before they bind
a path (a stale file is taken over, a live server never), and that clients make to fail fast."""

from __future__ import annotations

import contextlib
import os
import socket


def accepting(path: str, timeout: float) -> bool:
    """Whether a process accepts connections at the unix socket `path`: False when there is no
    such file or nobody listens on it (a stale file). Other failures (a path too long, no
    permission) raise `OSError`."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    finally:
        probe.close()
    return True


def release_stale(path: str, timeout: float, owner: str) -> bool:
    """Make `path` free to bind unless a live process listens there: True once it is free
    (absent, or a stale socket file now removed), False if something listens. `OSError` if it
    cannot be told."""
    if not os.path.lexists(path):
        return True
    if accepting(path, timeout):
        return False
    import logging  # a server's concern: a client that only checks has no use for it

    logging.getLogger("actors.remote").info("%s: taking over stale socket file %s", owner, path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return True
