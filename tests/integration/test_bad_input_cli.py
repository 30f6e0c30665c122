"""Bad input at every door: `infrakit validate`, `infrakit group commit` (and `--pretend`)
against a real runtime, a plain JSON-RPC client on the runtime's socket, and `Runtime.commit`.
Each is refused with a message naming what and where, no traceback, a non-zero exit, and
nothing changed: no group, the store untouched."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zmq
from support import file_group, run_cli, wait_for

from infrakit import Runtime
from infrakit.spec import SpecError

SPEC = json.dumps(file_group("g", 1))


def spec_text(old: str, new: str) -> bytes:
    """The test spec's JSON text with one piece replaced (for faults no dict can hold)."""
    assert old in SPEC
    return SPEC.replace(old, new, 1).encode("utf-8", "surrogatepass")


def spec_value(path: str, value: Any) -> dict[str, Any]:
    """The test spec with the value at a dotted path replaced (for `Runtime.commit`)."""
    data = copy.deepcopy(json.loads(SPEC))
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return data


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


@dataclass(frozen=True)
class Case:
    """One bad input: as JSON text (files, the wire) and as a Python value (Runtime.commit),
    with what the message must say for each."""

    name: str
    text: bytes
    says: str
    value: Any
    value_says: str


INSTANCE = '"Properties": {"Note": "v1"}'
SIZE = '"Size": 1'
CASES = [
    Case(
        "deep-nesting",
        spec_text(INSTANCE, '"Properties": ' + "[" * 1000 + "]" * 1000),
        "nested deeper than 64 levels",
        spec_value("Properties.Instance.Properties", nested(1000)),
        "nested deeper than 64 levels",
    ),
    Case(
        "invalid-utf8",
        spec_text('"ID": "g"', '"ID": "gMARK"').replace(b"MARK", b"\xff"),
        "not valid UTF-8 (invalid start byte) at line 1 column 10",
        spec_value("ID", "g\udcff"),  # what a lenient decoder (surrogateescape) makes of it
        "ID: not valid Unicode (a lone surrogate)",
    ),
    Case(
        "int-over-4300-digits",
        spec_text(SIZE, '"Size": ' + "9" * 4301),
        "a number too large",
        spec_value("Properties.Allocation.Size", 10**4300),
        "Properties.Allocation.Size: an integer beyond 64 bits",
    ),
    Case(
        "int-over-64-bits",
        spec_text(SIZE, '"Size": 18446744073709551616'),
        "Properties.Allocation.Size: an integer beyond 64 bits",
        spec_value("Properties.Allocation.Size", 2**64),
        "Properties.Allocation.Size: an integer beyond 64 bits",
    ),
    Case(
        "nan",
        spec_text(SIZE, '"Size": NaN'),
        "NaN and Infinity are not JSON numbers",
        spec_value("Properties.Allocation.Size", float("nan")),
        "Properties.Allocation.Size: nan is not a JSON number",
    ),
    Case(
        "lone-surrogate",
        spec_text('"Note": "v1"', '"Note": "\\ud800"'),
        "surrogate",
        spec_value("Properties.Instance.Properties.Note", "\ud800"),
        "Properties.Instance.Properties.Note: not valid Unicode (a lone surrogate)",
    ),
    Case(
        "duplicate-keys",
        spec_text(SIZE, '"Size": 1, "Size": 1000000000'),
        "Properties.Allocation.Size: given more than once",
        spec_value("Properties.Allocation.Size", 1_000_000_000),  # the last won, before
        "Properties.Allocation.Size: must be at most 1000000",
    ),
    Case(
        "keys-equal-but-for-case",
        spec_text(SIZE, '"Size": 1, "size": 1000000000'),
        "'Size' and 'size' are the same key",
        spec_value("Properties.Allocation.size", 1_000_000_000),
        "'Size' and 'size' are the same key",
    ),
    Case(
        "id-with-trailing-newline",
        spec_text('"ID": "g"', '"ID": "g\\n"'),
        "ID: must be letters, digits",
        spec_value("ID", "g\n"),
        "ID: must be letters, digits",
    ),
    Case(
        "huge-size",
        spec_text(SIZE, '"Size": 1000000000'),
        "Properties.Allocation.Size: must be at most 1000000",
        spec_value("Properties.Allocation.Size", 1_000_000_000),
        "Properties.Allocation.Size: must be at most 1000000",
    ),
    Case(
        "huge-duration",
        spec_text('"Interval": "100ms"', '"Interval": "999999999999h"'),
        "Properties.Health.Interval: must be at most 1h",
        spec_value("Properties.Health.Interval", 1e308),
        "Properties.Health.Interval: must be at most 1h",
    ),
]
for label, bad_id, says in [
    ("empty", "", "a logical ID must not be blank"),
    ("nul", "a\\u0000b", "must not contain control characters"),
    ("long", "x" * 100_000, "must be at most 253 characters"),
]:
    ids = json.dumps(["ok", json.loads(f'"{bad_id}"')])
    CASES.append(
        Case(
            f"logical-id-{label}",
            spec_text(SIZE, f'"LogicalIDs": {ids}'),
            f"Properties.Allocation.LogicalIDs[1]: {says}",
            spec_value("Properties.Allocation", {"LogicalIDs": json.loads(ids)}),
            f"Properties.Allocation.LogicalIDs[1]: {says}",
        )
    )
