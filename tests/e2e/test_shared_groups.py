"""Sharding (issue 15, `Manager.Mode: shared`) as a user sees it: three `infrakit run` processes
on the machine's etcd, each on its own home as on three hosts, all given one cluster file of
30 small groups of real processes (the process plugin's host-wide default `Dir`). Each manager
runs about a third of the groups and every host agrees on who owns which; a manager killed
(-9) has its groups run on by the others, and takes its share back when it returns, with not
one instance replaced; a manager frozen past its TTL never acts on a group it lost. What runs
is counted from /proc, whatever any manager says."""

from __future__ import annotations

import json
import re
import secrets
import signal
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import pytest
from runtimes import TTL, Running, Runtimes, Sampler, census, instance_env, violations
from support import wait_for

MANAGERS = 3
SIZES = {f"s{n:02d}": 1 + n % 2 for n in range(30)}  # 45 sleeping processes in all
FAIR = range(8, 13)  # how many of the 30 groups each of 3 managers owns
ACTED = re.compile(r"^\S+\s+\w+\s+(?P<group>[\w.-]+): .*\b(provisioned|destroyed|replacing)\b")


class Shared(Runtimes):
    """Three runtimes in shared mode, every cluster file with the same 30 groups, whose
    instances carry `token` (for the census)."""

    def __init__(self, root: Path) -> None:
        self.token = secrets.token_hex(6)
        groups = [spec(self.token, group, size) for group, size in SIZES.items()]
        super().__init__(root, MANAGERS, manager={"Mode": "shared"}, groups=groups)

    def running(self) -> Running:
        return census(self.token, self.state)


def spec(token: str, group: str, size: int) -> dict[str, Any]:
    """A Size group of `size` sleeping processes, found by `token`; no rolling update ever
    runs, so more than one live process in a slot, or a process past the size, is a fault."""
    return {
        "ID": group,
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {
                "Plugin": "instance-process",
                "Properties": {"Env": instance_env(token, group)},
            },
            "Flavor": {"Plugin": "flavor-vanilla", "Properties": {"Init": ["exec sleep 1000"]}},
        },
    }


def unsettled(cluster: Shared, live: list[int], sizes: Mapping[str, int], fair: bool) -> str:
    """Why the cluster is not (yet) where it should be with the runtimes `live` up, or "" once
    it is: every live runtime answers and lists exactly the live ones; all name the same owner
    for every group, a live runtime, each owning 8-12 groups if `fair`; each group converged
    on its owner, with exactly one live process in each of its `sizes[group]` slots."""
    cluster.answering()  # raises at once for a runtime that exited of itself
    statuses = {index: cluster.ask(index, "Manager.Status") for index in live}
    quiet = [index for index, status in statuses.items() if status is None]
    if quiet:
        return f"runtimes {quiet} do not answer"
    endpoints = {cluster.endpoint(index) for index in live}
    for index, status in statuses.items():
        listed = {m.get("Location") for m in status.get("ManagerList") or []}
        if listed != endpoints:
            return f"runtime {index} lists managers {sorted(listed)}"
    owners = [status.get("Owners") or {} for status in statuses.values()]
    if any(seen != owners[0] for seen in owners):
        return f"the runtimes name different owners: {owners}"
    where = owners[0]
    if set(where) != set(sizes) or not set(where.values()) <= endpoints:
        return f"owners {where}"
    counts = Counter(where.values())
    if fair and any(counts[endpoint] not in FAIR for endpoint in endpoints):
        return f"groups per manager {dict(counts)}: not 8-12 each"
    for group, endpoint in where.items():
        owner = cluster.index(endpoint)
        assert owner is not None
        summary = next((g for g in statuses[owner].get("Groups") or [] if g["ID"] == group), {})
        if not summary.get("Converged"):
            return f"{group} has not converged on its owner {endpoint}: {summary}"
    slots = Counter(slot for _, slot, _ in cluster.running())
    wanted = Counter(f"{group}-{n}" for group, size in sizes.items() for n in range(size))
    if slots != wanted:
        return (
            f"live slots differ from the wanted ones: {dict((slots - wanted) + (wanted - slots))}"
        )
    return ""


