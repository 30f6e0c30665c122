"""Serve any object at a ZeroMQ endpoint and call it from elsewhere: JSON-RPC 2.0 over
ROUTER (server) / DEALER (client), one UTF-8 JSON object per message.

- `RpcServer` (actors/rpc_server.py) serves a table of handlers; `serve_actor` a Pykka actor.
- `RemoteRef` (actors/rpc_client.py) calls one from any number of threads.
- CURVE (actors/curve.py): encryption plus client authentication through pyzmq's ZAP
  authenticator.

This module gathers the public names of all three.
"""

from actors.curve import CurveClientConfig, CurveServerConfig, generate_keypair, load_keypair
from actors.rpc_client import RemoteRef
from actors.rpc_server import Handler, RpcServer, serve_actor

__all__ = [
    "CurveClientConfig",
    "CurveServerConfig",
    "Handler",
    "RemoteRef",
    "RpcServer",
    "generate_keypair",
    "load_keypair",
    "serve_actor",
]
