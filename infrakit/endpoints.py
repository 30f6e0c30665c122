"""tcp:// endpoints: which reach beyond this host, and the address others connect to."""

from __future__ import annotations

import contextlib
import ipaddress
import socket

# Hosts that mean "every interface" in a ZeroMQ bind: nobody can connect to them.
WILDCARDS = frozenset({"*", "0.0.0.0", "::"})


def tcp_host(endpoint: str) -> str | None:
    """The host of a `tcp://HOST:PORT` endpoint (IPv6 brackets removed); None if not tcp://."""
    if not endpoint.startswith("tcp://"):
        return None
    host = endpoint[len("tcp://") :].rpartition(":")[0]
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def exposed(endpoint: str) -> bool:
    """Whether binding `endpoint` serves beyond this host: a tcp:// endpoint on anything but
    127.0.0.0/8, ::1 or `localhost` (an interface name counts as exposed)."""
    host = tcp_host(endpoint)
    if host is None or host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def wildcard(endpoint: str) -> bool:
    """Whether `endpoint` binds every interface (`*`, 0.0.0.0, ::), so cannot be connected to."""
    return tcp_host(endpoint) in WILDCARDS


def connectable(endpoint: str) -> str:
    """`endpoint` as another host can connect to it: a wildcard host is replaced by this host's
    name if it resolves, else by the address this host reaches the network from."""
    if not wildcard(endpoint):
        return endpoint
    port = endpoint.rpartition(":")[2]
    host = _this_host()
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


def _this_host() -> str:
    name = socket.gethostname()
    with contextlib.suppress(OSError):
        socket.getaddrinfo(name, None)
        return name
    # No packet is sent: connecting a UDP socket only picks the route, and its source address.
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: a documentation address
        address: str = probe.getsockname()[0]
        return address
    return name
