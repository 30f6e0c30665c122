"""Following a rollout as an operator does (issue 14, the operator's view): `group commit
--wait` in a real pseudo-terminal draws a live progress bar and exits 0 once converged; piped,
it prints plain lines; a rollout that pauses exits 1 with the reason; `group status`;
`--pretend --json` with its plan and `--detailed-exitcode`. A real `infrakit run` and the CLI
as subprocesses, in a home of the test's own."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pexpect
from conftest import Cli
from test_revisions import GROUP, INFRAKIT, Operator, Run, infrakit, runs, runtime, spec

__all__ = ["runs"]  # the fixture, shared with test_revisions

ANSI = "\x1b["


def spec_file(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / f"spec-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(data))
    return str(path)


def in_terminal(cli: Cli, *args: str) -> tuple[int, str]:
    """`infrakit ARGS` in a pseudo-terminal of 160 columns: its exit status and all it drew."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "infrakit.cli.main", *args],
        env={**cli.env, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "40"},
        dimensions=(40, 160),
        encoding="utf-8",
        timeout=300,
    )
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus is not None, f"ended by signal {child.signalstatus}"
    return child.exitstatus, str(child.before)


def slow(version: str, **more: Any) -> dict[str, Any]:
    """The group at `version`, each health check taking a moment (so a rollout has steps)."""
    return spec(version, health="sleep 0.3", **more)


def test_wait_on_a_terminal_draws_the_bar_and_exits_0_once_converged(
    cli: Cli, tmp_path: Path, runs: list[Run]
) -> None:
    runtime(cli, tmp_path, runs)
    status, drawn = in_terminal(cli, "group", "commit", spec_file(tmp_path, slow("v1")), "--wait")
    assert status == 0, drawn
    status, drawn = in_terminal(cli, "group", "commit", spec_file(tmp_path, slow("v2")), "--wait")
    assert status == 0, drawn
    assert "Committed web: Performing a rolling update on 3 instances" in drawn
    assert ANSI in drawn and "━" in drawn, "no progress bar drawn"
    assert "replaced 0/3" in drawn or "replaced 1/3" in drawn
    assert "web rev 2" in drawn
    assert drawn.rstrip().endswith("web converged at revision 2: 3/3 healthy")


def test_wait_piped_prints_a_plain_line_per_change(
    cli: Cli, tmp_path: Path, runs: list[Run]
) -> None:
    runtime(cli, tmp_path, runs)
    op = Operator(cli, tmp_path)
    first = op.commit(slow("v1"), "--wait")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1] == "web converged at revision 1: 3/3 healthy"
    rolled = op.commit(slow("v2"), "--wait")
    assert rolled.returncode == 0, rolled.stderr
    assert ANSI not in rolled.stdout and "\r" not in rolled.stdout
    lines = rolled.stdout.splitlines()
    assert lines[0] == "Committed web: Performing a rolling update on 3 instances"
    assert lines[-1] == "web converged at revision 2: 3/3 healthy"
    progress = lines[1:-1]
    assert all(a != b for a, b in itertools.pairwise(progress)), "a line repeated"
    assert any("replaced" in line and "to turn healthy" in line for line in progress), lines

    # A scale follows the new size; a rollback its revision.
    scaled = infrakit(cli, "group", "scale", GROUP, "4", "--wait")
    assert scaled.returncode == 0, scaled.stderr
    assert scaled.stdout.splitlines()[-1] == "web converged at revision 3: 4/4 healthy"
    back = infrakit(cli, "group", "rollback", GROUP, "--to", "1", "--wait", "--json")
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["Revision"] == 4
    assert len(op.describe()["Instances"]) == 3


def test_wait_on_a_rollout_that_pauses_exits_1_saying_why(
    cli: Cli, tmp_path: Path, runs: list[Run]
) -> None:
    runtime(cli, tmp_path, runs)
    op = Operator(cli, tmp_path)
    assert op.commit(spec("v1"), "--wait").returncode == 0
    failing = op.commit(spec("v2", health="false", healthy_timeout="1s"), "--wait")
    assert failing.returncode == 1
    assert failing.stderr.strip().splitlines()[-1].startswith("Error: web: paused: web-")
    assert "not healthy within 1s" in failing.stderr and "Traceback" not in failing.stderr

    shown = infrakit(cli, "group", "status", GROUP)
    assert shown.returncode == 0
    assert shown.stdout.splitlines()[0] == "web: paused"
    assert "not healthy within 1s" in shown.stdout
    found = json.loads(op.ok("group", "status", GROUP, "--json"))
    assert found["ID"] == GROUP and found["Revision"] == 2 and found["Converged"] is False
    assert "not healthy within 1s" in found["Update"]["Paused"]
    assert found["Update"]["Total"] == 3 and found["Update"]["Done"] == 0

    # OnFailure rollback: the group moves on to a revision of its own; --wait says so.
    rolled_back = op.commit(spec("v3", health="false", healthy_timeout="1s", on_failure="rollback"))
    assert rolled_back.returncode == 0
    op.wait_converged(op.history()["Revisions"][0]["Config"], 3)
    again = op.commit(
        spec("v4", health="false", healthy_timeout="1s", on_failure="rollback"), "--wait"
    )
    assert again.returncode == 1
    assert "moved on to revision" in again.stderr and "rollback to rev" in again.stderr


