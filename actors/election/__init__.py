"""Leader election: one of several candidates holds leadership at a time."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from actors.election.file import FileElection

__all__ = ["Election", "FileElection"]


@runtime_checkable
class Election(Protocol):
    """A way for candidates to agree on one leader.

    Implementations must be safe to call from any thread.
    """

    def campaign(self) -> bool:
        """Try to become (or stay) leader without blocking; return whether leader now."""
        ...

    def resign(self) -> None:
        """Give up leadership, if held. Idempotent."""
        ...

    def is_leader(self) -> bool:
        """Whether leader as of the last check; cheap, for fencing every destructive step."""
        ...

    def leader_location(self) -> str | None:
        """Where the current leader says it can be reached, if known."""
        ...
