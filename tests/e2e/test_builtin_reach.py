"""Every plugin a runtime uses is reachable by its name from the CLI (issue 13): the built-in
plugins it runs in its own process are served on their sockets in the plugins directory while
it leads, as `infrakit plugin start` would serve them; a socket another live server holds is
left to it; two runtimes on one home never fight over a socket; none is left after a stop."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from conftest import Cli
from support import process_group, wait_for
from test_update_resume import Run, lone_runtime
from test_update_resume import runs as runs  # the fixture

from infrakit.plugins.instance.process import ProcessInstancePlugin

GROUP = "reached"


def members(state: Path) -> set[str]:
    plugin = ProcessInstancePlugin(state)
    try:
        return {d.id for d in plugin.describe_instances({"infrakit.group": GROUP})}
    finally:
        plugin.close()


def sockets(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if stat.S_ISSOCK(p.lstat().st_mode)}


def test_built_in_plugins_are_reached_by_name_while_the_runtime_leads(
    cli: Cli, tmp_path: Path, runs: list[Run]
) -> None:
    state = cli.home / "instances" / "process"
    # Another process serves flavor-vanilla first: the runtime leaves that socket to it.
    cli.start("plugin", "start", "vanilla", ready="Listening at:")
    first = lone_runtime(cli, tmp_path, runs)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(process_group(GROUP, 2)))
    cli("group", "commit", str(spec))
    made = wait_for(lambda: m if len(m := members(state)) == 2 else None, what="2 instances")

    def described() -> set[str]:
        out = cli("instance", "--name", "instance-process", "describe", "-q", check=False)
        return set(out.split())

    assert wait_for(lambda: described() == made and described(), what="the describe") == made
    properties = tmp_path / "flavor.json"
    properties.write_text(json.dumps({"Init": ["true"]}))
    assert cli("flavor", "--name", "flavor-vanilla", "validate", str(properties)) == "valid\n"
    live = cli("plugin", "ls", "-q").split()
    assert {"group", "instance-file", "instance-process", "flavor-vanilla"} <= set(live), live

    # A second runtime on the same home follows, and takes no socket from the leader.
    second = Run(cli.home, first.cluster, tmp_path / "second.log")
    runs.append(second)
    second.start(leading=False)
    wait_for(lambda: "waiting as a follower" in second.tail(), what="the second to follow")
    assert described() == made
    assert "cannot serve" not in second.tail() and "cannot serve" not in first.tail()

    # The leader stops: its sockets go, and the follower, now leading, serves them.
    first.stop()
    wait_for(second.leads, what="the second runtime to lead")
    wait_for(lambda: described() == made, what="the new leader to serve instance-process")
    assert "cannot serve" not in second.tail()

    second.stop()
    assert sockets(cli.plugins) == {"flavor-vanilla"}, "a stale socket is left"
    assert cli("flavor", "--name", "flavor-vanilla", "validate", str(properties)) == "valid\n"
