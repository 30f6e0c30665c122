"""kill -9 of a lone `infrakit run` in the middle of a rolling update of process instances, then
start it again: the update resumes from the instances' tags and completes; nothing is
duplicated and nothing orphaned."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

from conftest import Cli
from support import wait_for

from infrakit.plugins.instance.process import ProcessInstancePlugin

SIZE = 4


def group(version: str, state: Path) -> dict[str, Any]:
    # Each instance turns healthy a second after it starts, so the update takes a while.
    ready = f'test -e "{state}/$INFRAKIT_INSTANCE_ID/ready"'
    return {
        "ID": "rolling",
        "Properties": {
            "Allocation": {"Size": SIZE},
            "Instance": {"Plugin": "instance-process"},
            "Flavor": {
                "Plugin": "flavor-vanilla",
                "Properties": {
                    "Init": [f"echo {version}", "(sleep 1; touch ready) &", "exec sleep 600"],
                    "Health": {"Command": ready},
                },
            },
            "Health": {"Interval": "200ms", "GracePeriod": "30s"},
            "Update": {"MaxParallel": 1},
        },
    }


def census(state: Path) -> list[dict[str, str]]:
    plugin = ProcessInstancePlugin(state)
    try:
        return [d.tags for d in plugin.describe_instances({"infrakit.group": "rolling"})]
    finally:
        plugin.close()


def test_an_update_interrupted_by_kill_9_completes_after_restart(cli: Cli, tmp_path: Path) -> None:
    state = cli.home / "instances" / "process"
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps({"Groups": [group("v1", state)]}))
    runtime = cli.start("run", str(cluster), ready="converged: 4 instances")
    old = {t["infrakit.config.hash"] for t in census(state)}
    assert len(old) == 1

    spec = tmp_path / "v2.json"
    spec.write_text(json.dumps(group("v2", state)))
    assert "Performing a rolling update on 4 instances" in cli("group", "commit", str(spec))
    wait_for(
        lambda: sum(t["infrakit.config.hash"] not in old for t in census(state)) >= 1,
        what="the first replacement",
    )
    os.killpg(runtime.pid, signal.SIGKILL)
    runtime.wait(10)
    partway = [t["infrakit.config.hash"] for t in census(state)]
    assert any(h in old for h in partway), "the update finished before the kill; nothing tested"

    cli.start("run", str(cluster), ready="gained leadership: leading")

    def done() -> bool:
        tags = census(state)
        slots = Counter(t["infrakit.logical_id"] for t in tags)
        return (
            len(tags) == SIZE
            and set(slots.values()) == {1}
            and not {t["infrakit.config.hash"] for t in tags} & old
        )

    wait_for(done, timeout=60, what="the update to complete after the restart")
    # The committed spec survived the crash: the stored one is v2, not the cluster file's v1.
    inspected = json.loads(cli("group", "inspect", "rolling"))
    assert inspected["Properties"]["Flavor"]["Properties"]["Init"][0] == "echo v2"
