"""A commit that reaches a group while its first look is under way (a runtime just started, or a
new leader just took over, and a client commits at once) must reach the instance actors that
look starts. Found by the chaos test (seed 1924070179, round 5): the actors kept the spec the
group was started with, so the rollout replaced one slot with the old configuration for ever
(thousands of replacements in two minutes, the commit never rolled out)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pykka
from support import file_group, wait_for

from infrakit import Runtime
from infrakit.events import REPLACING, Event
from infrakit.group.supervisor import GroupSupervisor
from infrakit.plugins.instance.file import FileInstancePlugin
from infrakit.spec import parse_group
from infrakit.spi import Description
from infrakit.spi.instance import TAG_CONFIG_HASH

GROUP = "late"
SIZE = 3


class SlowFirstLook(FileInstancePlugin):
    """File instances whose listing waits, once `held`, until the test lets it go: a slow
    cloud API on the group's first look."""

    def __init__(self, directory: Path, held: bool) -> None:
        super().__init__(directory)
        self.go = threading.Event()
        self.entered = threading.Event()
        if not held:
            self.go.set()

    def describe_instances(self, tags: Mapping[str, str]) -> list[Description]:
        self.entered.set()
        self.go.wait(120)
        return super().describe_instances(tags)


def spec(note: str) -> dict[str, Any]:
    data = copy.deepcopy(file_group(GROUP, size=SIZE))
    data["Properties"]["Instance"]["Plugin"] = "instance-slow"
    data["Properties"]["Instance"]["Properties"]["Note"] = note
    return data


def supervisor_of(group_id: str) -> pykka.ActorProxy[GroupSupervisor]:
    for ref in pykka.ActorRegistry.get_by_class(GroupSupervisor):
        proxy = ref.proxy()
        if proxy.group_id.get() == group_id:
            return proxy
    raise AssertionError(f"no supervisor for {group_id}")


def test_a_commit_during_the_first_look_rolls_out_once(home: Path, tmp_path: Path) -> None:
    files = tmp_path / "files"
    with Runtime(home=home, plugins={"instance-slow": SlowFirstLook(files, held=False)}) as first:
        first.commit(spec("v1"))
        first.wait_converged(GROUP)

    plugin = SlowFirstLook(files, held=True)
    seen: list[Event] = []
    runtime = Runtime(home=home, plugins={"instance-slow": plugin})
    runtime.events.subscribe(seen.append)
    with runtime:
        wait_for(plugin.entered.is_set, what="the restarted group's first look")
        runtime.commit(spec("v2"))
        # The supervisor answers only after it has passed the commit's Update on: the Update
        # waits for the reconciler, which is still in its first look.
        supervisor_of(GROUP).which_children().get(timeout=120)
        plugin.go.set()
        wanted = parse_group(spec("v2")).config_hash

        def rolled_out() -> bool:
            replaced = [e for e in seen if e.kind == REPLACING]
            assert len(replaced) <= SIZE, (
                f"{len(replaced)} replacements for a rollout of {SIZE}: the instance actors"
                f" did not get the commit ({replaced[-1].message})"
            )
            members = runtime.describe(GROUP)["Instances"]
            hashes = {m["Tags"][TAG_CONFIG_HASH] for m in members}
            return len(members) == SIZE and hashes == {wanted}

        wait_for(rolled_out, what="the commit to roll out")
