"""Chaos (issue 15): three `infrakit run` processes on the machine's etcd, each on its own home
as on three hosts, in each manager mode: one leading (`leader`), or every group owned by one
live manager (`shared`). For 20 rounds a seeded schedule kills (-9, then restarts) or freezes
(SIGSTOP past the TTL, then SIGCONT) a random manager while the test commits scale-ups,
scale-downs and rolling updates (through the leader; in shared mode through any manager).
After every round and at the end: no duplicate, no orphan, no lost commit, every rollout done.

Replay a run with the seed it printed (docs/chaos.md): `CHAOS_SEED=N pytest
tests/e2e/test_chaos.py -s -k MODE`."""

from __future__ import annotations

import itertools
import os
import random
import secrets
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from runtimes import (
    TTL,
    Runtimes,
    Sampler,
    census,
    instance_env,
    violations,
)
from support import MIN_DEADLINE, wait_for

from actors.rendezvous import assign
from actors.rpc_errors import RemoteError, RpcTimeout
from infrakit.spec import GroupSpec, parse_group

MANAGERS = 3
GROUPS = ("alpha", "beta", "gamma")
ROUNDS = int(os.environ.get("CHAOS_ROUNDS", "20"))
ROUND_DEADLINE = MIN_DEADLINE  # a round that has not settled by then has failed
CONFIG = "infrakit.config.hash"
MODES = ("leader", "shared")


@dataclass
class Intent:
    """What the test has had acknowledged for one group: its size and config version."""

    size: int
    version: int = 1


@dataclass
class Ledger:
    """Every acknowledged commit, and the slots an instance may hold right now: a slot stays
    allowed from the commit that sized the group up until the group settles smaller."""

    seed: int
    token: str
    mode: str
    acked: dict[str, Intent] = field(default_factory=dict)
    allowed: dict[str, int] = field(default_factory=dict)
    round: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def where(self) -> str:
        return f"seed {self.seed}, round {self.round} (replay: {replay(self.seed, self.mode)})"

    def slots(self) -> dict[str, int]:
        with self.lock:
            return dict(self.allowed)

    def spec(self, group: str, intent: Intent) -> dict[str, Any]:
        """The group's spec for `intent`: `version` is in the init script, so changing it
        changes the config hash and rolls the group."""
        return {
            "ID": group,
            "Properties": {
                "Allocation": {"Size": intent.size},
                "Instance": {
                    "Plugin": "instance-process",
                    "Properties": {"Env": instance_env(self.token, group)},
                },
                "Flavor": {
                    "Plugin": "flavor-vanilla",
                    "Properties": {"Init": [f"echo v{intent.version}", "exec sleep 1000"]},
                },
                "Health": {"Interval": "200ms"},
            },
        }


def replay(seed: int, mode: str) -> str:
    return f"CHAOS_SEED={seed} CHAOS_ROUNDS={ROUNDS} pytest tests/e2e/test_chaos.py -s -k {mode}"


class Managers(Runtimes):
    """Three runtimes sharing etcd and the process plugin's state directory, as hosts share a
    cloud, in `mode`; and who of them acts on a group: the leader, or the group's owner."""

    def __init__(self, root: Path, mode: str) -> None:
        shared = {"Mode": "shared"} if mode == "shared" else None
        super().__init__(root, MANAGERS, shared=root / "instances", manager=shared)
        self.mode = mode
        self._turn = itertools.count()

    def leader(self) -> int | None:
        """The index of the one answering runtime that says it leads, if exactly one does."""
        leading = []
        for index in self.answering():
            try:
                if self.call(index, "Manager.IsLeader")["Leader"]:
                    leading.append(index)
            except (RpcTimeout, RemoteError):
                continue
        return leading[0] if len(leading) == 1 else None

    def owners(self) -> dict[str, int] | None:
        """Shared mode: each owned group's owner (by index), as the answering runtimes agree
        on it; None if one does not answer or they disagree."""
        seen = []
        for index in self.answering():
            status = self.ask(index, "Manager.Status")
            if status is None:
                return None
            seen.append(status.get("Owners"))
        if not seen or any(owners != seen[0] for owners in seen):
            return None
        found = {group: self.index(location) for group, location in (seen[0] or {}).items()}
        return {group: index for group, index in found.items() if index is not None}

    def actor(self, group: str) -> int | None:
        """The answering runtime that acts on `group`: the leader, or the group's owner."""
        if self.mode == "leader":
            return self.leader()
        owner = (self.owners() or {}).get(group)
        return owner if owner in self.answering() else None

    def entry(self) -> int | None:
        """Where to send a commit: the leader; in shared mode any answering runtime, each in
        turn (it goes to the group's owner wherever it is sent)."""
        if self.mode == "leader":
            return self.leader()
        answering = self.answering()
        return answering[next(self._turn) % len(answering)] if answering else None


