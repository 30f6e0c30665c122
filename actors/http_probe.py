"""Whether a unix socket serves JSON-RPC over HTTP (Go InfraKit's wire), and what it
implements: a client's question, without the HTTP client or server machinery of
`actors.http_rpc` (a short command would pay for their imports).

A ZeroMQ peer greets first (its ZMTP signature starts with 0xFF, and no HTTP reply does), so
the probe tells one at once instead of waiting out its timeout for an HTTP reply that never
comes.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from actors.jsonrpc import MAX_MESSAGE_BYTES, BadMessage, Reply, encode_request, parse_reply

__all__ = ["JSON", "probe_http", "socket_path"]

JSON = "application/json"

_ZMTP_SIGNATURE = b"\xff"
"""The first byte a ZeroMQ (ZMTP 2 or 3) peer sends, before it reads anything."""


def socket_path(endpoint: str) -> str:
    """The socket path of `unix:///path` (or of a bare path)."""
    return endpoint[len("unix://") :] if endpoint.startswith("unix://") else endpoint


def probe_http(
    path: str | Path,
    timeout: float = 0.5,
    methods: tuple[str, ...] = ("Plugin.Implements", "Handshake.Implements"),
) -> list[dict[str, Any]] | None:
    """The APIs an HTTP JSON-RPC plugin at socket `path` lists in its handshake (the first of
    `methods` it answers: Go InfraKit's plugins know one name or the other, by version; [] if
    it answers neither), or None if what listens there does not answer HTTP: a ZeroMQ socket
    (known at once by its greeting), or anything silent for `timeout` seconds."""
    for method in methods:
        try:
            reply = _ask(str(path), method, timeout)
        except (OSError, BadMessage, ValueError):
            return None
        if reply is None:
            return None
        if reply.error is not None:
            continue
        if not isinstance(reply.result, dict):
            return None
        apis = reply.result.get("APIs")
        return [dict(a) for a in apis if isinstance(a, dict)] if isinstance(apis, list) else []
    return []


def _ask(path: str, method: str, timeout: float) -> Reply | None:
    """One POST of `method` to the socket at `path`: its reply, or None if the peer is no
    HTTP server (it greets in ZMTP, closes, or does not answer in HTTP)."""
    body = encode_request(1, method, {})
    head = (
        "POST / HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: identity\r\n"
        f"Content-Type: {JSON}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(head.encode("ascii") + body)
        first = sock.recv(1, socket.MSG_PEEK)
        if not first or first == _ZMTP_SIGNATURE:
            return None
        import http.client  # only for a peer that may be an HTTP server

        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
            return parse_reply(response.read(MAX_MESSAGE_BYTES))
        except http.client.HTTPException:
            return None
        finally:
            response.close()
