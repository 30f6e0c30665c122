"""Property: no malformed spec or cluster file crashes, hangs or changes anything.

Hypothesis makes bad documents (wrong types, huge numbers, deep nesting, bad strings,
duplicate keys and bad UTF-8 as raw JSON text, over-long strings, bad durations...) from a
valid one, and throws each at `infrakit validate`, `infrakit group commit` (with and without
`--pretend`) against one running runtime, and `Runtime.commit`. Each call must return within
its deadline, refuse (non-zero exit, or `SpecError`), print no traceback, and leave the
runtime's groups and its store exactly as they were.
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pykka
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import file_group, wait_for

from infrakit import Runtime
from infrakit.cli.main import main
from infrakit.spec import SpecError, parse_cluster

T = TypeVar("T")
DEADLINE = 60.0  # seconds for any one call: generous, it only has to tell a hang apart
BASE: dict[str, Any] = file_group("g", 2)
BASE["Properties"]["Flavor"]["Properties"] = {"Init": ["true"], "Tags": {"tier": "web"}}


@dataclass(frozen=True)
class Bad:
    """A bad document as JSON text (for files) and as a Python value (for Runtime.commit)."""

    text: bytes
    value: Any


class _Raw:
    """JSON text spliced in as is (NaN, a duplicate key...), where a value would go."""

    def __init__(self, text: str, value: Any) -> None:
        self.text = text
        self.value = value


def nested(depth: int) -> _Raw:
    """Lists `depth` deep, as text and value (built without recursion)."""
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return _Raw("[" * depth + '"leaf"' + "]" * depth, value)


# Values that are wrong wherever they go in a group spec (as one value, or a raw piece of text).
ANYWHERE = st.sampled_from(
    [
        _Raw("NaN", float("nan")),
        _Raw("Infinity", float("inf")),
        _Raw("-Infinity", float("-inf")),
        _Raw("1" * 4301, 10**4300),
        _Raw("18446744073709551616", 2**64),
        _Raw('"\\ud800"', "\ud800"),
        _Raw('"\\udc00x"', "\udc00x"),
        nested(70),
        nested(1100),
    ]
)
# Per place: values that are wrong there.
WRONG: dict[str, list[Any]] = {
    "ID": ["", "g\n", "g\r\n", " ", "a b", "../etc", "x" * 254, "g\x00", 5, None, [], {}],
    "Properties.Allocation.Size": [-1, 2**63, 1_000_000_000, "3", True, 1.5, [1], {}],
    "Properties.Allocation.LogicalIDs": [
        ["a", "a"],
        [""],
        ["   "],
        ["a\x00b"],
        ["a\nb"],
        ["x" * 300],
        ["x" * 100_000],
        [1],
        "a",
        {},
    ],
    "Properties.Health.Interval": ["999999999999h", "9223372036854775807ns", 1e308, 0, "1ms"],
    "Properties.Health.GracePeriod": ["25h", -1, "-1s", "2 parsecs", "", True, "1" * 200 + "s"],
    "Properties.Health.UnhealthyAfter": [0, 10**12, "3", 2.5],
    "Properties.Health.MaxUnhealthy": ["140%", -1, 10**12, "x", "40%%", []],
    "Properties.Update.HealthyTimeout": ["1000h", 1e300, -0.5, "h"],
    "Properties.Update.MaxParallel": [0, 2**62, "1"],
    "Properties.Update.OnFailure": ["explode", "", 1],
    "Properties.Instance.Plugin": ["", "instance-nowhere", "instance-fil", 3, "x\n", "a" * 300],
    "Properties.Flavor.Plugin": ["flavor-vanila", "instance-file", None],
    "Properties.Flavor.Properties.Init": [42, "echo", [1], ["\x00"], ["x" * 70_000]],
    "Properties.Flavor.Properties.Tags": [
        {"": "v"},
        {"a=b": "v"},
        {"a\x00": "v"},
        {"t" * 100_000: "v"},
        {"k": 1},
        {"k": "v\x00"},
        [],
    ],
    "Properties.Flavor.Properties.Helth": [{"Command": "true"}],
    "Properties.Flavor.Properties.Health": [{"Timeout": "1000h"}, {"Timeout": 0}, "yes"],
    "Properties.Allocation.Sise": [3],
    "Properties.Extra": [{}],
}
# Pieces of text that break a document wherever they go (applied after serialising).
TEXT_FAULTS: list[Callable[[bytes], bytes]] = [
    lambda t: t.replace(b'"Size": 2', b'"Size": 2, "Size": 1000000000', 1),
    lambda t: t.replace(b'"Size": 2', b'"Size": 2, "size": 3', 1),
    lambda t: t.replace(b'"tier"', b'"tier": "x", "tier"', 1),
    lambda t: t.replace(b'"ID": "g', b'"ID": "g\xff', 1),
    lambda t: t.replace(b'"web"', b'"w\xc3"', 1),
    lambda t: b"\xef\xbb\xbf" + t,
    lambda t: t[: len(t) // 2],
    lambda t: t + b" trailing",
    lambda t: t.replace(b":", b"", 1),
]


def place(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = data
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[last] = value


def render(value: Any) -> tuple[str, Any]:
    """(JSON text, Python value) of a document that may hold `_Raw` pieces."""
    if isinstance(value, _Raw):
        return value.text, value.value
    if isinstance(value, dict):
        parts, out = [], {}
        for key, item in value.items():
            text, plain = render(item)
            parts.append(f"{json.dumps(key)}: {text}")
            out[key] = plain
        return "{" + ", ".join(parts) + "}", out
    if isinstance(value, list):
        rendered = [render(item) for item in value]
        return "[" + ", ".join(t for t, _ in rendered) + "]", [v for _, v in rendered]
    return json.dumps(value), value


@st.composite
def bad_specs(draw: st.DrawFn) -> Bad:
    data = copy.deepcopy(BASE)
    kind = draw(st.sampled_from(["wrong", "anywhere", "text", "not-an-object", "mixed"]))
    if kind == "not-an-object":
        value = draw(st.sampled_from([[], [BASE], 3, "spec", None, True]))
        return Bad(json.dumps(value).encode(), value)
    if kind in ("wrong", "mixed"):
        for path in draw(st.lists(st.sampled_from(sorted(WRONG)), min_size=1, max_size=3)):
            if path.endswith("LogicalIDs"):
                data["Properties"]["Allocation"].pop("Size", None)
            place(data, path, draw(st.sampled_from(WRONG[path])))
    if kind in ("anywhere", "mixed"):
        path = draw(st.sampled_from(["ID", "Properties.Allocation.Size", *sorted(WRONG)]))
        place(data, path, draw(ANYWHERE))
    text, value = render(data)
    raw = text.encode("utf-8", "surrogatepass")
    if kind == "text":
        raw = draw(st.sampled_from(TEXT_FAULTS))(raw)
        # The same fault as a value: what a lenient reader would make of it, still refused.
        value = copy.deepcopy(value)
        place(value, "Properties.Allocation.Size", 1_000_000_000)
    return Bad(raw, value)


@st.composite
def bad_clusters(draw: st.DrawFn) -> Bad:
    wrong = {
        "Limits.MaxGroupSize": [0, 10**8, 2**64, "x"],
        "Manager.LeaderPoll": ["2m", 0, float("nan"), "999999999999h"],
        "Manager.Leader.TTL": ["1s", "2h", 1e308],
        "Manager.Store.Kind": ["zookeeper"],
        "Manager.Listen": ["http://x", ["tcp://a", 3]],
        "Plugins": [[{"Name": "x"}], [{"Name": "a\n", "Kind": "file"}], "p"],
        "Unknown": [1],
    }
    cluster: dict[str, Any] = {"Groups": [copy.deepcopy(BASE)]}
    spec = Bad(b"{}", {})
    if draw(st.sampled_from(["cluster", "group"])) == "cluster":
        path = draw(st.sampled_from(sorted(wrong)))
        place(cluster, path, draw(st.sampled_from(wrong[path])))
    else:
        spec = draw(bad_specs())
        cluster["Groups"] = [_Raw("SPEC", spec.value)]
    text, value = render(cluster)
    return Bad(text.encode("utf-8", "surrogatepass").replace(b"SPEC", spec.text), value)


def within_deadline(call: Callable[[], T]) -> T:
    """`call()`, failing the test if it does not return in time (a hang)."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        return pool.submit(call).result(timeout=DEADLINE)
    except concurrent.futures.TimeoutError:
        pytest.fail(f"no answer within {DEADLINE}s: a hang")
    finally:
        pool.shutdown(wait=False)


