"""A group's revisions as values: every real commit is numbered and kept (the last `KEEP`)
with its spec, when, who and what changed, and whether it fully rolled out, so that an operator
can read the history, roll back to a revision, and OnFailure can go back to the last revision
known good. The manager stores the history with the group's spec."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from infrakit.spec import DEFAULT_MAX_GROUP_SIZE, GroupSpec, SpecError, parse_group

KEEP = 10
"""How many revisions a group keeps (the oldest go first)."""


@dataclass(frozen=True)
class Revision:
    """One commit of a group: its `number` (1, 2, ... per group), the spec, when (wall-clock
    seconds), who (`authenticated` when the server checked it), what changed in a few words,
    and whether its rolling update finished with nothing paused or failed."""

    number: int
    spec: GroupSpec
    time: float
    who: str
    authenticated: bool
    change: str
    rolled_out: bool = False

    def to_json(self, with_spec: bool = True) -> dict[str, Any]:
        """The stored and wire form (`Group.History`'s entries)."""
        data: dict[str, Any] = {
            "Revision": self.number,
            "Time": self.time,
            "Who": self.who,
            "Authenticated": self.authenticated,
            "Config": self.spec.config_hash,
            "Size": len(self.spec.logical_ids()),
            "Change": self.change,
            "RolledOut": self.rolled_out,
        }
        if with_spec:
            data["Spec"] = self.spec.to_json()
        return data

    @classmethod
    def from_json(cls, data: Any, max_group_size: int = DEFAULT_MAX_GROUP_SIZE) -> Revision | None:
        """Read a stored revision back; None if it is not one (or its spec no longer parses)."""
        if not isinstance(data, dict):
            return None
        number = data.get("Revision")
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            return None
        try:
            spec = parse_group(
                data.get("Spec"), source=f"stored revision {number}", max_group_size=max_group_size
            )
        except SpecError:
            return None
        at = data.get("Time")
        return cls(
            number=number,
            spec=spec,
            time=float(at) if isinstance(at, int | float) and not isinstance(at, bool) else 0.0,
            who=str(data.get("Who") or "unknown"),
            authenticated=data.get("Authenticated") is True,
            change=str(data.get("Change") or ""),
            rolled_out=data.get("RolledOut") is True,
        )


@dataclass(frozen=True)
class History:
    """A group's last `KEEP` revisions, oldest first."""

    revisions: tuple[Revision, ...] = ()

    @property
    def current(self) -> int:
        """The number of the latest revision (0 before the first)."""
        return self.revisions[-1].number if self.revisions else 0

    def find(self, number: int) -> Revision | None:
        return next((r for r in self.revisions if r.number == number), None)

    def add(
        self,
        spec: GroupSpec,
        now: float,
        who: str,
        authenticated: bool,
        change: str,
        rolled_out: bool = False,
    ) -> History:
        """The history with `spec` as its next revision, the oldest dropped past `KEEP`."""
        revision = Revision(self.current + 1, spec, now, who, authenticated, change, rolled_out)
        return History((*self.revisions, revision)[-KEEP:])

    def rolled_out(self, config_hash: str) -> History:
        """The latest revision marked fully rolled out, if it has that configuration."""
        if not self.revisions or self.revisions[-1].spec.config_hash != config_hash:
            return self
        latest = replace(self.revisions[-1], rolled_out=True)
        return History((*self.revisions[:-1], latest))

    def last_rolled_out(self, wanted: Callable[[GroupSpec], bool]) -> Revision | None:
        """The newest revision before the latest that fully rolled out and whose spec is
        `wanted` (one to go back to from the latest)."""
        for revision in reversed(self.revisions[:-1]):
            if revision.rolled_out and wanted(revision.spec):
                return revision
        return None

    def to_json(self) -> list[dict[str, Any]]:
        return [revision.to_json() for revision in self.revisions]

    @classmethod
    def from_json(cls, data: Any, max_group_size: int = DEFAULT_MAX_GROUP_SIZE) -> History:
        """Read a stored history back, skipping entries that are not revisions."""
        found = [Revision.from_json(entry, max_group_size) for entry in data or ()]
        kept = sorted((r for r in found if r is not None), key=lambda r: r.number)
        return cls(tuple(kept[-KEEP:]))


def describe_change(old: GroupSpec | None, new: GroupSpec) -> str:
    """What a commit changes, in a few words: `created (size 3)`, `size 2 -> 3`, `config
    1a2b3c4d -> 5e6f7a8b (Instance.Properties)`, or `no change`."""
    size = len(new.logical_ids())
    if old is None:
        return f"created (size {size})"
    parts = []
    old_size = len(old.logical_ids())
    if old_size != size:
        parts.append(f"size {old_size} -> {size}")
    if old.config_hash != new.config_hash:
        changed = _changed_paths(old.to_json()["Properties"], new.to_json()["Properties"])
        what = f" ({', '.join(changed)})" if changed else ""
        parts.append(f"config {old.config_hash[:8]} -> {new.config_hash[:8]}{what}")
    elif old.to_json() != new.to_json() and old_size == size:
        parts.append("allocation")  # the same size by other logical IDs
    return "; ".join(parts) or "no change"


def _changed_paths(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The sections (two levels deep, Allocation left out) whose value differs."""
    paths: list[str] = []
    for key in sorted(set(old) | set(new)):
        if key == "Allocation" or old.get(key) == new.get(key):
            continue
        before, after = old.get(key), new.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            inner = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
            paths.extend(f"{key}.{k}" for k in inner)
        else:
            paths.append(key)
    return paths
