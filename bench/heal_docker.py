"""How fast a killed container is replaced: our runtime with the Docker instance plugin versus a
Docker Swarm service, on the same engine. Prints figures; not a test.

1. A Size 3 group of containers (runtime embedded, Health.Interval 1s, the plugin's event watch
   on). Ten times: kill one container, time until the engine lists 3 running containers of the
   group without the victim (polling the engine, not our runtime), then wait for the group to
   converge again. Also shows where our time goes: kill -> Docker event -> provision called ->
   provision returned (create + start) -> seen running.
2. The same against a swarm service of 3 replicas with a restart delay of 0s. The engine joins
   a single-node swarm (`docker swarm init --advertise-addr 127.0.0.1`) if it is in none, and
   leaves it afterwards; a swarm it is already a manager of is reused and left as it was.
3. A plain `docker run -d` (the CLI, and create + start through the API) for reference.

    .venv/bin/python bench/heal_docker.py [--kills 10] [--image infrakit-test/busybox:latest]

Containers run with network none (swarm tasks: the host network, as a service cannot use
"none" and this engine has no bridge); all are removed at the end.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.types import RestartPolicy, ServiceMode

from infrakit import Runtime
from infrakit.plugins.instance.docker import DockerInstancePlugin
from infrakit.spi import Spec
from infrakit.spi.instance import TAG_GROUP

LOOP = "while true; do sleep 1; done"
BENCH_LABEL = "infrakit.bench"
POLL = 0.005
TIMEOUT = 60.0


class TimedDockerPlugin(DockerInstancePlugin):
    """The Docker plugin, noting when each provision began and ended."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.provisions: list[tuple[float, float]] = []

    def provision(self, spec: Spec) -> str:
        began = time.monotonic()
        try:
            return super().provision(spec)
        finally:
            self.provisions.append((began, time.monotonic()))


def running(api: Any, label: str) -> set[str]:
    """IDs of the running containers carrying `label` (`k=v`), straight from the engine."""
    return {c["Id"] for c in api.containers(filters={"label": label, "status": "running"})}


