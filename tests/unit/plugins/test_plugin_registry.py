"""Tests of the built-in plugin registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrakit.plugins import builtin_kinds, create_plugin
from infrakit.plugins.flavor.vanilla import VanillaFlavor
from infrakit.plugins.instance.file import FileInstancePlugin
from infrakit.plugins.instance.process import ProcessInstancePlugin
from infrakit.plugins.options import OPTIONS
from infrakit.spec import SpecError
from infrakit.spi import FlavorPlugin, InstancePlugin


def test_builtin_kinds() -> None:
    assert builtin_kinds() == [
        "file",
        "process",
        "docker",
        "dind",
        "vagrant",
        "gcp",
        "aws",
        "terraform",
        "vanilla",
        "zookeeper",
        "swarm",
    ]
    assert builtin_kinds() == list(OPTIONS), "every kind has its options model, in order"


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
        "file, process, docker, dind, vagrant, gcp, aws, terraform, vanilla, zookeeper, swarm"
    )


def test_option_keys_match_in_any_letter_case(tmp_path: Path) -> None:
    plugin = create_plugin("file", {"dir": str(tmp_path / "x")}, tmp_path / "home")
    assert isinstance(plugin, FileInstancePlugin)
    assert plugin.directory == tmp_path / "x"


@pytest.mark.parametrize(
    ("kind", "options", "expected"),
    [
        ("file", {"Bogus": 1}, "one of: Dir"),
        ("process", {"Directory": "x"}, "one of: Dir"),
        ("vanilla", {"Dir": "x"}, "none"),
    ],
)
def test_unknown_option_is_named(
    tmp_path: Path, kind: str, options: dict[str, object], expected: str
) -> None:
    key = next(iter(options))
    with pytest.raises(SpecError) as caught:
        create_plugin(kind, options, tmp_path)
    assert caught.value.problems == [(key, f"unknown key {key!r} (expected {expected})")]


def test_bad_dir_option(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        create_plugin("file", {"Dir": 3, "Colour": "red"}, tmp_path)
    assert str(caught.value) == (
        "options of plugin kind 'file': Colour: unknown key 'Colour' (expected one of: Dir);"
        " Dir: must be a non-empty string"
    )
