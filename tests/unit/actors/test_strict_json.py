"""Strict JSON: what orjson or the standard library would let through, and a consumer later
trips over, is refused with its JSON path (or its line and column)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.strict_json import MAX_DEPTH, JsonError, loads, problems


def faults(data: bytes | str, **kwargs: Any) -> list[tuple[str, str]]:
    with pytest.raises(JsonError) as caught:
        loads(data, **kwargs)
    return caught.value.problems


def test_duplicate_keys_are_refused_at_every_depth_not_last_one_wins() -> None:
    assert faults(b'{"a": 1, "a": 2}') == [("a", "given more than once in this object")]
    assert faults(b'{"x": {"Size": 1, "Size": 2}, "y": [{"k": 0, "k": 0}]}') == [
        ("x.Size", "given more than once in this object"),
        ("y[0].k", "given more than once in this object"),
    ]
    # A repeated object dropped by its own duplicate must not be mistaken for another one.
    assert faults(b'{"a": {"x": 1, "x": 2}, "a": 3, "b": {"y": 1}}') == [
        ("a", "given more than once in this object")
    ]


@pytest.mark.parametrize(
    "literal", [b"18446744073709551616", b"-9223372036854775809", b"1" + b"0" * 300]
)
def test_integers_beyond_64_bits_are_refused_not_turned_into_floats(literal: bytes) -> None:
    (problem,) = faults(b'{"Size": ' + literal + b"}")
    assert problem[0] == "Size"
    assert "beyond 64 bits" in problem[1]


def test_64_bit_integers_at_both_ends_are_kept_exactly() -> None:
    assert loads(b"[18446744073709551615, -9223372036854775808]") == [
        18446744073709551615,
        -9223372036854775808,
    ]


def test_an_integer_over_4300_digits_is_a_clear_fault_not_a_value_error() -> None:
    ((path, fault),) = faults(b'{"a": ' + b"9" * 5000 + b"}")
    assert path == ""
    assert "number too large" in fault and "line 1 column" in fault


@pytest.mark.parametrize(
    ("depth", "ok"), [(MAX_DEPTH, True), (MAX_DEPTH + 1, False), (1_000, False), (100_000, False)]
)
def test_nesting_is_bounded_without_recursion_errors(depth: int, ok: bool) -> None:
    text = b"[" * depth + b"]" * depth
    if ok:
        assert loads(text) is not None
        return
    ((_, fault),) = faults(text)
    assert f"nested deeper than {MAX_DEPTH} levels" in fault


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_literals_are_refused(literal: bytes) -> None:
    ((_, fault),) = faults(b'{"a": ' + literal + b"}")
    assert "NaN and Infinity are not JSON numbers at line 1 column" in fault


@pytest.mark.parametrize("text", [b'{"a": "\\ud800"}', b'{"\\udc00": 1}', b'["\\ud800\\u0041"]'])
def test_lone_surrogates_are_refused_in_keys_and_values(text: bytes) -> None:
    ((_, fault),) = faults(text)
    assert "surrogate" in fault


def test_invalid_utf8_says_where() -> None:
    ((_, fault),) = faults(b'{\n  "ID": "g\xff"}')
    assert fault == "not valid UTF-8 (invalid start byte) at line 2 column 11"


def test_a_byte_order_mark_is_named() -> None:
    ((_, fault),) = faults(b'\xef\xbb\xbf{"a": 1}')
    assert "byte order mark" in fault


def test_python_values_are_checked_by_the_same_rules() -> None:
    found = problems(
        {"n": float("nan"), "s": "\ud800", 1: 2, "set": {1}, "big": 2**64, "deep": [[[[]]]]},
        max_depth=3,
        prefix="Spec",
    )
    assert found == [
        ("Spec", "keys must be strings, not int"),
        ("Spec.n", "nan is not a JSON number"),
        ("Spec.s", "not valid Unicode (a lone surrogate)"),
        ("Spec.set", "not a JSON value (set)"),
        ("Spec.big", "an integer beyond 64 bits"),
        ("Spec.deep[0][0]", "nested deeper than 3 levels"),
    ]


def test_a_cycle_in_a_python_value_is_refused_not_followed_for_ever() -> None:
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    assert problems(cycle)[0][1] == f"nested deeper than {MAX_DEPTH} levels"


def test_faults_are_listed_up_to_a_bound() -> None:
    many = b"{" + b",".join(b'"k%d": 1, "k%d": 2' % (i, i) for i in range(500)) + b"}"
    found = faults(many)
    assert len(found) == 51
    assert found[-1] == ("", "(more faults not shown)")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_values, st.booleans())
def test_valid_documents_read_the_same_as_the_standard_library(value: Any, pretty: bool) -> None:
    """Both the fast path (orjson's own bytes) and the careful one (any other spelling)."""
    text = json.dumps(value, indent=2) if pretty else orjson.dumps(value)
    assert loads(text) == json.loads(text)
