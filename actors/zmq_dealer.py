"""The DEALER connection that `RemoteRef` and `BlockingRef` both make, and what its socket
monitor says. No logging and no threads here: a short-lived client imports this.
"""

from __future__ import annotations

import contextlib
import struct
from typing import TYPE_CHECKING

import zmq

if TYPE_CHECKING:
    from actors.curve import CurveClientConfig

__all__ = [
    "HANDSHAKE_FAILURES",
    "MONITOR_EVENTS",
    "close_dealer",
    "connect_dealer",
    "next_event",
    "set_heartbeat",
]


def set_heartbeat(sock: zmq.Socket[bytes], heartbeat: float) -> None:
    """ZMTP heartbeats every `heartbeat` seconds; a peer silent for three is gone."""
    if heartbeat > 0:
        interval = max(1, int(heartbeat * 1000))
        sock.setsockopt(zmq.HEARTBEAT_IVL, interval)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * interval)
        sock.setsockopt(zmq.HEARTBEAT_TTL, 3 * interval)


MONITOR_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
"""What a client's socket monitor reports: connected, lost, retrying, or a refused handshake."""

HANDSHAKE_FAILURES: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "authentication refused",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "protocol error",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "no detail",
}
"""The words for each refused handshake (e.g. a CURVE key the server does not accept)."""


def connect_dealer(
    endpoint: str, heartbeat: float, curve: CurveClientConfig | None
) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
    """A DEALER connecting to `endpoint`, and the monitor socket that reports on it
    (`MONITOR_EVENTS`, read with `next_event`)."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # queue only to a live connection
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        set_heartbeat(sock, heartbeat)
        if curve is not None:
            sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.public_key)
            sock.setsockopt(zmq.CURVE_SECRETKEY, curve.secret_key)
            sock.setsockopt(zmq.CURVE_SERVERKEY, curve.server_key)
        monitor = sock.get_monitor_socket(MONITOR_EVENTS)
        sock.connect(endpoint)
    except BaseException:
        sock.close(linger=0)
        raise
    return sock, monitor


def close_dealer(sock: zmq.Socket[bytes], monitor: zmq.Socket[bytes]) -> None:
    """Close a socket made by `connect_dealer` and its monitor, dropping what is unsent."""
    with contextlib.suppress(zmq.ZMQError):
        sock.disable_monitor()
    monitor.close(linger=0)
    sock.close(linger=0)


def next_event(monitor: zmq.Socket[bytes]) -> int | None:
    """The next event the monitor socket reports (`zmq.EVENT_*`), or None if there is none
    now. (As pyzmq's `recv_monitor_message`, which imports zmq.asyncio and so asyncio.)"""
    try:
        frames = monitor.recv_multipart(zmq.NOBLOCK)
    except zmq.Again:
        return None
    event: int = struct.unpack("=hi", frames[0][:6])[0]
    return event
