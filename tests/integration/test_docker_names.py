"""Container names a person can use, against the real engine: each container is named after its
group and logical ID (a Size group's slot), a dead container of ours holding the name is
replaced, a live one of ours or anybody else's container is left alone and ours takes a
suffixed name (a healed Size group keeps its slot names: test_plugin_docker.py). Every
container made here carries the test's label and is removed after it."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from support import TEST_IMAGE, TEST_LABEL, wait_for

from infrakit.plugins.instance.docker import DockerInstancePlugin
from infrakit.spi import Spec
from infrakit.spi.instance import TAG_CLUSTER, TAG_GROUP, TAG_LOGICAL_ID

LOOP = "while true; do sleep 1; done"
SUFFIXED = r"-[0-9a-f]{6}"


@pytest.fixture
def plugin(engine: Any) -> Iterator[DockerInstancePlugin]:
    p = DockerInstancePlugin(stop_timeout=1)
    yield p
    p.close()


def spec(token: str, group: str, slot: str, *, named: bool, cluster: str = "c1") -> Spec:
    """What a group hands the plugin: a named group's spec carries its logical ID, a Size
    group's only the slot tag."""
    return Spec(
        properties={"Image": TEST_IMAGE, "Labels": {TEST_LABEL: token}},
        tags={TAG_GROUP: group, TAG_CLUSTER: cluster, TAG_LOGICAL_ID: slot},
        init=LOOP,
        logical_id=slot if named else None,
    )


def name_of(engine: Any, container_id: str) -> str:
    return str(engine.containers.get(container_id).name)


def exists(engine: Any, container_id: str) -> bool:
    found = engine.containers.list(ignore_removed=True, all=True, filters={"id": container_id})
    return bool(found)


def stray(engine: Any, token: str, name: str, *, labels: dict[str, str], state: str) -> str:
    """A container called `name` that no provision of this test made, left `state`
    (created, running or exited)."""
    container = engine.containers.create(
        TEST_IMAGE,
        ["sh", "-c", LOOP],
        name=name,
        labels={TEST_LABEL: token, **labels},
        network_mode="none",  # tests stay off the network (and CI's engine has no bridge)
    )
    if state != "created":
        container.start()
    if state == "exited":
        container.kill()
        container.wait()
    return str(container.id)


def test_a_named_groups_containers_carry_the_group_and_logical_id(
    engine: Any, token: str, plugin: DockerInstancePlugin
) -> None:
    group = f"zk{token}"
    first = plugin.provision(spec(token, group, f"{group}1", named=True))
    other = plugin.provision(spec(token, group, "db1", named=True))
    assert len(first) == 64 and engine.containers.get(first).id == first  # the ID stays the ID
    assert name_of(engine, first) == f"{group}1"  # already starts with the group
    assert name_of(engine, other) == f"{group}-db1"
    described = {d.id: d for d in plugin.describe_instances({TAG_GROUP: group})}
    assert described[other].logical_id == "db1"
    assert described[other].properties["Name"] == f"{group}-db1"
    assert not any(k.startswith("infrakit.docker.") for k in described[other].tags)


def test_a_size_groups_containers_are_named_by_their_slot(
    engine: Any, token: str, plugin: DockerInstancePlugin
) -> None:
    group = f"workers-{token}"
    cid = plugin.provision(spec(token, group, f"{group}-0", named=False))
    assert name_of(engine, cid) == f"{group}-0"
    (described,) = plugin.describe_instances({TAG_GROUP: group})
    assert described.logical_id is None  # the wire keeps Go's meaning: no LogicalID, no pet


def test_a_logical_id_docker_cannot_spell_still_names_the_container(
    engine: Any, token: str, plugin: DockerInstancePlugin
) -> None:
    group = f"web-{token}"
    cid = plugin.provision(spec(token, group, "front end/1", named=True))
    assert name_of(engine, cid) == f"{group}-front_end_1"


def test_a_dead_container_of_ours_gives_up_its_name(
    engine: Any, token: str, plugin: DockerInstancePlugin
) -> None:
    group = f"workers-{token}"
    first = plugin.provision(spec(token, group, f"{group}-0", named=False))
    engine.containers.get(first).kill()
    wait_for(lambda: plugin.describe_instances({TAG_GROUP: group}) == [], what="the loss")
    second = plugin.provision(spec(token, group, f"{group}-0", named=False))
    assert name_of(engine, second) == f"{group}-0"
    assert not exists(engine, first)
    # Same for one left `created` by a provision killed before its start.
    labels = {TAG_GROUP: group, TAG_CLUSTER: "c1", TAG_LOGICAL_ID: f"{group}-1"}
    created = stray(engine, token, f"{group}-1", labels=labels, state="created")
    third = plugin.provision(spec(token, group, f"{group}-1", named=False))
    assert name_of(engine, third) == f"{group}-1"
    assert not exists(engine, created)


def test_a_live_container_of_ours_keeps_its_name_and_the_new_one_is_suffixed(
    engine: Any, token: str, plugin: DockerInstancePlugin
) -> None:
    """A replacement made while the old one still runs (a rolling update with surge)."""
    group = f"db-{token}"
    old = plugin.provision(spec(token, group, "db1", named=True))
    new = plugin.provision(spec(token, group, "db1", named=True))
    assert name_of(engine, old) == f"{group}-db1"
    assert re.fullmatch(f"{group}-db1{SUFFIXED}", name_of(engine, new))
    assert {d.id for d in plugin.describe_instances({TAG_GROUP: group})} == {old, new}
    plugin.destroy(old)
    again = plugin.provision(spec(token, group, "db1", named=True))
    assert name_of(engine, again) == f"{group}-db1"


@pytest.mark.parametrize("state", ["running", "exited"])
def test_a_container_not_ours_is_never_touched(
    engine: Any,
    token: str,
    plugin: DockerInstancePlugin,
    caplog: pytest.LogCaptureFixture,
    state: str,
) -> None:
    group = f"workers-{token}"
    foreign = stray(engine, token, f"{group}-0", labels={}, state=state)
    # Another cluster's container of the same group is not ours either, even dead.
    elsewhere = {TAG_GROUP: group, TAG_CLUSTER: "c2", TAG_LOGICAL_ID: f"{group}-1"}
    theirs = stray(engine, token, f"{group}-1", labels=elsewhere, state=state)
    with caplog.at_level(logging.INFO, logger="infrakit.plugins.instance.docker"):
        ours = plugin.provision(spec(token, group, f"{group}-0", named=False))
        also = plugin.provision(spec(token, group, f"{group}-1", named=False))
    assert re.fullmatch(f"{group}-0{SUFFIXED}", name_of(engine, ours))
    assert re.fullmatch(f"{group}-1{SUFFIXED}", name_of(engine, also))
    for container_id, name in ((foreign, f"{group}-0"), (theirs, f"{group}-1")):
        container = engine.containers.get(container_id)
        assert container.name == name
        assert container.status == state
    said = [r.getMessage() for r in caplog.records if "is not this group's" in r.getMessage()]
    assert len(said) == 2 and f"{group}-0" in said[0], said