def cli(*args: str) -> Result:
    result = within_deadline(lambda: CliRunner().invoke(main, list(args)))
    output = result.output
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception),
        output,
    )
    assert result.exit_code != 0, output
    assert output.strip(), "a refusal says why"
    return result


@dataclass
class World:
    runtime: Runtime
    endpoint: str
    files: Path

    def snapshot(self) -> tuple[Any, bytes]:
        store = self.runtime.home / "configs" / "global.config"
        return self.runtime.inspect(), store.read_bytes()


@pytest.fixture(autouse=True)
def no_actor_left() -> Iterator[None]:
    """The runtime lives for the whole module here; `world` checks that it left nothing."""
    yield


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("home")
    runtime = Runtime(home=home).start()
    try:
        assert runtime.is_leader()
        endpoint = f"ipc://{home / 'plugins' / 'group'}"
        wait_for(lambda: (home / "plugins" / "group").exists(), 10, "the Group API socket")
        runtime.commit(file_group("keep", 1))  # something that must stay as it is
        runtime.wait_converged("keep")
        yield World(runtime, endpoint, tmp_path_factory.mktemp("files"))
    finally:
        runtime.stop()
    assert pykka.ActorRegistry.get_all() == [], "the runtime left actors running"


PROPERTY = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY
@given(bad=bad_specs())
def test_no_bad_group_spec_crashes_hangs_or_changes_anything(world: World, bad: Bad) -> None:
    before = world.snapshot()
    path = world.files / "spec.json"
    path.write_bytes(bad.text)
    cli("validate", str(path))
    cli("group", "commit", str(path), "--pretend", "--endpoint", world.endpoint)
    cli("group", "commit", str(path), "--endpoint", world.endpoint)
    for pretend in (True, False):
        with pytest.raises(SpecError):
            within_deadline(lambda pretend=pretend: world.runtime.commit(bad.value, pretend))
    assert world.snapshot() == before


@PROPERTY
@given(bad=bad_clusters())
def test_no_bad_cluster_file_crashes_hangs_or_is_called_valid(world: World, bad: Bad) -> None:
    """`validate` refuses it; the runtime refuses it when it reads it, or each bad group when
    it commits it."""
    path = world.files / "cluster.json"
    path.write_bytes(bad.text)
    cli("validate", str(path))
    try:
        config = within_deadline(lambda: parse_cluster(bad.value))
    except SpecError:
        return
    for group in config.groups:  # what the runtime checks only when it commits them
        with pytest.raises(SpecError):
            within_deadline(lambda group=group: world.runtime.commit(group, pretend=True))
