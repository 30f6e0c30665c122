"""Generic building blocks for Pykka actors: supervision, timers, backoff, circuit breakers
and leader election. Nothing in here knows about the application that uses it."""

from actors.backoff import Backoff
from actors.circuit import CircuitBreaker
from actors.election import Election
from actors.leader import LeaderActor
from actors.scheduler import Scheduler, default_scheduler, tell_later
from actors.supervisor import (
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
    "Backoff",
    "ChildExited",
    "ChildSpec",
    "CircuitBreaker",
    "Election",
    "LeaderActor",
    "Restart",
    "Scheduler",
    "Strategy",
    "SupervisedActor",
    "Supervisor",
    "SupervisorGaveUp",
    "default_scheduler",
    "start_child_actor",
    "tell_later",
]
