"""Embed the runtime in your own Python program: commit a group, watch it heal, resize it.

    .venv/bin/python examples/embed.py [HOME]

Uses the `file` instance plugin (one JSON file per instance), so it needs nothing outside.
"""

import sys
import tempfile
import time
from pathlib import Path

from infrakit import Runtime

home = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="infrakit-"))
spec = {
    "ID": "cattle",
    "Properties": {
        "Allocation": {"Size": 3},
        "Instance": {"Plugin": "instance-file", "Properties": {"Note": "v1"}},
        "Flavor": {"Plugin": "flavor-vanilla", "Properties": {"Init": ["echo hello"]}},
        "Health": {"Interval": "200ms"},
    },
}

with Runtime(home=home) as runtime:
    print(runtime.commit(spec))  # Managing 3 instances
    group = runtime.wait_converged("cattle")
    print([instance["ID"] for instance in group["Instances"]])

    lost = group["Instances"][0]["ID"]
    (home / "instances" / "file" / lost).unlink()  # an instance vanishes...
    deadline = time.monotonic() + 30
    while lost in {i["ID"] for i in runtime.wait_converged("cattle")["Instances"]}:
        assert time.monotonic() < deadline, "not healed in 30 s"
        time.sleep(0.05)
    print("healed:", len(runtime.describe("cattle")["Instances"]), "instances")  # ...replaced

    spec["Properties"]["Allocation"]["Size"] = 5
    print(runtime.commit(spec, pretend=True))  # what it would do; changes nothing
    print(runtime.commit(spec))  # Adding 2 instances to increase the group size to 5
    runtime.wait_converged("cattle")
    runtime.destroy("cattle")
    print("destroyed")
