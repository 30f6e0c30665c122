"""The `infrakit` command as a user runs it: `run` in the foreground until SIGTERM or Ctrl-C
(instances keep running, the next run adopts them), `validate` with errors that name the path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from support import alive, recorded_pids, wait_for

INFRAKIT = [sys.executable, "-m", "infrakit.cli.main"]


def cluster(tmp_path: Path, size: int = 2) -> Path:
    path = tmp_path / "cluster.json"
    path.write_text(
        json.dumps(
            {
                "Groups": [
                    {
                        "ID": "workers",
                        "Properties": {
                            "Allocation": {"Size": size},
                            "Instance": {"Plugin": "instance-process"},
                            "Flavor": {
                                "Plugin": "flavor-vanilla",
                                "Properties": {"Init": ["exec sleep 600"]},
                            },
                            "Health": {"Interval": "100ms"},
                        },
                    }
                ]
            }
        )
    )
    return path


def start(path: Path, home: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "INFRAKIT_HOME": str(home)}
    return subprocess.Popen(
        [*INFRAKIT, "run", str(path), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


class Output:
    """Reads a process's output line by line in the background."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line.rstrip("\n"))

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)


def test_run_logs_lifecycle_and_sigterm_leaves_instances_running(
    tmp_path: Path, home: Path
) -> None:
    path = cluster(tmp_path)
    process = start(path, home)
    output = Output(process)
    try:
        wait_for(lambda: output.has("workers: converged: 2 instances"), what="convergence")
        assert output.has("workers: committed: Managing 2 instances")
        assert output.has("workers: workers-0 provisioned proc-")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    output.thread.join(timeout=5)
    assert output.has("received SIGTERM: stopping (instances keep running)")
    pids = recorded_pids(home / "instances" / "process")
    assert len(pids) == 2 and all(alive(pid) for pid in pids.values())

    again = start(path, home, "--json-logs")
    lines = Output(again)
    try:
        wait_for(lambda: lines.has("converged: 2 instances"), what="convergence after restart")
        again.send_signal(signal.SIGINT)
        assert again.wait(timeout=30) == 0
    finally:
        if again.poll() is None:
            again.kill()
    lines.thread.join(timeout=5)
    events = [json.loads(line) for line in lines.lines if line.startswith("{")]
    kinds = [e["event"]["kind"] for e in events if "event" in e]
    assert kinds.count("adopted") == 2 and "provisioned" not in kinds
    assert set(recorded_pids(home / "instances" / "process")) == set(pids)


def run_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*INFRAKIT, "validate", str(path)], capture_output=True, text=True, timeout=60
    )


def test_validate_names_the_path_of_each_fault(tmp_path: Path) -> None:
    bad: dict[str, Any] = {
        "Groups": [
            {
                "ID": "w",
                "Properties": {
                    "Allocation": {"Size": -1},
                    "Instance": {"Plugin": "instance-nowhere"},
                    "Flavor": {"Plugin": "flavor-vanilla"},
                },
            }
        ]
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    result = run_validate(path)
    assert result.returncode == 1
    assert "Groups[0].Properties.Allocation.Size: must be >= 0, got -1" in result.stderr

    bad["Groups"][0]["Properties"]["Allocation"] = {"Size": 1}
    path.write_text(json.dumps(bad))
    result = run_validate(path)
    assert result.returncode == 1
    assert "Groups[0].Properties.Instance.Plugin: no plugin named 'instance-nowhere'" in (
        result.stderr
    )

    path.write_text('{"Groups": [')
    result = run_validate(path)
    assert result.returncode == 1 and "not valid JSON" in result.stderr

    group = tmp_path / "group.json"
    group.write_text(json.dumps(bad["Groups"][0]))
    result = run_validate(group)  # a bare spec may name only built-in plugins
    assert result.returncode == 1
    assert "Properties.Instance.Plugin: no plugin named 'instance-nowhere'" in result.stderr
    bad["Groups"][0]["Properties"]["Instance"]["Plugin"] = "instance-file"
    group.write_text(json.dumps(bad["Groups"][0]))
    result = run_validate(group)
    assert result.returncode == 0 and "a valid group spec for group 'w'" in result.stdout


def test_the_example_cluster_is_valid() -> None:
    example = Path(__file__).parents[2] / "examples" / "cluster.json"
    result = run_validate(example)
    assert result.returncode == 0, result.stderr


def test_the_embedding_example_runs(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "examples" / "embed.py"
    result = subprocess.run(
        [sys.executable, str(example), str(tmp_path / "home")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Managing 3 instances"
    assert "healed: 3 instances" in lines
    assert lines[-1] == "destroyed"


def test_the_example_cluster_prints_each_workers_slot(home: Path) -> None:
    """The demo's Init echoes `$INFRAKIT_LOGICAL_ID`: a Size group's worker prints its slot,
    and `describe` shows it, as it shows a named member's logical ID."""
    from infrakit import Runtime

    example = Path(__file__).parents[2] / "examples" / "cluster.json"
    with Runtime(json.loads(example.read_text()), home=home) as runtime:
        workers = runtime.wait_converged("workers")["Instances"]
        assert sorted(i["LogicalID"] for i in workers) == ["workers-0", "workers-1", "workers-2"]
        members = runtime.wait_converged("zk")["Instances"]
        assert sorted(i["LogicalID"] for i in members) == ["zk1", "zk2", "zk3"]
        state = home / "instances" / "process"

        def said() -> list[str]:
            lines = []
            for instance in workers:
                log = state / instance["ID"] / "output.log"
                lines += log.read_text().splitlines() if log.exists() else []
            return sorted(lines)

        expected = [f"worker workers-{i} started" for i in range(3)]
        wait_for(lambda: said() == expected, what="each worker to print its slot")
        runtime.destroy("workers")
        runtime.destroy("zk")
