"""kill -9 of `infrakit run` at random points of a process group's creation, rolling update,
scale-down and destroy (40 instances, 5 trials of each), restarting it on the same home each
time: once it has done what the user asked (converged at the wanted size, or the group gone),
no instance is duplicated, no process is orphaned, and the final destroy leaves nothing.

Every instance carries CRASH_TOKEN in its environment, so its processes are found in /proc
whatever any record says. The seed is printed; CRASH_SEED=<seed> replays a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import INFRAKIT, Cli
from support import environments, wait_for

GROUP = "crash"
SIZE = 40
SMALL = 15
ROUNDS = 5  # each: creation, rolling update, scale-down, destroy
READY = "gained leadership: leading"
HASH = "infrakit.config.hash"
LOGICAL = "infrakit.logical_id"


def group(token: str, version: int, size: int) -> dict[str, Any]:
    return {
        "ID": GROUP,
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {
                "Plugin": "instance-process",
                "Properties": {"Env": {"CRASH_TOKEN": token}},
            },
            "Flavor": {
                "Plugin": "flavor-vanilla",
                "Properties": {"Init": [f"# version {version}", "exec sleep 3600"]},
            },
            "Health": {"Interval": "200ms"},
            "Update": {"MaxParallel": 8},
        },
    }


def carrying(token: str) -> dict[str, set[int]]:
    """Instance ID -> PIDs of the live processes whose environment has CRASH_TOKEN=token."""
    found: dict[str, set[int]] = {}
    for pid, env in environments().items():
        if env.get("CRASH_TOKEN") == token:
            found.setdefault(env.get("INFRAKIT_INSTANCE_ID", "?"), set()).add(pid)
    return found


@dataclass
class Tally:
    """What the trials found, to print and to assert."""

    kills: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0  # live instance processes beyond one per logical ID, summed over trials
    orphans: set[str] = field(default_factory=set)  # instances seen live but not described
    leftovers: set[str] = field(default_factory=set)  # in the state dir after a destroy
    notes: list[str] = field(default_factory=list)

    def count(self, phase: str, described: list[dict[str, Any]], token: str) -> None:
        live = carrying(token)
        ids = {d["ID"]: d["Tags"].get(LOGICAL) for d in described}
        orphans = set(live) - set(ids)
        per_slot = Counter(ids[i] for i in live if i in ids)
        duplicates = sum(n - 1 for n in per_slot.values()) + sum(len(p) - 1 for p in live.values())
        self.orphans |= orphans
        self.duplicates += duplicates
        if orphans or duplicates:
            doubled = {slot: n for slot, n in per_slot.items() if n > 1}
            self.notes.append(f"{phase}: orphans {sorted(orphans)}, duplicated slots {doubled}")


class Runtime:
    """`infrakit run` on one home, its output in a file (a pipe could fill and block it)."""

    def __init__(self, cli: Cli, cluster: Path, log: Path) -> None:
        self.cli, self.cluster, self.log = cli, cluster, log
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "a") as out:
            self.process = subprocess.Popen(
                [*INFRAKIT, "run", str(self.cluster)],
                env=self.cli.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        self.cli.background.append(self.process)

        def ready() -> bool:
            assert self.process is not None and self.process.poll() is None, self.tail()
            with open(self.log, "rb") as f:
                f.seek(offset)
                return READY.encode() in f.read()

        wait_for(ready, timeout=120, what="the runtime to lead")

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)  # the runtime alone: its instances live on
        self.process.wait(30)

    def tail(self) -> str:
        return self.log.read_text()[-3000:]


@pytest.mark.timeout(1200)  # 21 runtime starts and some 200 CLI calls: minutes on a busy machine
def test_kill_9_anywhere_leaves_no_duplicate_and_no_orphan(cli: Cli, tmp_path: Path) -> None:
    seed = int(os.environ.get("CRASH_SEED") or secrets.randbits(32))
    print(f"CRASH_SEED={seed}")
    rng = random.Random(seed)
    token = secrets.token_hex(6)
    state = cli.home / "instances" / "process"
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps({"Groups": []}))
    runtime = Runtime(cli, cluster, tmp_path / "run.log")
    tally = Tally()
    spec_file = tmp_path / "group.json"
    version = 0

    def commit(size: int) -> None:
        spec_file.write_text(json.dumps(group(token, version, size)))
        assert "Committed crash" in cli("group", "commit", str(spec_file))

    def converged(size: int) -> list[dict[str, Any]]:
        """The group's instances once it has converged at `size`, all of the current spec."""
        seen: list[str] = []

        def done() -> list[dict[str, Any]] | None:
            out = json.loads(cli("group", "describe", GROUP, "--json"))
            instances = list(out["Instances"])
            hashes = {i["Tags"][HASH] for i in instances}
            seen[:] = [f"converged {out['Converged']}, {len(instances)} of {len(hashes)} specs"]
            ok = out["Converged"] and len(instances) == size and len(hashes) == 1
            return instances if ok else None

        try:
            return wait_for(done, timeout=300, what=f"convergence at {size}")
        except AssertionError as failure:
            raise AssertionError(f"{failure}; last look: {seen}") from None

    def instance_dirs() -> list[Path]:
        return [p for p in state.iterdir() if not p.name.startswith(".")] if state.exists() else []

    def hashes_on_disk() -> list[str]:
        found = []
        for idir in instance_dirs():
            try:
                found.append(json.loads((idir / "instance.json").read_text())["Tags"][HASH])
            except (OSError, ValueError, KeyError):
                continue
        return found

    def trial(phase: str, begin: Callable[[], None], midway: Callable[[], bool]) -> None:
        begin()
        wait_for(midway, timeout=120, what=f"the kill point of {phase}")
        runtime.kill()
        tally.kills[phase] += 1
        runtime.start()

    runtime.start()
    try:
        for _ in range(ROUNDS):
            version += 1
            k = rng.randint(1, SIZE - 1)
            trial("creation", lambda: commit(SIZE), lambda k=k: len(instance_dirs()) >= k)
            tally.count("creation", converged(SIZE), token)

            old = set(hashes_on_disk())
            version += 1
            k = rng.randint(1, SIZE - 1)
            trial(
                "update",
                lambda: commit(SIZE),
                lambda k=k, old=old: sum(h not in old for h in hashes_on_disk()) >= k,
            )
            tally.count("update", converged(SIZE), token)

            k, before = rng.randint(1, SIZE - SMALL - 1), len(instance_dirs())
            trial(
                "scale-down",
                lambda: commit(SMALL),
                lambda k=k, before=before: before - len(instance_dirs()) >= k,
            )
            tally.count("scale-down", converged(SMALL), token)
            commit(SIZE)
            converged(SIZE)

            k, before = rng.randint(1, SIZE - 1), len(instance_dirs())
            trial(
                "destroy",
                lambda: cli("group", "destroy", GROUP),
                lambda k=k, before=before: before - len(instance_dirs()) >= k,
            )
            # The destroy goes on after the restart; --wait returns once nothing is left.
            cli("group", "destroy", GROUP, "--wait", "--timeout", "300", check=False)
            assert GROUP not in cli("group", "ls", "-q").split()
            tally.count("destroy", [], token)
            left = sorted(p.name for p in state.iterdir()) if state.exists() else []
            tally.leftovers |= set(left)
            if left:
                tally.notes.append(f"destroy left {len(left)}: {left[:5]}...")
    finally:
        trials = sum(tally.kills.values())
        print(
            f"crash test (seed {seed}): {trials} trials with {SIZE} instances, kills per phase"
            f" {dict(tally.kills)}; duplicates {tally.duplicates}, orphans {len(tally.orphans)},"
            f" entries left after a destroy {len(tally.leftovers)}"
        )
        for note in tally.notes:
            print(note)
        for pids in carrying(token).values():  # whatever a failure left running
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
    assert trials >= 20
    # Each destroy trial counted as orphans whatever still ran, and as leftovers what was left.
    assert (tally.duplicates, len(tally.orphans), len(tally.leftovers)) == (0, 0, 0), tally.notes