def settled(managers: Managers, ledger: Ledger) -> bool:
    """Every runtime answers, each group has one runtime acting on it (the one leader, or an
    owner every runtime names), and every group runs what that runtime holds: one live
    instance per slot of its size, each of its configuration, its rollout done. (Whether
    what it holds is what was acknowledged is `invariants`' question.)"""
    answers = {}
    for index in managers.answering():
        try:
            answers[index] = managers.call(index, "Manager.IsLeader")["Leader"]
        except (RpcTimeout, RemoteError):
            return False
    if len(answers) != MANAGERS:
        return False
    if managers.mode == "leader":
        leaders = [index for index, leads in answers.items() if leads]
        if len(leaders) != 1:
            return False
        actors = dict.fromkeys(ledger.acked, leaders[0])
    else:
        owners = managers.owners()
        if owners is None or set(owners) != set(ledger.acked):
            return False
        # Balanced too: each group with the owner every manager computes for it (a manager
        # back from a freeze takes its share back by handovers, which must be over).
        locations = [managers.endpoint(index) for index in answers]
        balanced = assign(ledger.acked, locations)
        if any(managers.endpoint(index) != balanced[g] for g, index in owners.items()):
            return False
        actors = owners
    running = census(ledger.token, managers.state)
    try:
        views = {index: View(managers, index) for index in set(actors.values())}
        for group, index in actors.items():
            spec, summary = views[index].specs.get(group), views[index].summaries.get(group)
            if spec is None or summary is None or not summary["Converged"]:
                return False
            if summary["Update"]["Total"] != summary["Update"]["Done"]:
                return False
            described = managers.call(index, "Group.DescribeGroup", {"ID": group})
            instances = described["Description"]["Instances"]
            if {m["Tags"].get(CONFIG) for m in instances} != {spec.config_hash}:
                return False
            slots = sorted(s for g, s, _ in running if g == group)
            if slots != sorted(spec.logical_ids()):
                return False
    except (RpcTimeout, RemoteError):
        return False
    return True


class View:
    """What runtime `index` holds (each group's spec) and says of each group (its summary)."""

    def __init__(self, managers: Managers, index: int) -> None:
        held = managers.call(index, "Group.InspectGroups")["Groups"]
        self.specs: dict[str, GroupSpec] = {raw["ID"]: parse_group(raw) for raw in held}
        groups = managers.call(index, "Manager.Status").get("Groups", [])
        self.summaries: dict[str, dict[str, Any]] = {g["ID"]: g for g in groups}


def invariants(managers: Managers, ledger: Ledger, sampler: Sampler) -> None:
    """The four promises, checked once the cluster has settled."""
    where = ledger.where()
    assert not sampler.seen, f"seen while the rounds ran ({where}):\n" + "\n".join(sampler.seen)
    running = census(ledger.token, managers.state)
    problems = violations(ledger.slots(), running)
    assert not problems, f"{where}:\n" + "\n".join(problems)
    stored = managers.stored()
    for group, intent in ledger.acked.items():
        actor = managers.actor(group)
        assert actor is not None, f"{group}: no runtime acts on it ({where})"
        # No lost commit: the group's leader or owner and the store hold exactly the last
        # acknowledged spec.
        want = parse_group(ledger.spec(group, intent)).to_json()
        spec = View(managers, actor).specs.get(group)
        found = {
            "manager": spec.to_json() if spec is not None else None,
            "store": parse_group(stored[group]["Properties"]).to_json(),
        }
        for who, holds in found.items():
            assert holds == want, (
                f"{group}: the {who} holds {holds}, the last acknowledged commit was {want}"
                f" ({where})"
            )
        config = parse_group(want).config_hash
        # Every rollout finished: each instance carries the last commit's configuration.
        members = managers.call(actor, "Group.DescribeGroup", {"ID": group})["Description"]
        hashes = {m["Tags"].get(CONFIG) for m in members["Instances"]}
        assert hashes == {config}, (
            f"{group}: instances carry {hashes}, the last commit {config} ({where})"
        )
        # No orphan: exactly the committed size, one instance per slot.
        slots = Counter(s for g, s, _ in running if g == group)
        assert slots == Counter(f"{group}-{n}" for n in range(intent.size)), (
            f"{group}: live slots {dict(slots)} for size {intent.size} ({where})"
        )
    assert {g for g, _, _ in running} <= set(ledger.acked), f"{running} ({where})"
    traces = managers.tracebacks()
    assert not traces, f"tracebacks logged ({where}):\n" + "\n".join(traces)


