"""The rule that keeps every manager of a cluster on the same local instances
(infrakit/manager/localstate.py): pure checks over what managers publish, and the shared
default directory every home of one cluster gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infrakit.manager.localstate import describe_dir, shared_state_home, unshared


def manager(location: str, host: str, *plugins: dict[str, Any]) -> dict[str, Any]:
    return {"Location": location, "Host": host, "Plugins": list(plugins)}


def test_one_directory_on_one_host_is_shared(tmp_path: Path) -> None:
    mine = describe_dir("instance-process", "process", tmp_path)
    other = manager("tcp://a:1", "h1", describe_dir("instance-process", "process", tmp_path))
    assert unshared([mine], "h1", [other], "tcp://b:1") == []


def test_two_directories_on_one_host_are_refused_naming_both(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    mine = describe_dir("instance-file", "file", tmp_path / "b")
    theirs = describe_dir("instance-file", "file", tmp_path / "a")
    ((name, why),) = unshared([mine], "h1", [manager("tcp://a:1", "h1", theirs)], "tcp://b:1")
    assert name == "instance-file"
    assert str(tmp_path / "a") in why and str(tmp_path / "b") in why and "tcp://a:1" in why


def test_across_hosts_a_file_dir_must_be_the_same_path_and_a_process_one_is_refused() -> None:
    same = {"Name": "f", "Kind": "file", "Dir": "/mnt/shared", "Device": 1, "Inode": 2}
    moved = {**same, "Dir": "/mnt/other"}
    other = manager("tcp://a:1", "h1", {**same, "Device": 9, "Inode": 9})
    assert unshared([same], "h2", [other], "tcp://b:1") == []
    assert [n for n, _ in unshared([moved], "h2", [other], "tcp://b:1")] == ["f"]
    process = {"Name": "p", "Kind": "process", "Dir": "/x", "Device": 1, "Inode": 2}
    ((_, why),) = unshared([process], "h2", [manager("tcp://a:1", "h1", process)], "tcp://b:1")
    assert "another host" in why


def test_ourselves_other_plugins_and_garbage_are_left_alone(tmp_path: Path) -> None:
    mine = describe_dir("p", "process", tmp_path)
    listed = [
        manager("tcp://me:1", "h1", {"Name": "p", "Kind": "process", "Dir": "/elsewhere"}),
        manager("tcp://a:1", "h1", {"Name": "q", "Kind": "process", "Dir": "/elsewhere"}),
        {"Location": "tcp://c:1", "Plugins": ["not an object"]},
    ]
    assert unshared([mine], "h1", listed, "tcp://me:1") == []


def test_every_home_of_a_cluster_gets_one_default_directory() -> None:
    env = {"XDG_STATE_HOME": "/state"}
    first = shared_state_home("/prod/infrakit/groups/", env)
    assert first == shared_state_home("/prod/infrakit/groups/", env)
    assert first.parent == Path("/state/infrakit/clusters")
    assert first.name.startswith("prod-infrakit-groups-")
    assert shared_state_home("/prod-infrakit/groups/", env) != first  # same words, not the same
