"""Tests of the file instance plugin against a real directory."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from infrakit.plugins.instance.file import FileInstancePlugin
from infrakit.spi import InstancePlugin, PluginError, Spec, ValidationError
from infrakit.spi.instance import Watchable

WaitFor = Callable[..., None]


def ids(plugin: FileInstancePlugin, **tags: str) -> set[str]:
    return {d.id for d in plugin.describe_instances(tags)}


def test_is_a_watchable_instance_plugin(file_plugin: FileInstancePlugin) -> None:
    assert isinstance(file_plugin, InstancePlugin)
    assert isinstance(file_plugin, Watchable)


def test_creates_directory_private(tmp_path: Path) -> None:
    FileInstancePlugin(tmp_path / "a" / "b")
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "b").st_mode) == 0o700


def test_provision_writes_one_json_file_per_instance(file_plugin: FileInstancePlugin) -> None:
    spec = Spec(properties={"x": [1, 2]}, tags={"group": "web"}, init="echo hi", logical_id="a")
    iid = file_plugin.provision(spec)

    assert iid.startswith("instance-") and len(iid) == len("instance-") + 12
    data = json.loads((file_plugin.directory / iid).read_text())
    assert data == {"ID": iid, "LogicalID": "a", "Tags": {"group": "web"}, "Spec": spec.to_json()}
    [desc] = file_plugin.describe_instances({})
    assert (desc.id, desc.logical_id, desc.tags, desc.properties) == (
        iid,
        "a",
        {"group": "web"},
        {"x": [1, 2]},
    )
    assert [p.name for p in file_plugin.directory.iterdir()] == [iid]  # no temp file left


def test_tags_are_and_matched(file_plugin: FileInstancePlugin) -> None:
    a = file_plugin.provision(Spec(tags={"group": "web", "zone": "1"}))
    b = file_plugin.provision(Spec(tags={"group": "web", "zone": "2"}))
    c = file_plugin.provision(Spec(tags={"group": "db", "zone": "1"}))

    assert ids(file_plugin) == {a, b, c}
    assert ids(file_plugin, group="web") == {a, b}
    assert ids(file_plugin, group="web", zone="1") == {a}
    assert ids(file_plugin, group="web", zone="3") == set()
    assert ids(file_plugin, other="x") == set()


def test_destroy_removes_and_tolerates_missing(file_plugin: FileInstancePlugin) -> None:
    a = file_plugin.provision(Spec())
    b = file_plugin.provision(Spec())
    file_plugin.destroy(a)
    file_plugin.destroy(a)
    file_plugin.destroy("instance-000000000000")
    assert ids(file_plugin) == {b}
    assert not (file_plugin.directory / a).exists()


def test_destroy_refuses_paths(file_plugin: FileInstancePlugin) -> None:
    with pytest.raises(PluginError):
        file_plugin.destroy("../outside")


def test_label_merges_tags_and_persists(file_plugin: FileInstancePlugin) -> None:
    iid = file_plugin.provision(Spec(tags={"a": "1", "b": "2"}))
    file_plugin.label(iid, {"b": "two", "c": "3"})

    assert file_plugin.describe_instances({})[0].tags == {"a": "1", "b": "two", "c": "3"}
    fresh = FileInstancePlugin(file_plugin.directory)
    assert fresh.describe_instances({"c": "3"})[0].tags == {"a": "1", "b": "two", "c": "3"}


def test_label_of_missing_instance_fails(file_plugin: FileInstancePlugin) -> None:
    with pytest.raises(PluginError, match="no such instance"):
        file_plugin.label("instance-nope", {"a": "1"})


def test_deleting_a_file_loses_the_instance(file_plugin: FileInstancePlugin) -> None:
    a = file_plugin.provision(Spec())
    b = file_plugin.provision(Spec())
    assert ids(file_plugin) == {a, b}
    (file_plugin.directory / a).unlink()
    assert ids(file_plugin) == {b}


def test_external_changes_are_seen(tmp_path: Path) -> None:
    """A file edited in place is seen at the next full scan (here: every describe)."""
    file_plugin = FileInstancePlugin(tmp_path / "instances", full_scan_every=0.0)
    iid = file_plugin.provision(Spec(tags={"a": "1"}))
    assert ids(file_plugin, a="1") == {iid}
    path = file_plugin.directory / iid
    data = json.loads(path.read_text())
    data["Tags"] = {"a": "changed!"}  # a different size, written in place
    path.write_text(json.dumps(data))
    assert ids(file_plugin, a="1") == set()
    assert ids(file_plugin, a="changed!") == {iid}

    (file_plugin.directory / "hand-made").write_text(json.dumps({"Tags": {"a": "1"}}))
    assert ids(file_plugin, a="1") == {"hand-made"}


def test_temp_and_corrupt_files_are_ignored_and_warned_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file_plugin = FileInstancePlugin(tmp_path / "instances", full_scan_every=0.0)
    good = file_plugin.provision(Spec())
    (file_plugin.directory / ".instance-x.abc.tmp").write_text("{half")
    (file_plugin.directory / "broken").write_text("{not json")
    (file_plugin.directory / "wrong-shape").write_text("[1, 2]")
    (file_plugin.directory / "subdir").mkdir()

    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert ids(file_plugin) == {good}
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2
    assert any("broken" in m for m in warned) and any("wrong-shape" in m for m in warned)

    (file_plugin.directory / "broken").write_text(json.dumps({"Tags": {}}))
    assert ids(file_plugin) == {good, "broken"}


def test_validate_accepts_json_only(file_plugin: FileInstancePlugin) -> None:
    file_plugin.validate(None)
    file_plugin.validate({"anything": [1, "two", {"three": None}]})
    with pytest.raises(ValidationError):
        file_plugin.validate({"bad": object()})


def test_watch_fires_when_a_file_is_deleted_or_added(file_plugin: FileInstancePlugin) -> None:
    a = file_plugin.provision(Spec())
    fired = threading.Event()
    unsubscribe = file_plugin.watch(fired.set)

    (file_plugin.directory / a).unlink()
    assert fired.wait(10)
    assert ids(file_plugin) == set()

    fired.clear()
    (file_plugin.directory / "new-one").write_text("{}")
    assert fired.wait(10)
    unsubscribe()


def test_watch_survives_a_failing_callback_and_stops_when_unsubscribed(
    file_plugin: FileInstancePlugin, wait_for: WaitFor
) -> None:
    name = f"file-instance-watch:{file_plugin.directory}"

    def thread_count() -> int:
        return sum(t.name == name for t in threading.enumerate())

    before = 0
    assert thread_count() == before
    calls: list[str] = []

    def broken() -> None:
        calls.append("broken")
        raise RuntimeError("boom")

    fired = threading.Event()
    unsub_broken = file_plugin.watch(broken)
    unsub_ok = file_plugin.watch(fired.set)
    assert thread_count() == before + 1  # one thread per plugin, however many subscribers

    file_plugin.provision(Spec())
    assert fired.wait(10)
    fired.clear()
    file_plugin.provision(Spec())
    assert fired.wait(10)
    assert calls.count("broken") >= 2

    unsub_broken()
    unsub_ok()
    unsub_ok()  # idempotent
    wait_for(lambda: thread_count() == before)

    # A new subscriber starts a new thread; close() stops it.
    again = threading.Event()
    file_plugin.watch(again.set)
    file_plugin.provision(Spec())
    assert again.wait(10)
    file_plugin.close()
    assert thread_count() == before


def test_many_instances_describe_matches(file_plugin: FileInstancePlugin) -> None:
    made = {file_plugin.provision(Spec(tags={"n": str(i % 3)})) for i in range(300)}
    assert ids(file_plugin) == made
    assert len(ids(file_plugin, n="0")) == 100
    fresh = FileInstancePlugin(file_plugin.directory)
    assert ids(fresh) == made


def test_provision_of_non_json_properties_fails_cleanly(file_plugin: FileInstancePlugin) -> None:
    with pytest.raises(ValidationError):
        file_plugin.provision(Spec(properties={"bad": object()}))
    assert list(file_plugin.directory.iterdir()) == []


def test_an_in_place_edit_is_missed_until_the_next_full_scan(tmp_path: Path) -> None:
    """Describes between full scans trust the cache for known names (cheap at 10,000 files)."""
    plugin = FileInstancePlugin(tmp_path / "instances", full_scan_every=3600.0)
    iid = plugin.provision(Spec(tags={"a": "1"}))
    assert ids(plugin, a="1") == {iid}
    path = plugin.directory / iid
    data = json.loads(path.read_text())
    data["Tags"] = {"a": "2"}
    path.write_text(json.dumps(data))
    assert ids(plugin, a="1") == {iid}
    path.unlink()
    assert ids(plugin) == set()  # a vanished file is always seen
