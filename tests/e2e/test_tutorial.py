"""InfraKit's own tutorial (v0.1), end to end, with every piece a separate process: the file
instance and vanilla flavor plugins started with `infrakit plugin start`, a runtime with
`infrakit run`, and every step through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import Cli
from support import wait_for


def cattle(size: int, note: str) -> dict[str, Any]:
    return {
        "ID": "cattle",
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": "instance-file", "Properties": {"Note": note}},
            "Flavor": {
                "Plugin": "flavor-vanilla",
                "Properties": {
                    "Init": ["docker pull nginx:alpine", "docker run -d -p 80:80 nginx-alpine"],
                    "Tags": {"tier": "web", "project": "infrakit"},
                },
            },
            "Health": {"Interval": "500ms"},
        },
    }


def test_infrakit_tutorial_with_out_of_process_plugins(cli: Cli, tmp_path: Path) -> None:
    files = tmp_path / "tutorial"
    cli.start("plugin", "start", "file", "--option", f"Dir={files}", ready="Listening at:")
    cli.start("plugin", "start", "vanilla", ready="Listening at:")
    cluster = tmp_path / "cluster.json"
    cluster.write_text(
        json.dumps(
            {
                "Plugins": [
                    {"Name": "instance-file", "Endpoint": f"ipc://{cli.plugins}/instance-file"},
                    {"Name": "flavor-vanilla", "Endpoint": f"ipc://{cli.plugins}/flavor-vanilla"},
                ]
            }
        )
    )
    cli.start("run", str(cluster), ready="gained leadership: leading")
    # instance-process: the runtime's own, served by name too
    wait_for(lambda: len(cli("plugin", "ls", "-q").split()) == 4, what="4 plugins")
    assert sorted(cli("plugin", "ls", "-q").split()) == [
        "flavor-vanilla",
        "group",
        "instance-file",
        "instance-process",
    ]

    spec = tmp_path / "cattle.json"
    spec.write_text(json.dumps(cattle(5, "Instance properties version 1.0")))
    assert cli("group", "commit", str(spec)).strip() == "Committed cattle: Managing 5 instances"

    def members() -> list[str]:
        return cli("group", "describe", "cattle", "-q").split()

    first = wait_for(lambda: (m := members()) and len(m) == 5 and m, what="5 instances")

    assert cli("group", "free", "cattle").strip()
    assert cli("group", "ls", "-q").split() == []
    assert cli("group", "commit", str(spec)).strip() == "Committed cattle: Managing 5 instances"
    assert cli("group", "ls", "-q").split() == ["cattle"]
    assert members() == first  # adopted, not duplicated

    spec.write_text(json.dumps(cattle(10, "Instance properties version 2.0")))
    assert cli("group", "commit", str(spec), "--pretend").strip() == (
        "Committing cattle would involve: Performing a rolling update on 5 instances, then"
        " adding 5 instances to increase the group size to 10"
    )
    assert members() == first  # a pretend commit changes nothing
    assert cli("group", "commit", str(spec)).strip() == (
        "Committed cattle: Performing a rolling update on 5 instances, then adding 5 instances"
        " to increase the group size to 10"
    )

    def all_new() -> list[str] | None:
        found = members()
        if len(found) != 10 or set(found) & set(first):
            return None
        return found

    rolled = wait_for(all_new, timeout=60, what="10 instances, all new")
    for instance_id in rolled[:3]:
        (files / instance_id).unlink()
    wait_for(
        lambda: len(m := members()) == 10 and not set(m) & set(rolled[:3]),
        what="10 instances again after deleting 3 files",
    )
    # What a user waits for: the destroy to be over, not the last instance to vanish (the
    # group is forgotten a moment after that).
    assert cli("group", "destroy", "cattle", "--wait").split("\n")[-2] == "Destroyed cattle"
    assert cli("group", "ls", "-q").split() == []
    assert [p for p in files.iterdir() if not p.name.startswith(".")] == []