def settle(
    cluster: Shared, live: list[int], sizes: Mapping[str, int] = SIZES, fair: bool = True
) -> dict[str, int]:
    """Wait until `unsettled` has nothing to say; each group's owner (by index) then."""
    last = [""]

    def settled() -> bool:
        last[0] = unsettled(cluster, live, sizes, fair)
        return not last[0]

    try:
        wait_for(settled, what=f"runtimes {live} to run every group")
    except AssertionError as error:
        raise AssertionError(f"{error}; last seen: {last[0]}\n{cluster.logs()}") from None
    status = cluster.call(live[0], "Manager.Status")
    owners = {group: cluster.index(where) for group, where in status["Owners"].items()}
    return {group: index for group, index in owners.items() if index is not None}


def owner_of(cluster: Shared, group: str, asked: int) -> int | None:
    """The owner of `group` (by index), as runtime `asked` says."""
    status = cluster.ask(asked, "Manager.Status") or {}
    return cluster.index((status.get("Owners") or {}).get(group, ""))


def processes(running: Running) -> dict[str, set[int]]:
    """Each group's live PIDs."""
    found: dict[str, set[int]] = {}
    for group, _, pid in running:
        found.setdefault(group, set()).add(pid)
    return found


def shares(owners: Mapping[str, int]) -> str:
    return ", ".join(f"manager {i}: {n}" for i, n in sorted(Counter(owners.values()).items()))


@pytest.fixture
def cluster(tmp_path: Path, etcd: IO[str]) -> Iterator[Shared]:
    """Three runtimes in shared mode; afterwards nothing is left: runtimes stopped, instances
    killed, the etcd prefix removed."""
    with Shared(tmp_path) as running:
        yield running


@pytest.mark.slow
def test_three_managers_share_thirty_groups_and_agree_on_the_owners(cluster: Shared) -> None:
    for index in range(MANAGERS):
        cluster.start(index)
    owners = settle(cluster, [0, 1, 2])
    print(f"groups per manager: {shares(owners)}", flush=True)
    assert cluster.state.is_dir()  # the process plugin's host-wide default, as computed here

    endpoints = sorted(cluster.endpoint(index) for index in range(MANAGERS))
    for index in range(MANAGERS):
        done = cluster.cli(index, "manager", "status", "--json")
        assert done.returncode == 0, done.stderr
        status = json.loads(done.stdout)
        assert status["Mode"] == "shared"
        assert {g: cluster.index(w) for g, w in status["Owners"].items()} == owners
        assert sorted(m["Location"] for m in status["ManagerList"]) == endpoints

    # A group another manager owns, described on this host: its owner answers.
    group = next(g for g, owner in owners.items() if owner != 0)
    described = cluster.cli(0, "group", "describe", group, "--json")
    assert described.returncode == 0, described.stderr
    assert len(json.loads(described.stdout)["Instances"]) == SIZES[group]
    assert not cluster.tracebacks()


@pytest.mark.slow
def test_a_killed_managers_groups_move_and_come_back_with_no_instance_replaced(
    cluster: Shared,
) -> None:
    """kill -9 of a manager: the others run its groups on (adopting their processes); started
    again, it takes its share back by the handshake. Sampled throughout: no duplicate, no
    orphan; at the end every group has the very processes it had at the start."""
    for index in range(MANAGERS):
        cluster.start(index)
    owners = settle(cluster, [0, 1, 2])
    before = processes(cluster.running())
    moved = sorted(group for group, owner in owners.items() if owner == 0)
    sampler = Sampler(cluster.token, cluster.state, lambda: SIZES)
    sampler.start()
    try:
        cluster.kill(0)
        killed = time.monotonic()
        survivors = settle(cluster, [1, 2], fair=False)
        took = time.monotonic() - killed
        print(
            f"kill -9 of a manager: its {len(moved)} groups owned and converged elsewhere"
            f" {took:.2f}s later (TTL {TTL:g}s); groups per manager: {shares(survivors)}",
            flush=True,
        )
        assert set(survivors.values()) <= {1, 2}
        cluster.start(0)
        again = settle(cluster, [0, 1, 2])
        print(f"manager 0 back: groups per manager {shares(again)}", flush=True)
    finally:
        seen = sampler.stop()
    assert not seen, "\n".join(seen)
    final = cluster.running()
    assert not violations(SIZES, final)
    after = processes(final)
    replaced = {
        g: (sorted(before[g]), sorted(after.get(g, ())))
        for g in before
        if before[g] != after.get(g)
    }
    assert not replaced, f"instances replaced by the moves (before, after): {replaced}"
    assert not cluster.tracebacks(), "\n".join(cluster.tracebacks())