def commit(managers: Managers, ledger: Ledger, group: str, intent: Intent) -> None:
    """Commit through the leader (in shared mode, any runtime), until one acknowledges it. A
    commit that was not acknowledged (the runtime that would act on it was frozen or killed
    meanwhile) is sent again: committing the same spec twice changes nothing, so the last
    acknowledged commit is the last one sent."""
    spec = ledger.spec(group, intent)
    with ledger.lock:  # its slots may run from now on, acknowledged or not
        ledger.allowed[group] = max(ledger.allowed.get(group, 0), intent.size)
    errors: list[str] = []

    def acknowledged() -> bool:
        entry = managers.entry()
        if entry is None:
            return False
        try:
            managers.call(entry, "Group.CommitGroup", {"Spec": spec})
        except (RpcTimeout, RemoteError) as error:
            errors.append(f"{entry}: {error}")
            return False
        return True

    wait_for(
        acknowledged, timeout=ROUND_DEADLINE, what=f"a manager to take {group} ({errors[-3:]})"
    )
    ledger.acked[group] = intent


def change(rng: random.Random, ledger: Ledger) -> tuple[str, Intent]:
    """A random group and a random change to it: grow, shrink (3 to 5 instances) or roll."""
    group = rng.choice(GROUPS)
    now = ledger.acked[group]
    kind = rng.choice(("scale", "roll"))
    if kind == "scale":
        return group, Intent(rng.choice([n for n in (3, 4, 5) if n != now.size]), now.version)
    return group, Intent(now.size, now.version + 1)


def chaos_round(managers: Managers, ledger: Ledger, rng: random.Random) -> str:
    """One round: a commit, a fault on a random manager at once (its rollout or scaling under
    way), a commit while the fault lasts, the end of the fault, a commit as the victim comes
    back. Returns what the round did, in words."""
    pick = rng.randrange(MANAGERS)  # 0: the one acting on the group; else another, by index
    fault = rng.choice(("kill", "freeze"))
    freeze_for = TTL + rng.uniform(0.5, 2.0)
    changes = []
    changes.append(change(rng, ledger))
    commit(managers, ledger, *changes[-1])
    # By role rather than by index: which index leads (or owns the group just changed)
    # depends on timing and ports, so a replay of the seed hits the one acting on it exactly
    # when the first run did.
    actor = managers.actor(changes[-1][0])
    ranked = sorted(range(MANAGERS), key=lambda index: index != actor)
    victim = ranked[pick]
    acting = "leader" if managers.mode == "leader" else f"owner of {changes[-1][0]}"
    role = acting if victim == actor else "another"
    if fault == "kill":
        managers.kill(victim)
    else:
        thaw_at = time.monotonic() + freeze_for
        managers.signal(victim, signal.SIGSTOP)
    changes.append(change(rng, ledger))
    commit(managers, ledger, *changes[-1])  # waits for a new leader or owner if the victim was
    if fault == "kill":
        managers.start(victim)
    else:
        # The freeze's length is the fault itself (past the TTL), not a synchronisation.
        time.sleep(max(0.0, thaw_at - time.monotonic()))
        managers.signal(victim, signal.SIGCONT)
    changes.append(change(rng, ledger))
    commit(managers, ledger, *changes[-1])
    done = ", ".join(f"{g} size {i.size} v{i.version}" for g, i in changes)
    return f"{fault} of manager {victim} ({role}); commits: {done}"


@pytest.fixture(params=MODES)
def managers(request: pytest.FixtureRequest, tmp_path: Path, etcd: IO[str]) -> Iterator[Managers]:
    """Three runtimes in each mode on the machine's etcd (held for the whole test by `etcd`);
    afterwards nothing is left: runtimes stopped, instances killed, the etcd prefix removed."""
    with Managers(tmp_path, request.param) as running:
        yield running


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_chaos(managers: Managers) -> None:
    seed = int(os.environ.get("CHAOS_SEED") or secrets.randbits(32))
    print(f"chaos seed {seed}; replay: {replay(seed, managers.mode)}", flush=True)
    sys.stderr.write(f"chaos seed {seed}; replay: {replay(seed, managers.mode)}\n")
    rng = random.Random(seed)
    ledger = Ledger(seed, secrets.token_hex(6), managers.mode)
    for index in range(MANAGERS):
        managers.start(index)
    try:
        for group in GROUPS:
            commit(managers, ledger, group, Intent(rng.choice((3, 4, 5))))
        wait_for(lambda: settled(managers, ledger), what=f"the groups ({ledger.where()})")
        sampler = Sampler(ledger.token, managers.state, ledger.slots, ledger.where)
        sampler.start()
        try:
            for number in range(1, ROUNDS + 1):
                ledger.round = number
                began = time.monotonic()
                what = chaos_round(managers, ledger, rng)
                wait_for(
                    lambda: settled(managers, ledger),
                    timeout=ROUND_DEADLINE,
                    what=f"the cluster to settle after {what} ({ledger.where()})",
                )
                with ledger.lock:  # settled: only the committed slots may run now
                    ledger.allowed = {g: i.size for g, i in ledger.acked.items()}
                invariants(managers, ledger, sampler)
                print(f"round {number}: {what}: {time.monotonic() - began:.1f}s", flush=True)
        finally:
            sampler.stop()
        ledger.round = ROUNDS + 1  # the end
        invariants(managers, ledger, sampler)
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{managers.logs()}") from None
