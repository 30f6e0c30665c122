"""Generic building blocks for Pykka actors: supervision, timers, backoff, circuit breakers,
leader election and JSON-RPC over ZeroMQ. Nothing in here knows about the application that
uses it."""

from actors.backoff import Backoff
from actors.circuit import CircuitBreaker
from actors.election import Election
from actors.leader import LeaderActor
from actors.remote import (
    CurveClientConfig,
    CurveServerConfig,
    RemoteRef,
    RpcServer,
    generate_keypair,
    load_keypair,
    serve_actor,
)
from actors.rpc_errors import AddressInUse, RemoteError, RpcClosed, RpcError, RpcTimeout
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
