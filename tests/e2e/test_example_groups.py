"""examples/groups/ as its README says to use them: every spec passes `infrakit validate`
offline, and the local ones, committed with `infrakit group commit` to a runtime started with
`infrakit run` on the cluster file the README names, converge to their size and leave nothing
once `infrakit group destroy ID --wait` returns."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from support import INFRAKIT, cli_env, docker_available, environments, require, wait_for

if TYPE_CHECKING:
    from conftest import Cli  # the `cli` fixture's type (e2e/conftest.py)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GROUPS = sorted((EXAMPLES / "groups").glob("*.json"))
DOCKER_IMAGE = "infrakit-test/busybox:latest"  # what examples/groups/docker.json runs


def test_there_is_an_example_for_every_builtin_kind() -> None:
    from infrakit.plugins import builtin_kinds

    assert sorted(p.stem for p in GROUPS) == sorted(builtin_kinds())


@pytest.mark.parametrize("spec", GROUPS, ids=lambda p: p.name)
def test_example_passes_validate_offline(spec: Path, tmp_path: Path) -> None:
    """Offline: no runtime, and no Docker engine answering (the image check is then a
    warning, as docs/spec.md says), so the docker:dind examples validate on any host."""
    nobody = f"unix://{tmp_path}/no-docker.sock"
    result = subprocess.run(
        [*INFRAKIT, "validate", str(spec)],
        env=cli_env(tmp_path / "home", DOCKER_HOST=nobody),
        capture_output=True,
        text=True,
        timeout=120,
    )
    group_id = json.loads(spec.read_text())["ID"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"a valid group spec for group '{group_id}'" in result.stdout
    assert "Traceback" not in result.stderr


def size_of(spec: dict[str, Any]) -> int:
    allocation = spec["Properties"]["Allocation"]
    return len(allocation["LogicalIDs"]) if "LogicalIDs" in allocation else allocation["Size"]


def commit_converge_destroy(cli: Cli, name: str, gone: Callable[[list[str]], bool]) -> list[str]:
    """Commit examples/groups/NAME.json as the README says, wait until the group has its size
    and says it converged, destroy it with --wait; return the instance IDs it had, once
    `gone(ids)` says nothing of them is left."""
    path = EXAMPLES / "groups" / f"{name}.json"
    spec = json.loads(path.read_text())
    group_id, size = spec["ID"], size_of(spec)
    assert cli("group", "commit", str(path)).strip() == (
        f"Committed {group_id}: Managing {size} instances"
    )

    def converged() -> list[str] | None:
        description = json.loads(cli("group", "describe", group_id, "--json"))
        ids = [i["ID"] for i in description.get("Instances") or []]
        return ids if len(ids) == size and description.get("Converged") else None

    ids = wait_for(converged, what=f"{group_id} converged to {size} instances")
    assert "Destroyed" in cli("group", "destroy", group_id, "--wait")
    assert group_id not in cli("group", "ls", "-q").split()
    assert gone(ids), f"{group_id} left some of {ids}"
    return ids


def start_runtime(cli: Cli, cluster: str) -> None:
    cli.start("run", str(EXAMPLES / cluster), ready="gained leadership: leading")


def test_file_and_process_examples_run_on_the_demo_cluster(cli: Cli) -> None:
    start_runtime(cli, "cluster.json")
    files = cli.home / "instances" / "file"
    commit_converge_destroy(cli, "file", lambda ids: not any((files / i).exists() for i in ids))

    processes = cli.home / "instances" / "process"

    def processes_gone(ids: list[str]) -> bool:
        running = {env.get("INFRAKIT_INSTANCE_ID") for env in environments().values()}
        return not any((processes / i).exists() or i in running for i in ids)

    commit_converge_destroy(cli, "process", processes_gone)
    assert cli("group", "ls", "-q").split() == ["workers", "zk"]  # the demo's own stay


def test_docker_example_runs_on_the_docker_cluster(cli: Cli) -> None:
    require("docker", docker_available())
    import docker
    import docker.errors

    engine = docker.from_env()
    require("the example's image", _has_image(engine), f"{DOCKER_IMAGE} (scripts/services.sh)")
    seen: set[str] = set()
    try:
        start_runtime(cli, "docker-cluster.json")

        def containers_gone(ids: list[str]) -> bool:
            seen.update(ids)
            for container_id in ids:
                with contextlib.suppress(docker.errors.NotFound):
                    engine.containers.get(container_id)
                    return False
            return True

        ids = commit_converge_destroy(cli, "docker", containers_gone)
        assert all(len(i) == 64 for i in ids)  # container IDs
    finally:
        cli("group", "destroy", "containers", "--wait", check=False)  # the cluster's own group
        cli("group", "destroy", "docker-example", "--wait", check=False)
        cli.stop_all()
        for container_id in seen:
            with contextlib.suppress(docker.errors.NotFound):
                engine.containers.get(container_id).remove(force=True, v=True)
        engine.close()


def _has_image(engine: Any) -> bool:
    import docker.errors

    try:
        engine.images.get(DOCKER_IMAGE)
    except docker.errors.ImageNotFound:
        return False
    return True
