"""Tests of the built-in plugin registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrakit.plugins import builtin_kinds, create_plugin
from infrakit.plugins.flavor.vanilla import VanillaFlavor
from infrakit.plugins.instance.file import FileInstancePlugin
from infrakit.plugins.instance.process import ProcessInstancePlugin
from infrakit.spi import FlavorPlugin, InstancePlugin


def test_builtin_kinds() -> None:
    assert builtin_kinds() == [
        "file",
        "process",
        "docker",
        "dind",
        "vagrant",
        "vanilla",
        "zookeeper",
        "swarm",
    ]


def test_default_directories_are_under_home(tmp_path: Path) -> None:
    file_plugin = create_plugin("file", {}, tmp_path)
    assert isinstance(file_plugin, FileInstancePlugin) and isinstance(file_plugin, InstancePlugin)
    assert file_plugin.directory == tmp_path / "instances" / "file"
    assert file_plugin.directory.is_dir()

    proc_plugin = create_plugin("process", {}, tmp_path)
    assert isinstance(proc_plugin, ProcessInstancePlugin)
    assert proc_plugin.state_dir == tmp_path / "instances" / "process"

    flavor = create_plugin("vanilla", {}, tmp_path)
    assert isinstance(flavor, VanillaFlavor) and isinstance(flavor, FlavorPlugin)


def test_dir_option(tmp_path: Path) -> None:
    plugin = create_plugin("file", {"Dir": str(tmp_path / "x")}, tmp_path / "home")
    assert isinstance(plugin, FileInstancePlugin)
    assert plugin.directory == tmp_path / "x"
    proc = create_plugin("process", {"Dir": str(tmp_path / "p")}, tmp_path / "home")
    assert isinstance(proc, ProcessInstancePlugin)
    assert proc.state_dir == tmp_path / "p"
    assert not (tmp_path / "home").exists()


def test_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as caught:
        create_plugin("x", {}, tmp_path)
    assert str(caught.value) == (
        "unknown plugin kind 'x'; built-in kinds: "
        "file, process, docker, dind, vagrant, vanilla, zookeeper, swarm"
    )


@pytest.mark.parametrize(
    ("kind", "options"),
    [("file", {"Bogus": 1}), ("process", {"dir": "x"}), ("vanilla", {"Dir": "x"})],
)
def test_unknown_option_is_named(tmp_path: Path, kind: str, options: dict[str, object]) -> None:
    key = next(iter(options))
    with pytest.raises(ValueError, match=f"unknown option '{key}'"):
        create_plugin(kind, options, tmp_path)


def test_bad_dir_option(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'Dir'"):
        create_plugin("file", {"Dir": 3}, tmp_path)