for label, key, says in [
    ("empty", "", "Tags: a tag name must not be empty"),
    ("nul", "a\\u0000", 'Tags["a\\u0000"]: a tag name must not contain'),
    ("equals", "a=b", "Tags.a=b: a tag name must not contain '=' or control characters"),
    ("long", "t" * 100_000, "Tags.ttt"),
]:
    tags = '{"Properties": {"Tags": {"' + key + '": "v"}}, "Plugin"'
    flavor = json.loads(SPEC)["Properties"]["Flavor"]
    flavor["Properties"] = {"Tags": json.loads('{"' + key + '": "v"}')}
    CASES.append(
        Case(
            f"tag-key-{label}",
            spec_text('"Flavor": {"Plugin"', '"Flavor": ' + tags),
            f"Properties.Flavor.Properties.{says}",
            spec_value("Properties.Flavor", flavor),
            f"Properties.Flavor.Properties.{says}",
        )
    )
IDS = [case.name for case in CASES]


def run(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(home, *args, **(env or {}))


def refused(result: subprocess.CompletedProcess[str], says: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    assert says in output, output
    assert all(len(line) < 2000 for line in output.splitlines()), "a line echoes a huge input"


def store_of(home: Path) -> bytes | None:
    path = home / "configs" / "global.config"
    return path.read_bytes() if path.exists() else None


@pytest.fixture
def runtime(home: Path) -> Iterator[Runtime]:
    with Runtime(home=home) as running:
        assert running.is_leader()
        wait_for(lambda: (home / "plugins" / "group").exists(), 10, "the Group API socket")
        yield running


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_validate_refuses_bad_input_with_its_place(case: Case, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(case.text)
    refused(run(tmp_path / "home", "validate", str(path)), case.says)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_commit_refuses_bad_input_and_changes_nothing(
    case: Case, tmp_path: Path, runtime: Runtime
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(case.text)
    before = store_of(runtime.home)
    for pretend in ([], ["--pretend"]):
        refused(run(runtime.home, "group", "commit", str(path), *pretend), case.says)
    assert runtime.inspect() == []
    assert store_of(runtime.home) == before


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_plain_json_rpc_client_is_refused_and_nothing_changes(
    case: Case, runtime: Runtime
) -> None:
    """What a client in another language sends reaches no plugin and no store."""
    before = store_of(runtime.home)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(f"ipc://{runtime.home / 'plugins' / 'group'}")
    try:
        head = b'{"jsonrpc": "2.0", "id": 5, "method": "Group.CommitGroup", "params": {"Spec": '
        sock.send(head + case.text + b', "Pretend": false}}')
        assert sock.poll(30_000), "no reply"
        reply = json.loads(sock.recv())
    finally:
        sock.close()
    assert "error" in reply, reply
    assert reply["error"]["code"] in (-32700, -32602, -32010)
    assert runtime.inspect() == []
    assert store_of(runtime.home) == before


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_runtime_commit_refuses_bad_values_and_changes_nothing(
    case: Case, runtime: Runtime
) -> None:
    before = store_of(runtime.home)
    for pretend in (True, False):
        with pytest.raises(SpecError) as caught:
            runtime.commit(case.value, pretend=pretend)
        assert case.value_says in str(caught.value)
    assert runtime.inspect() == []
    assert store_of(runtime.home) == before


# -- the whole check offline (issue 9, item 12) -------------------------------------------------


def validate(tmp_path: Path, data: Any, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(data))
    return run(tmp_path / "home", "validate", str(path), *args, env=env)


def test_validate_runs_the_builtin_plugins_own_checks(tmp_path: Path) -> None:
    spec = file_group("g", 1)
    spec["Properties"]["Flavor"]["Properties"] = {"Init": 42, "Helth": {"Command": "true"}}
    spec["Properties"]["Instance"] = {"Plugin": "instance-process", "Properties": {"Cmd": [1]}}
    result = validate(tmp_path, spec)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{tmp_path / 'spec.json'}: Properties.Instance.Properties.Cmd[0]: must be a string,"
        " got a number",
        f"{tmp_path / 'spec.json'}: Properties.Flavor.Properties.Helth: unknown key 'Helth'"
        " (expected one of: Init, Tags, Attachments, Health)",
        f"{tmp_path / 'spec.json'}: Properties.Flavor.Properties.Init: must be a list of strings,"
        " got a number",
    ]
    cluster = validate(tmp_path, {"Groups": [spec]})
    assert cluster.returncode == 1
    assert "Groups[0].Properties.Flavor.Properties.Init: must be a list" in cluster.stderr


def test_validate_checks_plugin_options_in_any_letter_case(tmp_path: Path) -> None:
    spec = file_group("g", 1)
    spec["Properties"]["Instance"]["Plugin"] = "disk"
    spec["Properties"]["Flavor"]["Properties"] = {"init": 3}
    plugin = {"name": "disk", "kind": "file", "options": {"dir": str(tmp_path), "Colour": "red"}}
    result = validate(tmp_path, {"plugins": [plugin], "groups": [spec]})
    assert result.returncode == 1
    where = tmp_path / "spec.json"
    assert result.stderr.splitlines() == [  # the group's plugin is still known to be a file one
        f"{where}: Plugins[0].Options.Colour: unknown key 'Colour' (expected one of: Dir)",
        f"{where}: Groups[0].Properties.Flavor.Properties.Init: must be a list of strings,"
        " got a number",
    ]


def test_a_misspelt_plugin_name_gets_a_suggestion(tmp_path: Path) -> None:
    spec = file_group("g", 1)
    spec["Properties"]["Flavor"]["Plugin"] = "flavor-vanila"
    for data in (spec, {"Groups": [spec]}):
        result = validate(tmp_path, data)
        assert result.returncode == 1
        assert "no plugin named 'flavor-vanila'; did you mean 'flavor-vanilla'?" in result.stderr


def test_a_group_spec_names_builtin_plugins_unless_a_cluster_file_says_more(
    tmp_path: Path,
) -> None:
    spec = file_group("g", 1)
    spec["Properties"]["Instance"] = {"Plugin": "instance-mine", "Properties": {"Cmd": ["true"]}}
    result = validate(tmp_path, spec)
    assert result.returncode == 1
    assert "Properties.Instance.Plugin: no plugin named 'instance-mine'" in result.stderr
    cluster = tmp_path / "cluster.json"
    cluster.write_text(
        json.dumps(
            {
                "Limits": {"MaxGroupSize": 2_000_000},
                "Plugins": [{"Name": "instance-mine", "Kind": "process"}],
            }
        )
    )
    ok = validate(tmp_path, spec, "--cluster", str(cluster))
    assert ok.returncode == 0, ok.stderr
    assert "a valid group spec for group 'g'" in ok.stdout
    spec["Properties"]["Instance"]["Properties"] = {"Cmd": "not a list"}
    spec["Properties"]["Allocation"] = {"Size": 1_500_000}  # within the cluster's own limit
    faulty = validate(tmp_path, spec, "--cluster", str(cluster))
    assert faulty.returncode == 1
    assert faulty.stderr.splitlines() == [
        f"{tmp_path / 'spec.json'}: Properties.Instance.Properties.Cmd: must be a list of strings,"
        " got a string"
    ]


def test_a_docker_spec_with_three_faults_reports_three(tmp_path: Path) -> None:
    spec = file_group("g", 1)
    spec["Properties"]["Instance"] = {
        "Plugin": "instance-docker",
        "Properties": {"Image": "busybox", "Memory": "lots", "CPUs": -1, "Mounts": "/tmp"},
    }
    result = validate(tmp_path, spec)
    assert result.returncode == 1
    faults = [line.split(": ", 2)[1] for line in result.stderr.splitlines()]
    prefix = "Properties.Instance.Properties."
    assert sorted(faults) == [prefix + "CPUs", prefix + "Memory", prefix + "Mounts"]


def test_without_a_docker_engine_the_image_is_a_warning_not_a_fault(tmp_path: Path) -> None:
    spec = file_group("g", 1)
    spec["Properties"]["Instance"] = {"Plugin": "instance-docker", "Properties": {"Image": "x"}}
    nowhere = f"unix://{tmp_path / 'no-engine.sock'}"
    result = validate(tmp_path, spec, DOCKER_HOST=nowhere)
    assert result.returncode == 0, result.stderr
    assert "warning: Properties.Instance.Properties: the image could not be checked" in (
        result.stderr
    )


def test_with_a_docker_engine_a_missing_image_is_a_fault(tmp_path: Path, engine: Any) -> None:
    spec = file_group("g", 1)
    missing = "infrakit-test/not-there:never"
    spec["Properties"]["Instance"] = {"Plugin": "instance-docker", "Properties": {"Image": missing}}
    result = validate(tmp_path, spec)
    assert result.returncode == 1
    assert f"Properties.Instance.Properties.Image: image {missing!r} is not on" in result.stderr


def test_a_commit_reports_every_plugin_fault_with_its_path(
    tmp_path: Path, runtime: Runtime
) -> None:
    spec = file_group("g", 1)
    spec["Properties"]["Instance"] = {"Plugin": "instance-process", "Properties": {"Cmd": [1, 2]}}
    spec["Properties"]["Flavor"]["Properties"] = {"Init": 42, "Tags": {"": "x"}}
    with pytest.raises(SpecError) as caught:
        runtime.commit(spec)
    assert sorted(path for path, _ in caught.value.problems) == [
        "Properties.Flavor.Properties.Init",
        "Properties.Flavor.Properties.Tags",
        "Properties.Instance.Properties.Cmd[0]",
        "Properties.Instance.Properties.Cmd[1]",
    ]
    path = tmp_path / "faulty.json"
    path.write_text(json.dumps(spec))
    result = run(runtime.home, "group", "commit", str(path))
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 4, result.stderr
    assert runtime.inspect() == []


def test_a_spec_too_large_to_send_says_so_and_the_limit(tmp_path: Path, runtime: Runtime) -> None:
    spec = file_group("g", 1)
    spec["Properties"]["Instance"]["Properties"] = {"Note": "x" * (1 << 20)}
    path = tmp_path / "big.json"
    path.write_text(json.dumps(spec))
    result = run(runtime.home, "group", "commit", str(path))
    assert result.returncode == 1
    assert "Error: message too large (" in result.stderr
    assert " bytes; at most 1048576)" in result.stderr
    assert "is `infrakit run` running?" not in result.stderr
    assert runtime.inspect() == []
