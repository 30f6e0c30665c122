"""`Group.Activity` over a real ZeroMQ socket: a runtime's activity history reaches a
`GroupClient` whole, its limit passed on; a bad limit is refused naming the parameter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_wire_group import Scripted, serving

from infrakit.spi import PluginError
from infrakit.spi.group import ActivityHistory, GroupNotFoundError
from infrakit.wire.group import GroupClient

ENTRY = {
    "Time": 1736244580.25,
    "What": "replacing workers-0",
    "Cause": "proc-1 is gone; replacing it",
    "Kind": "gone",
    "LogicalID": "workers-0",
    "Instance": "proc-1",
}


class WithActivity(Scripted, ActivityHistory):
    def group_activity(self, group_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        return list(self._answer("activity", (group_id, limit), [ENTRY]))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[WithActivity, GroupClient]]:
    plugin = WithActivity()
    with serving(plugin, tmp_path) as client:
        yield plugin, client


def test_the_history_round_trips_with_its_limit(served: tuple[WithActivity, GroupClient]) -> None:
    plugin, client = served
    assert client.group_activity("workers") == [ENTRY]
    assert client.group_activity("workers", 5) == [ENTRY]
    assert plugin.calls == [("activity", ("workers", None)), ("activity", ("workers", 5))]


def test_an_unknown_group_arrives_as_group_not_found(
    served: tuple[WithActivity, GroupClient],
) -> None:
    plugin, client = served
    plugin.error = GroupNotFoundError("Group 'nope' is not being watched")
    with pytest.raises(GroupNotFoundError, match="'nope' is not being watched"):
        client.group_activity("nope")


@pytest.mark.parametrize("limit", [0, -1, 1.5, "3", True])
def test_a_bad_limit_is_refused_naming_it(
    served: tuple[WithActivity, GroupClient], limit: Any
) -> None:
    plugin, client = served
    with pytest.raises(PluginError, match=r"params\.Limit must be"):
        client.group_activity("workers", limit)
    assert plugin.calls == []