def wait(predicate: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(POLL)


def kill_and_time(api: Any, label: str, size: int) -> tuple[float, float, str]:
    """Kill one running container with `label`; (when killed, seconds to a replacement, victim)."""

    def full() -> set[str] | None:
        ids = running(api, label)
        return ids if len(ids) == size else None

    before = wait(full, "full size")
    victim = sorted(before)[0]
    killed = time.monotonic()
    api.kill(victim)
    wait(
        lambda: (r := running(api, label)) and len(r) == size and victim not in r,
        "a replacement",
    )
    return killed, time.monotonic() - killed, victim


def figures(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    return (
        f"median {statistics.median(ms):6.0f} ms   min {ms[0]:6.0f} ms   max {ms[-1]:6.0f} ms"
        f"   (n={len(ms)})"
    )


def bench_ours(api: Any, image: str, kills: int, token: str) -> list[float]:
    group = f"heal-{token}"
    label = f"{TAG_GROUP}={group}"
    plugin = TimedDockerPlugin(stop_timeout=1)
    events: list[float] = []
    lock = threading.Lock()

    def heard() -> None:
        with lock:
            events.append(time.monotonic())

    spec = {
        "ID": group,
        "Properties": {
            "Allocation": {"Size": 3},
            "Instance": {
                "Plugin": "instance-docker",
                "Properties": {
                    "Image": image,
                    "NetworkMode": "none",
                    "Labels": {BENCH_LABEL: token},
                },
            },
            "Flavor": {"Plugin": "flavor-vanilla", "Properties": {"Init": [LOOP]}},
            "Health": {"Interval": "1s", "GracePeriod": "5s"},
        },
    }
    home = Path(tempfile.mkdtemp(prefix="ik-bench-docker-"))
    heals: list[float] = []
    stages: dict[str, list[float]] = {"event": [], "to provision": [], "provision": [], "seen": []}
    unwatch = plugin.watch(heard)
    try:
        with Runtime(home=home, plugins={"instance-docker": plugin}) as runtime:
            runtime.commit(spec)
            wait(lambda: len(running(api, label)) == 3, "3 containers")
            runtime.wait_converged(group)
            for _ in range(kills):
                with lock:
                    events.clear()
                plugin.provisions.clear()
                killed, took, _victim = kill_and_time(api, label, 3)
                heals.append(took)
                # The engine may list the new container before provision() has returned.
                wait(lambda: plugin.provisions, "the provision to return")
                with lock:
                    first_event = min((t for t in events if t >= killed), default=None)
                provision = min(plugin.provisions, default=None, key=lambda p: p[0])
                if first_event is not None and provision is not None:
                    stages["event"].append(first_event - killed)
                    stages["to provision"].append(provision[0] - first_event)
                    stages["provision"].append(provision[1] - provision[0])
                    stages["seen"].append(killed + took - provision[1])
                runtime.wait_converged(group)
            runtime.destroy(group)
    finally:
        unwatch()
        plugin.close()
        for c in api.containers(all=True, filters={"label": f"{BENCH_LABEL}={token}"}):
            api.remove_container(c["Id"], force=True, v=True)
    print(f"infrakit (docker plugin, event watch): {figures(heals)}")
    for stage, times in stages.items():
        if times:
            print(f"    {stage:>13}: {figures(times)}")
    return heals


def bench_swarm(client: Any, image: str, kills: int, token: str) -> list[float] | None:
    api = client.api
    swarm = client.info().get("Swarm") or {}
    state = swarm.get("LocalNodeState")
    created = False
    if state == "inactive":
        client.swarm.init(advertise_addr="127.0.0.1")
        created = True
        print("swarm: initialised a single-node swarm (left again at the end)")
    elif state == "active" and swarm.get("ControlAvailable"):
        print("swarm: the engine is already a swarm manager; reusing it (and staying in it)")
    else:
        print(f"swarm: skipped (this engine's swarm state is {state!r}, not a manager)")
        return None
    name = f"ik-bench-{token}"
    label = f"com.docker.swarm.service.name={name}"
    heals: list[float] = []
    service = None
    try:
        service = client.services.create(
            image,
            command=["sh", "-c", LOOP],
            name=name,
            mode=ServiceMode("replicated", replicas=3),
            restart_policy=RestartPolicy(condition="any", delay=0),
            labels={BENCH_LABEL: token},
            container_labels={BENCH_LABEL: token},
            # A service cannot use the local "none" network, and this engine has no bridge:
            # the host network works offline and needs nothing (the tasks open no ports).
            networks=["host"],
        )
        delay = api.inspect_service(service.id)["Spec"]["TaskTemplate"]["RestartPolicy"]
        assert delay.get("Delay", 0) == 0, delay
        wait(lambda: len(running(api, label)) == 3, "the service's 3 tasks", timeout=120)
        for _ in range(kills):
            _killed, took, victim = kill_and_time(api, label, 3)
            heals.append(took)
            # Full recovery: 3 tasks running, none of them the victim.
            wait(lambda v=victim: len(r := running(api, label)) == 3 and v not in r, "recovery")
    finally:
        if service is not None:
            try:
                service.remove()
                wait(lambda: not api.containers(all=True, filters={"label": label}), "removal")
            except docker.errors.APIError as exc:  # e.g. someone else left the swarm
                print(f"swarm: cannot remove service {name}: {exc}")
        if created:
            client.swarm.leave(force=True)
    print(f"swarm service (restart delay 0s):      {figures(heals)}")
    return heals


def bench_docker_run(api: Any, image: str, token: str, runs: int = 10) -> None:
    cli: list[float] = []
    sdk: list[float] = []
    try:
        for _ in range(runs):
            began = time.monotonic()
            subprocess.run(
                [
                    *("docker", "run", "-d", "--network", "none"),
                    *("--label", f"{BENCH_LABEL}={token}", image, "sh", "-c", LOOP),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            cli.append(time.monotonic() - began)
            began = time.monotonic()
            created = api.create_container(
                image,
                ["sh", "-c", LOOP],
                labels={BENCH_LABEL: token},
                host_config=api.create_host_config(network_mode="none"),
            )
            api.start(created["Id"])
            sdk.append(time.monotonic() - began)
    finally:
        for c in api.containers(all=True, filters={"label": f"{BENCH_LABEL}={token}"}):
            api.remove_container(c["Id"], force=True, v=True)
    print(f"docker run -d (CLI):                   {figures(cli)}")
    print(f"create + start (API):                  {figures(sdk)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument(
        "--image", default=os.environ.get("INFRAKIT_TEST_IMAGE", "infrakit-test/busybox:latest")
    )
    args = parser.parse_args()
    client = docker.from_env()
    try:
        client.api.inspect_image(args.image)
    except docker.errors.ImageNotFound:
        sys.exit(f"image {args.image!r} is not on this engine: run scripts/services.sh first")
    token = secrets.token_hex(4)
    print(f"{args.kills} kills each; time from kill to a replacement running (engine polled)")
    ours = bench_ours(client.api, args.image, args.kills, token)
    swarm = bench_swarm(client, args.image, args.kills, token)
    bench_docker_run(client.api, args.image, token)
    if swarm:
        ratio = statistics.median(ours) / statistics.median(swarm)
        verdict = "meets" if ratio <= 0.6 else "misses"
        print(f"ours / swarm (median): {ratio:.2f}x  ({verdict} the 0.6x target)")
    client.close()


if __name__ == "__main__":
    main()
