"""Generic building blocks for Pykka actors: supervision, timers, backoff, circuit breakers,
leader election and JSON-RPC over ZeroMQ. Nothing in here knows about the application that
uses it.

Each name is imported from its module on first use (PEP 562), so that importing one module of
the package (a client's `actors.blocking_client`) does not import them all: Pykka, asyncio
and the servers cost a short command several times its own work.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actors.backoff import Backoff
    from actors.circuit import CircuitBreaker
    from actors.curve import (
        CurveClientConfig,
        CurveServerConfig,
        generate_keypair,
        load_keypair,
    )
    from actors.election import Election
    from actors.leader import LeaderActor
    from actors.rpc_client import RemoteRef
    from actors.rpc_errors import AddressInUse, RemoteError, RpcClosed, RpcError, RpcTimeout
    from actors.rpc_server import RpcServer, serve_actor
    from actors.scheduler import Scheduler, default_scheduler, tell_later
    from actors.supervisor import (
        ChildEnded,
        ChildExited,
        ChildSpec,
        Restart,
        Strategy,
        SupervisedActor,
        Supervisor,
        SupervisorGaveUp,
        start_child_actor,
    )

_MODULES = {
    "actors.backoff": ["Backoff"],
    "actors.circuit": ["CircuitBreaker"],
    "actors.election": ["Election"],
    "actors.leader": ["LeaderActor"],
    "actors.curve": ["CurveClientConfig", "CurveServerConfig", "generate_keypair", "load_keypair"],
    "actors.rpc_client": ["RemoteRef"],
    "actors.rpc_server": ["RpcServer", "serve_actor"],
    "actors.rpc_errors": ["AddressInUse", "RemoteError", "RpcClosed", "RpcError", "RpcTimeout"],
    "actors.scheduler": ["Scheduler", "default_scheduler", "tell_later"],
    "actors.supervisor": [
        "ChildEnded",
        "ChildExited",
        "ChildSpec",
        "Restart",
        "Strategy",
        "SupervisedActor",
        "Supervisor",
        "SupervisorGaveUp",
        "start_child_actor",
    ],
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "AddressInUse",
    "Backoff",
    "ChildEnded",
    "ChildExited",
    "ChildSpec",
    "CircuitBreaker",
    "CurveClientConfig",
    "CurveServerConfig",
    "Election",
    "LeaderActor",
    "RemoteError",
    "RemoteRef",
    "Restart",
    "RpcClosed",
    "RpcError",
    "RpcServer",
    "RpcTimeout",
    "Scheduler",
    "Strategy",
    "SupervisedActor",
    "Supervisor",
    "SupervisorGaveUp",
    "default_scheduler",
    "generate_keypair",
    "load_keypair",
    "serve_actor",
    "start_child_actor",
    "tell_later",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'actors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once only: later look-ups find it without this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
