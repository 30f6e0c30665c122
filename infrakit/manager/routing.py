"""Shared mode (`Manager.Mode: shared`): which manager a group's calls belong to.

A group is run by the live manager that owns it (its key under the election's `owners/`).
A group nobody owns (a new one, or one whose owner just died) is claimed by the manager the
call reached, if it is worth claiming; the managers' balancing (`actors/owner.py`) moves it
on later if it belongs elsewhere. Every other manager sends the call to the owner.
"""

from __future__ import annotations

from collections.abc import Callable

from actors.owner import Ownership
from infrakit.spi.group import GroupCannotRunError, NotOwnerError

__all__ = ["elsewhere", "route"]


def route(
    group_id: str, ownership: Ownership, worth_claiming: Callable[[], bool] = lambda: True
) -> str | None:
    """None when this manager owns `group_id` now (claiming it if nobody owns it and it is
    `worth_claiming`: a group that exists, or one being made), or when nobody owns it and it
    is not; else where its owner is ("" while nobody can say: our own key from before a lost
    lease, say, which goes with that lease)."""
    try:
        if ownership.holds(group_id):
            return None
        holder = ownership.owner(group_id)
        if holder is None:
            return ownership.claim(group_id) if worth_claiming() else None
    except Exception as error:  # etcd does not answer: say so, change nothing
        raise GroupCannotRunError(
            f"cannot tell which manager runs group {group_id!r}: {error}"
        ) from None
    return "" if holder == ownership.location else holder


def elsewhere(group_id: str, location: str) -> NotOwnerError | GroupCannotRunError:
    """The refusal that sends a call on to the group's owner (the wire forwards it there), or
    says that nobody can take it at this moment."""
    if location:
        return NotOwnerError(f"group {group_id!r} is run by the manager at {location}", location)
    return GroupCannotRunError(
        f"no manager runs group {group_id!r} at the moment (it is moving to another manager);"
        " try again in a few seconds"
    )
