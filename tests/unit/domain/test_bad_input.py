"""Bad input never crashes, hangs or exhausts the runtime, and is never called valid when the
runtime would refuse it: sizes, counts, lengths and durations are bounded, documents are read
strictly, and every fault is named by its JSON path."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from infrakit.spec import (
    DEFAULT_MAX_GROUP_SIZE,
    MAX_GROUP_SIZE_CEILING,
    SpecError,
    groups_of,
    load_json,
    parse_cluster,
    parse_group,
)

GROUP: dict[str, Any] = {
    "ID": "g",
    "Properties": {
        "Allocation": {"Size": 1},
        "Instance": {"Plugin": "instance-file"},
        "Flavor": {"Plugin": "flavor-vanilla"},
    },
}


def group(**properties: Any) -> dict[str, Any]:
    data = copy.deepcopy(GROUP)
    data["Properties"].update(properties)
    return data


def faults(data: Any, **kwargs: Any) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        parse_group(data, **kwargs)
    return dict(caught.value.problems)


def cluster_faults(data: Any) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        parse_cluster(data)
    return dict(caught.value.problems)


# -- sizes and counts (issue 9, item 1) ---------------------------------------------------------


@pytest.mark.parametrize("size", [DEFAULT_MAX_GROUP_SIZE + 1, 1_000_000_000, 2**63 - 1, 2**63])
def test_a_huge_size_is_refused_before_any_logical_id_is_made(size: int) -> None:
    found = faults(group(Allocation={"Size": size}))
    assert found["Properties.Allocation.Size"] == (
        f"must be at most {DEFAULT_MAX_GROUP_SIZE} (the cluster file's Limits.MaxGroupSize),"
        f" got {size}"
    )


def test_a_size_beyond_64_bits_is_refused_with_its_path() -> None:
    assert faults(group(Allocation={"Size": 2**64})) == {
        "Properties.Allocation.Size": "an integer beyond 64 bits"
    }


def test_the_size_limit_is_the_callers() -> None:
    assert parse_group(group(Allocation={"Size": 5}), max_group_size=5).properties.allocation.size
    found = faults(group(Allocation={"Size": 6}), max_group_size=5)
    assert found["Properties.Allocation.Size"].startswith("must be at most 5 ")
    found = faults(group(Allocation={"LogicalIDs": ["a", "b", "c"]}), max_group_size=2)
    assert found["Properties.Allocation.LogicalIDs"].startswith("must be at most 2 IDs ")


def test_a_cluster_file_raises_the_group_size_limit_within_a_ceiling() -> None:
    big = group(Allocation={"Size": 2_000_000})
    assert "Groups[0].Properties.Allocation.Size" in cluster_faults({"Groups": [big]})
    config = parse_cluster({"Limits": {"MaxGroupSize": 2_000_000}, "Groups": [big]})
    assert config.limits.max_group_size == 2_000_000
    assert groups_of(config)[0].properties.allocation.size == 2_000_000
    too_high = cluster_faults({"Limits": {"MaxGroupSize": MAX_GROUP_SIZE_CEILING + 1}})
    assert too_high["Limits.MaxGroupSize"] == (
        f"must be <= {MAX_GROUP_SIZE_CEILING}, got {MAX_GROUP_SIZE_CEILING + 1}"
    )
    assert "Limits.MaxGroupSize" in cluster_faults({"Limits": {"MaxGroupSize": 0}})


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("Update", "MaxParallel", 2**62, "must be <= 10000000, got 4611686018427387904"),
        ("Health", "UnhealthyAfter", 10**12, "must be <= 1000000, got 1000000000000"),
        ("Health", "MaxUnhealthy", 10**12, "must be from 0 to 10000000, got 1000000000000"),
    ],
)
def test_counts_are_bounded(section: str, key: str, value: int, expected: str) -> None:
    assert faults(group(**{section: {key: value}}))[f"Properties.{section}.{key}"] == expected


# -- names and logical IDs (item 11) ------------------------------------------------------------


@pytest.mark.parametrize("group_id", ["g\n", "g\r\n", "\ng", "g\x00", "g" * 254])
def test_group_ids_with_a_trailing_newline_or_too_long_are_refused(group_id: str) -> None:
    data = group()
    data["ID"] = group_id
    assert "ID" in faults(data)


def test_a_253_character_group_id_is_fine() -> None:
    data = group()
    data["ID"] = "g" * 253
    assert parse_group(data).id == "g" * 253


def test_bad_logical_ids_are_all_named_by_their_index() -> None:
    ids = ["ok", "", "a\x00b", "x" * 100_000, "a\nb", "   ", "fine"]
    found = faults(group(Allocation={"LogicalIDs": ids}))
    prefix = "Properties.Allocation.LogicalIDs"
    assert found[f"{prefix}[1]"] == "a logical ID must not be blank"
    assert found[f"{prefix}[2]"].startswith("must not contain control characters")
    assert found[f"{prefix}[3]"] == "must be at most 253 characters, got 100000"
    assert found[f"{prefix}[4]"].startswith("must not contain control characters")
    assert found[f"{prefix}[5]"] == "a logical ID must not be blank"
    assert len(found) == 5
    assert all(len(fault) < 200 for fault in found.values()), "a fault must not echo 100,000"


def test_plugin_names_are_bounded_and_printable() -> None:
    found = faults(group(Instance={"Plugin": "instance-file\n"}, Flavor={"Plugin": "f" * 300}))
    assert found["Properties.Instance.Plugin"].startswith("must not contain control characters")
    assert found["Properties.Flavor.Plugin"] == "must be at most 253 characters, got 300"


def test_keys_equal_but_for_case_are_duplicates() -> None:
    found = faults(group(Allocation={"Size": 1, "size": 1_000}))
    assert found["Properties.Allocation.Size"] == (
        "'Size' and 'size' are the same key (keys match in any letter case)"
    )
    data = group()
    data["id"] = "other"
    assert faults(data)["ID"] == "'ID' and 'id' are the same key (keys match in any letter case)"


# -- durations (item 2, the input half) ---------------------------------------------------------

HUGE = ["999999999999h", "9223372036854775807ns", 1e308, "169h"]
NOT_DURATIONS = [float("nan"), float("inf"), -1, "-1s", True, "1" * 100 + "s"]


@pytest.mark.parametrize(
    ("section", "key", "most"),
    [
        ("Health", "Interval", "1h"),
        ("Health", "GracePeriod", "24h"),
        ("Update", "HealthyTimeout", "24h"),
    ],
)
@pytest.mark.parametrize("value", HUGE + NOT_DURATIONS)
def test_group_durations_are_bounded(section: str, key: str, most: str, value: Any) -> None:
    fault = faults(group(**{section: {key: value}}))[f"Properties.{section}.{key}"]
    if value in HUGE:
        assert fault.startswith(f"must be at most {most}, got ")
    else:
        expected = (
            "not a duration",
            "must not be negative",
            "must be a duration",
            "nan is",
            "inf is",
        )
        assert fault.startswith(expected)


@pytest.mark.parametrize(
    ("manager", "path", "fault"),
    [
        ({"LeaderPoll": "2m"}, "Manager.LeaderPoll", "must be at most 1m, got '2m'"),
        ({"LeaderPoll": 0}, "Manager.LeaderPoll", "must be at least 10ms, got 0"),
        ({"Leader": {"TTL": "2h"}}, "Manager.Leader.TTL", "must be at most 1h, got '2h'"),
        ({"Store": {"TTL": 1e308}}, "Manager.Store.TTL", "must be at most 1h, got 1e+308"),
        ({"Leader": {"TTL": "1s"}}, "Manager.Leader.TTL", "must be at least 2s, got '1s'"),
    ],
)
def test_manager_durations_are_bounded(manager: dict[str, Any], path: str, fault: str) -> None:
    assert cluster_faults({"Manager": manager})[path] == fault


# -- values an embedding program may pass (Runtime.commit) -------------------------------------


def test_python_values_that_are_not_json_are_refused_with_their_path() -> None:
    deep: Any = "leaf"
    for _ in range(100):
        deep = {"d": deep}
    found = faults(
        group(
            Instance={
                "Plugin": "instance-file",
                "Properties": {"nan": float("nan"), "s": "\ud800", "set": {1}, "deep": deep},
            }
        )
    )
    where = "Properties.Instance.Properties"
    assert found[f"{where}.nan"] == "nan is not a JSON number"
    assert found[f"{where}.s"] == "not valid Unicode (a lone surrogate)"
    assert found[f"{where}.set"] == "not a JSON value (set)"
    assert any(path.startswith(f"{where}.deep.d") for path in found)


# -- documents (item 11) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        (b"[" * 1000 + b"]" * 1000, "nested deeper than 64 levels"),
        (b'{"ID": "g\xff"}', "not valid UTF-8 (invalid start byte) at line 1 column 10"),
        (b'{"ID": ' + b"1" * 4301 + b"}", "a number too large"),
        (b'{"ID": NaN}', "NaN and Infinity are not JSON numbers"),
        (b'{"ID": "\\ud800"}', "surrogate"),
    ],
)
def test_bad_documents_are_a_spec_error_not_a_traceback(
    tmp_path: Path, text: bytes, fault: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(text)
    with pytest.raises(SpecError) as caught:
        load_json(path)
    assert caught.value.source == str(path)
    ((_, message),) = caught.value.problems
    assert fault in message


def test_duplicate_keys_in_a_file_are_named_by_path(tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    text = json.dumps(GROUP).replace('"Size": 1', '"Size": 1, "Size": 1000000000')
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_json(path)
    assert caught.value.problems == [
        ("Properties.Allocation.Size", "given more than once in this object")
    ]


def test_an_oversized_document_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as file:
        file.truncate(64 << 20)  # sparse: 64 MiB of NULs, costs no disk
    with pytest.raises(SpecError, match="too large"):
        load_json(path)


def test_a_builtin_plugin_named_in_the_wrong_role_is_refused_when_the_cluster_is_read() -> None:
    """The manager would refuse the commit later; reading the file says so at once."""
    spec = group(Flavor={"Plugin": "instance-file"}, Instance={"Plugin": "mine/x"})
    found = cluster_faults({"Plugins": [{"Name": "mine", "Kind": "vanilla"}], "Groups": [spec]})
    assert found == {
        "Groups[0].Properties.Instance.Plugin": (
            "'mine/x' is a flavor plugin, not an instance plugin"
        ),
        "Groups[0].Properties.Flavor.Plugin": (
            "'instance-file' is an instance plugin, not a flavor plugin"
        ),
    }
    remote = {"Name": "mine", "Endpoint": "ipc:///nowhere"}  # its role is known only later
    parse_cluster({"Plugins": [remote], "Groups": [group(Instance={"Plugin": "mine"})]})
