"""Fixtures for runtime tests: a fresh INFRAKIT_HOME per test, and no process left behind."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest
from support import TEST_LABEL, docker_available, kill_all, require


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


@pytest.fixture
def engine() -> Iterator[Any]:
    """A client of the real Docker engine (the test skips, or fails in CI, without one)."""
    require("docker", docker_available())
    import docker

    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture
def token(engine: Any) -> Iterator[str]:
    """A value for the TEST_LABEL label; every container carrying it is removed after."""
    value = secrets.token_hex(6)
    yield value
    for container in engine.containers.list(
        ignore_removed=True, all=True, filters={"label": f"{TEST_LABEL}={value}"}
    ):
        container.remove(force=True, v=True)


@pytest.fixture(autouse=True)
def private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """XDG_STATE_HOME in the test's own temp dir: under an etcd store the local plugins keep
    their state in a host-wide directory there by default, which no test may share or leave."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
