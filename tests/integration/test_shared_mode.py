"""`Manager.Mode: shared` on a real etcd (issue 15): the groups' ownership keys, fenced writes,
and two real runtimes in this process that share the groups out, answer for each other's
groups, and hand them over without replacing an instance. (Separate processes, kill -9 and
SIGSTOP: tests/e2e/test_shared_groups.py.)"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import etcd_in_use, file_group, free_port, require, wait_for

from actors.election.etcd import EtcdConnection, EtcdElection
from actors.election.etcd_owners import EtcdOwnership
from actors.remote import RemoteRef
from actors.rendezvous import assign
from infrakit import Runtime
from infrakit.manager.store.etcd import EtcdStore, NotLeaderError
from infrakit.spec import SpecError
from infrakit.wire.group import GroupClient

ENDPOINT = os.environ.get("INFRAKIT_TEST_ETCD", "http://127.0.0.1:2379")

pytestmark = pytest.mark.slow


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = f"/infrakit-test/{uuid.uuid4().hex}"
    with etcd_in_use():
        try:
            healthy = bool(EtcdConnection(ENDPOINT).post("maintenance/status", {}))
        except Exception:
            healthy = False
        require("etcd", healthy, f"no etcd answers at {ENDPOINT}")
        yield prefix
        EtcdConnection(ENDPOINT).client.delete_prefix(prefix)


@pytest.fixture
def owners(prefix: str) -> Iterator[Callable[[str], EtcdOwnership]]:
    """Makes candidates (an election keeping its lease, and its ownership) at `location`."""
    made: list[EtcdElection] = []

    def make(location: str) -> EtcdOwnership:
        election = EtcdElection(ENDPOINT, f"{prefix}/leader", location, ttl=2, lead=False)
        made.append(election)
        election.campaign()
        return EtcdOwnership(election)

    yield make
    for election in made:
        election.close()


def test_one_owner_at_a_time_and_a_former_owners_write_is_refused(
    prefix: str, owners: Callable[[str], EtcdOwnership]
) -> None:
    a, b = owners("a"), owners("b")
    assert a.members() == ["a", "b"]
    assert a.claim("workers") is None and a.holds("workers")
    assert b.claim("workers") == "a" and not b.holds("workers")
    assert b.owners() == {"workers": "a"}
    store_a = EtcdStore(ENDPOINT, f"{prefix}/g/", a.fence, refusal="not the owner")
    store_b = EtcdStore(ENDPOINT, f"{prefix}/g/", b.fence, refusal="not the owner")
    store_a.put("workers", {"Size": 1})
    with pytest.raises(NotLeaderError, match="not the owner"):
        store_b.put("workers", {"Size": 9})  # b never owned it: refused before etcd is asked
    # Take it from a behind its back, as a lease that ran out while a was frozen: a still
    # believes it owns the group, so only etcd's comparison can stop its write.
    EtcdConnection(ENDPOINT).client.delete(f"{prefix}/leader/owners/workers")
    assert b.claim("workers") is None
    assert a.holds("workers")
    with pytest.raises(NotLeaderError, match="refusing to write 'workers'"):
        store_a.put("workers", {"Size": 2})
    assert store_a.load_one("workers") == {"Plugin": "group", "Properties": {"Size": 1}}
    store_b.put("workers", {"Size": 3})
    b.release("workers")
    assert not b.holds("workers") and b.owner("workers") is None


def shared(prefix: str, port: int, groups: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    etcd = {"Kind": "etcd", "Endpoints": [ENDPOINT]}
    return {
        "Manager": {
            "Mode": "shared",
            "Leader": {**etcd, "TTL": "2s", "Key": f"{prefix}/leader"},
            "Store": {**etcd, "Prefix": f"{prefix}/g/"},
            "LeaderPoll": "200ms",
            "Listen": [f"tcp://127.0.0.1:{port}"],
        },
        "Groups": groups or [],
    }


def instances(runtime: Runtime, group_id: str) -> set[str]:
    return {i["ID"] for i in runtime.describe(group_id)["Instances"]}


def test_two_managers_share_the_groups_and_answer_for_each_other(
    prefix: str, tmp_path: Path
) -> None:
    ports = [free_port(), free_port()]
    ids = [f"g{i}" for i in range(6)]
    first = Runtime(shared(prefix, ports[0]), home=tmp_path / "a").start()
    second = Runtime(shared(prefix, ports[1]), home=tmp_path / "b").start()
    runtimes = [first, second]
    try:
        client = GroupClient(RemoteRef(f"tcp://127.0.0.1:{ports[0]}", timeout=30.0))
        try:
            for group_id in ids:  # all through the first: each lands with its owner
                client.commit_group(file_group(group_id, size=2))

            def shared_out() -> dict[str, str] | None:
                owners = first.status()["Owners"]
                where = {group_id: owners.get(group_id) for group_id in ids}
                counts = sorted(list(where.values()).count(r.location) for r in runtimes)
                return where if counts == [3, 3] else None

            where = wait_for(shared_out, timeout=60, what="3 groups for each manager")
            assert second.status()["Owners"] == first.status()["Owners"]
            for group_id in ids:
                owner = next(r for r in runtimes if r.location == where[group_id])
                wait_for(lambda o=owner, g=group_id: len(instances(o, g)) == 2, timeout=60)
            theirs = next(g for g in ids if where[g] == second.location)
            # Asked of the first manager, answered by the second, which runs the group.
            assert len(client.describe_group(theirs)["Instances"]) == 2
            client.scale_group(theirs, 3)
            wait_for(lambda: len(instances(second, theirs)) == 3, timeout=60, what="scaled")
            assert {g["ID"] for g in client.status()["Groups"]} == set(ids)
            before = {g: instances(r, g) for g in ids for r in runtimes if r.location == where[g]}
        finally:
            client.close()
        first.stop()  # its groups go to the second, which adopts their instances
        for group_id in ids:
            wait_for(
                lambda g=group_id: second.is_managed(g) and instances(second, g) == before[g],
                timeout=60,
                what=f"{group_id} adopted by the second manager",
            )
        assert set(second.status()["Owners"]) == set(ids)
    finally:
        for runtime in runtimes:
            runtime.stop()


def test_a_manager_in_another_mode_on_the_same_key_is_refused(prefix: str, tmp_path: Path) -> None:
    leader_mode = shared(prefix, free_port())
    leader_mode["Manager"]["Mode"] = "leader"
    with Runtime(leader_mode, home=tmp_path / "a"):
        with pytest.raises(SpecError) as refused:
            Runtime(shared(prefix, free_port()), home=tmp_path / "b").start()
        assert refused.value.problems[0][0] == "Manager.Mode"
        assert "'leader' mode" in refused.value.problems[0][1]


def test_a_group_that_moves_resumes_its_rollout_with_the_slots_done_left_alone(
    prefix: str, tmp_path: Path
) -> None:
    runtimes = [Runtime(shared(prefix, free_port()), home=tmp_path / name).start() for name in "ab"]
    try:
        first = runtimes[0]
        first.commit(file_group("roll", size=3))
        v2 = file_group("roll", size=3)
        v2["Properties"]["Instance"]["Properties"]["Note"] = "v2"
        v2["Properties"]["Update"] = {"Canary": 1, "MaxSurge": 1}
        # Where it belongs (it may first run where it was committed, then move there).
        owner_location = assign(["roll"], [r.location for r in runtimes])["roll"]
        wait_for(
            lambda: first.status()["Owners"].get("roll") == owner_location,
            timeout=30,
            what="the group to settle with its owner",
        )
        owner = next(r for r in runtimes if r.location == owner_location)
        other = next(r for r in runtimes if r is not owner)
        owner.wait_converged("roll", timeout=60)
        owner.commit(v2)
        new_hash = v2_hash(owner, "roll")

        def canary_waits() -> set[str]:
            if "waiting for" not in (owner.info("roll")["Update"]["Canary"] or ""):
                return set()
            described = owner.describe("roll")["Instances"]
            return {i["ID"] for i in described if i["Tags"].get(HASH) == new_hash}

        canaries = wait_for(canary_waits, timeout=60, what="the canary to wait for promotion")
        assert len(canaries) == 1
        owner.stop()  # the group moves to the other manager, canary waiting and all
        wait_for(lambda: other.is_managed("roll"), timeout=60, what="the group to move")
        wait_for(
            lambda: "waiting for" in (other.info("roll")["Update"]["Canary"] or ""),
            timeout=60,
            what="the moved group's canary still waiting (nothing rolled on)",
        )
        wait_for(
            lambda: canaries <= instances(other, "roll"),
            timeout=60,
            what="the new owner to adopt the canary",
        )
        other.promote("roll")

        def rolled() -> bool:
            tags = [i["Tags"].get(HASH) for i in other.describe("roll")["Instances"]]
            return tags == [new_hash] * 3 and not other.info("roll")["Update"]["Total"]

        wait_for(rolled, timeout=60, what="the rest of the rollout on the new owner")
        assert canaries <= instances(other, "roll")  # the canary was not replaced again
    finally:
        for runtime in runtimes:
            runtime.stop()


HASH = "infrakit.config.hash"


def v2_hash(runtime: Runtime, group_id: str) -> str:
    """The config hash of the group's committed spec (what its new instances carry)."""
    record = runtime.views.records()[group_id]
    return str(record.spec.config_hash)