def test_status_of_a_converged_group(cli: Cli, tmp_path: Path, runs: list[Run]) -> None:
    runtime(cli, tmp_path, runs)
    op = Operator(cli, tmp_path)
    assert op.commit(spec("v1"), "--wait").returncode == 0
    found = json.loads(op.ok("group", "status", GROUP, "--json"))
    assert found["Converged"] is True and found["Revision"] == 1 and found["SpecSeen"] is True
    assert found["Phases"] == {"running": 3} and found["Update"]["Total"] == 0
    assert op.ok("group", "status", GROUP).splitlines() == [
        "web: converged",
        "  web  revision 1  healthy 3/3",
    ]
    missing = infrakit(cli, "group", "status", "nothing")
    assert missing.returncode == 1 and "'nothing' is not being watched" in missing.stderr


def test_pretend_json_plan_and_detailed_exitcode(cli: Cli, tmp_path: Path, runs: list[Run]) -> None:
    runtime(cli, tmp_path, runs)
    op = Operator(cli, tmp_path)

    def pretend(data: dict[str, Any], *flags: str) -> tuple[int, dict[str, Any]]:
        out = op.commit(data, "--pretend", "--json", *flags)
        return out.returncode, json.loads(out.stdout)

    code, new = pretend(spec("v1"), "--detailed-exitcode")
    assert code == 2
    assert new["Sentence"] == "Managing 3 instances"
    assert [(c["LogicalID"], c["Action"]) for c in new["Plan"]] == [
        ("web-0", "add"),
        ("web-1", "add"),
        ("web-2", "add"),
    ]
    assert op.commit(spec("v1"), "--wait").returncode == 0
    v1 = op.history()["Revisions"][-1]["Config"]
    instances = {i["LogicalID"]: i["ID"] for i in op.describe()["Instances"]}

    code, same = pretend(spec("v1"), "--detailed-exitcode")
    assert code == 0 and same["Sentence"] == "Noop"
    assert {c["Action"] for c in same["Plan"]} == {"keep"}

    code, grown = pretend(spec("v1", size=4), "--detailed-exitcode")
    assert code == 2 and grown["Plan"][-1] == {
        "LogicalID": "web-3",
        "Action": "add",
        "Reason": "size 3 -> 4",
        "Instance": None,
    }
    code, shrunk = pretend(spec("v1", size=2))
    assert code == 0 and shrunk["Plan"][-1] == {
        "LogicalID": "web-2",
        "Action": "remove",
        "Reason": "size 3 -> 2",
        "Instance": instances["web-2"],
    }
    code, replaced = pretend(spec("v2"), "--detailed-exitcode")
    assert code == 2
    assert replaced["Sentence"] == "Performing a rolling update on 3 instances"
    for change in replaced["Plan"]:
        assert change["Action"] == "replace"
        assert change["Reason"].startswith(f"config {v1[:8]} -> ")
        assert change["Instance"] == instances[change["LogicalID"]]
    assert op.history()["Revision"] == 1, "a pretend commit changed the group"

    # 1 on an error: a refused spec, a file that is not there, no runtime answering.
    bad = op.commit({"ID": GROUP}, "--pretend", "--detailed-exitcode")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    absent = infrakit(cli, "group", "commit", "no-such.json", "--pretend", "--detailed-exitcode")
    assert absent.returncode == 1 and "no-such.json" in absent.stderr
    lonely = op.commit(spec("v1"), "--detailed-exitcode")
    assert lonely.returncode == 1 and "--detailed-exitcode goes with --pretend" in lonely.stderr
    env = {**cli.env, "INFRAKIT_ENDPOINT": f"ipc://{tmp_path / 'nobody'}"}
    path = spec_file(tmp_path, spec("v1"))
    gone = subprocess.run(
        [*INFRAKIT, "group", "commit", path, "--pretend", "--detailed-exitcode"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert gone.returncode == 1 and "no runtime answers" in gone.stderr
