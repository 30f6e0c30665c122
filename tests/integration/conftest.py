"""Fixtures for runtime tests: a fresh INFRAKIT_HOME per test, and no process left behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest
from support import kill_all


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty INFRAKIT_HOME; every process instance made under it is killed afterwards."""
    path = tmp_path / "home"
    monkeypatch.setenv("INFRAKIT_HOME", str(path))
    yield path
    kill_all(path / "instances" / "process")


@pytest.fixture(autouse=True)
def no_actor_left() -> Iterator[None]:
    yield
    assert pykka.ActorRegistry.get_all() == [], "a test left actors running"