@pytest.mark.slow
def test_a_frozen_owner_never_acts_on_a_group_it_lost(cluster: Shared) -> None:
    """SIGSTOP of a manager past its TTL: the others take its groups over; one of them is
    scaled up by a commit sent to a manager that does not own it; SIGCONT: the thawed manager
    provisions, replaces and destroys nothing in the groups it lost (its log says so), and the
    cluster ends with exactly the wanted processes, never a duplicate on the way."""
    for index in range(MANAGERS):
        cluster.start(index)
    owners = settle(cluster, [0, 1, 2])
    lost = sorted(group for group, owner in owners.items() if owner == 2)
    target = lost[0]
    sizes = dict(SIZES)
    sampler = Sampler(cluster.token, cluster.state, lambda: dict(sizes))
    sampler.start()
    try:
        cluster.signal(2, signal.SIGSTOP)
        taken = settle(cluster, [0, 1], sizes, fair=False)
        via = next(index for index in (0, 1) if index != taken[target])
        sizes[target] += 1  # may run from now on
        scaled = cluster.cli(via, "group", "scale", target, str(sizes[target]))
        assert scaled.returncode == 0, scaled.stderr
        settle(cluster, [0, 1], sizes, fair=False)
        thawed_at = cluster.log(2).stat().st_size
        cluster.signal(2, signal.SIGCONT)
        settle(cluster, [0, 1, 2], sizes)
    finally:
        seen = sampler.stop()
    assert not seen, "\n".join(seen)
    with open(cluster.log(2), "rb") as log:
        log.seek(thawed_at)
        lines = log.read().decode(errors="replace").splitlines()
    acted = [line for line in lines if (m := ACTED.match(line)) and m["group"] in lost]
    assert not acted, "the thawed manager acted on groups it had lost:\n" + "\n".join(acted)
    stored = cluster.stored()[target]["Properties"]  # the group's spec
    assert stored["Properties"]["Allocation"]["Size"] == sizes[target]
    assert not violations(sizes, cluster.running())
    assert not cluster.tracebacks(), "\n".join(cluster.tracebacks())


@pytest.mark.slow
def test_a_commit_sent_while_its_owner_is_frozen_never_undoes_a_later_one(
    cluster: Shared,
) -> None:
    """A scale-up sent while the group's owner is frozen (the manager it reached passes it on
    to the owner, which cannot answer) times out; once the others run the group, a second
    scale-up is acknowledged. After SIGCONT the first one, delivered at last, must not undo
    the second (the thawed manager refuses it) nor leave a traceback in its log: the cluster
    ends with the size last acknowledged."""
    for index in range(MANAGERS):
        cluster.start(index)
    owners = settle(cluster, [0, 1, 2])
    target = sorted(group for group, owner in owners.items() if owner == 2)[0]
    sizes = dict(SIZES)
    first, second = sizes[target] + 1, sizes[target] + 2
    sampler = Sampler(cluster.token, cluster.state, lambda: {**sizes, target: second})
    sampler.start()
    try:
        cluster.signal(2, signal.SIGSTOP)
        cluster.ask(0, "Group.Scale", {"ID": target, "Size": first})  # times out, or not
        wait_for(lambda: owner_of(cluster, target, asked=1) in (0, 1), what=f"{target} to move")
        cluster.call(1, "Group.Scale", {"ID": target, "Size": second})
        sizes[target] = second
        settle(cluster, [0, 1], sizes, fair=False)
        cluster.signal(2, signal.SIGCONT)
        settle(cluster, [0, 1, 2], sizes)
    finally:
        seen = sampler.stop()
    assert not seen, "\n".join(seen)
    stored = cluster.stored()[target]["Properties"]
    assert stored["Properties"]["Allocation"]["Size"] == second
    assert not cluster.tracebacks(), "\n".join(cluster.tracebacks())
