"""Metrics and activity history (issue 14), as an operator meets them: Prometheus scrapes a real
`infrakit run` over HTTP and sees its group's gauges, a replacement counted by its cause and the
plugin calls timed; `infrakit group activity` says what the runtime did and why, after a restart
too, with the file store and with etcd; a busy or exposed metrics address is one clear line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from conftest import INFRAKIT, Cli
from prometheus_client.parser import text_string_to_metric_families
from support import (
    etcd_cluster,
    etcd_in_use,
    etcd_up,
    free_port,
    process_group,
    recorded_pids,
    require,
    wait_for,
)
from test_update_resume import Run
from test_update_resume import runs as runs  # the fixture

GROUP = "watched"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample the metrics endpoint serves now, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


def started(cli: Cli, tmp_path: Path, runs: list[Run], cluster: dict[str, Any]) -> Run:
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(cluster))
    run = Run(cli.home, path, tmp_path / "run.log")
    runs.append(run)
    run.start()
    return run


def commit(run: Run, tmp_path: Path, size: int) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(process_group(GROUP, size)))
    out = run.cli("group", "commit", str(spec))
    assert out.returncode == 0, out.stderr


def kill_one(state: Path) -> str:
    """kill -9 one instance's processes; its ID."""
    instance, pid = sorted(recorded_pids(state).items())[0]
    os.killpg(pid, signal.SIGKILL)
    return instance


def activity(run: Run) -> list[dict[str, Any]]:
    out = run.cli("group", "activity", GROUP, "--json")
    assert out.returncode == 0, out.stderr
    entries: list[dict[str, Any]] = json.loads(out.stdout)
    return entries


def replaced_because_gone(entries: list[dict[str, Any]], instance: str) -> bool:
    """Whether the history has the replacement of `instance`, and its provisioning, with the
    cause: it was gone."""
    cause = f"{instance} is gone; replacing it"
    kinds = {e["Kind"] for e in entries if e["Cause"] == cause}
    return {"gone", "provisioned"} <= kinds


def test_prometheus_scrapes_the_group_a_replacement_by_cause_and_plugin_latency(
    cli: Cli, tmp_path: Path, runs: list[Run]
) -> None:
    port = free_port()
    run = started(cli, tmp_path, runs, {"Manager": {"Metrics": f"127.0.0.1:{port}"}})
    commit(run, tmp_path, 3)

    def group_healthy() -> Samples | None:
        now = scrape(port)
        healthy = sample(now, "infrakit_group_healthy", group=GROUP)
        running = sample(now, "infrakit_group_running", group=GROUP)  # as the last look found
        return now if healthy == running == 3 else None

    now = wait_for(group_healthy, what="3 healthy instances in the metrics")
    assert sample(now, "infrakit_group_desired", group=GROUP) == 3
    assert sample(now, "infrakit_group_unhealthy", group=GROUP) == 0
    assert sample(now, "infrakit_group_updating", group=GROUP) == 0
    assert sample(now, "infrakit_leader") == 1
    assert sample(now, "workqueue_depth", name="instance-actors") is not None
    timed = "infrakit_plugin_call_duration_seconds_count"
    for method in ("DescribeInstances", "Provision"):
        assert (sample(now, timed, plugin="instance-process", method=method) or 0) > 0, method
    assert (sample(now, timed, plugin="flavor-vanilla", method="Prepare") or 0) > 0
    looks = sample(now, "controller_runtime_reconcile_total", controller="group", result="success")
    assert (looks or 0) > 0
    assert (sample(now, "infrakit_group_look_duration_seconds_count", group=GROUP) or 0) > 0
    assert sample(now, "infrakit_replacements_total", group=GROUP, cause="gone") is None

    kill_one(cli.home / "instances" / "process")
    wait_for(
        lambda: sample(scrape(port), "infrakit_replacements_total", group=GROUP, cause="gone") == 1,
        what="the replacement counted with cause gone",
    )
    wait_for(group_healthy, what="the group healthy again")


def test_activity_says_what_was_replaced_and_why_and_survives_a_restart(
    cli: Cli, tmp_path: Path, runs: list[Run]
) -> None:
    run = started(cli, tmp_path, runs, {"Groups": []})
    commit(run, tmp_path, 2)
    state = cli.home / "instances" / "process"
    wait_for(lambda: len(recorded_pids(state)) == 2, what="2 instances")
    wait_for(lambda: run.events("converged"), what="the group to converge")
    killed = kill_one(state)
    entries = wait_for(
        lambda: e if replaced_because_gone(e := activity(run), killed) else None,
        what="the replacement in the activity history",
    )
    assert any(e["Kind"] == "committed" for e in entries), entries

    table = run.cli("group", "activity", GROUP)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["TIME", "WHAT", "CAUSE"]
    assert any(f"{killed} is gone; replacing it" in row for row in rows), table.stdout
    last = json.loads(run.cli("group", "activity", GROUP, "--json", "--limit", "1").stdout)
    assert len(last) == 1

    run.stop()
    run.start()
    assert replaced_because_gone(activity(run), killed)


def test_activity_with_the_etcd_store_survives_a_restart(
    cli: Cli, tmp_path: Path, runs: list[Run]
) -> None:
    require("etcd", etcd_up())
    with etcd_in_use():
        prefix = f"/test-activity-{os.getpid()}-{tmp_path.name}"
        cluster = etcd_cluster(cli.home / "instances" / "process", prefix, free_port())
        run = started(cli, tmp_path, runs, cluster)
        endpoint = cluster["Manager"]["Listen"][0]
        run.env["INFRAKIT_ENDPOINT"] = endpoint
        commit(run, tmp_path, 1)
        state = cli.home / "instances" / "process"
        wait_for(lambda: run.events("converged"), what="the group to converge")
        killed = kill_one(state)
        wait_for(
            lambda: replaced_because_gone(activity(run), killed),
            what="the replacement in the activity history",
        )
        run.stop()
        run.start()
        assert replaced_because_gone(activity(run), killed)


def test_a_busy_metrics_port_stops_the_start_with_one_clear_line(cli: Cli, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cluster = tmp_path / "cluster.json"
        cluster.write_text(json.dumps({"Manager": {"Metrics": f"127.0.0.1:{port}"}}))
        out = cli_run(cli, cluster)
    assert out.returncode == 1
    assert f"Manager.Metrics: cannot serve metrics at 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr


def test_metrics_beyond_loopback_are_refused_without_insecure(cli: Cli, tmp_path: Path) -> None:
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps({"Manager": {"Metrics": "0.0.0.0:9464"}}))
    out = cli_run(cli, cluster)
    assert out.returncode == 1
    assert "Manager.Metrics" in out.stderr and "Manager.Insecure" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def cli_run(cli: Cli, cluster: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*INFRAKIT, "run", str(cluster)], env=cli.env, capture_output=True, text=True, timeout=120
    )
