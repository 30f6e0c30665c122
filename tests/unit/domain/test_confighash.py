"""The config hash matches Go InfraKit's byte for byte (vectors computed with Go 1.19's
encoding/json, using InfraKit's stableFormat: Marshal, Unmarshal into interface{}, MarshalIndent
with prefix and indent of two spaces; see docs/config-hash.md)."""

import json
from pathlib import Path

from infrakit.confighash import canonical_json, config_hash, legacy_config_hash
from infrakit.spec import parse_group

HERE = Path(__file__).parent


def test_hash_of_tricky_properties_matches_go() -> None:
    data = json.loads((HERE / "go_hash_input.json").read_text())
    assert config_hash(data["Instance"], data["Flavor"]) == "z3omlpvuvqcth3sw2fru7fo7noq7kf24"


def test_canonical_form_matches_go() -> None:
    data = json.loads((HERE / "go_hash_input.json").read_text())
    text = canonical_json(data["Instance"])
    # Every line after the first starts with the two-space prefix; Go escapes <, > and &.
    assert text.splitlines()[1] == '    "Plugin": "instance-file",'
    assert '"a\\u003cb \\u0026 c\\u003ed \\u2028 é \\u0001 tab\\t"' in text
    assert "        1e+21,\n        1e-7,\n        3,\n        123456789012345680000," in text
    assert text.endswith("\n  }")


def test_infrakit_tutorial_cattle_hash_matches_go() -> None:
    spec = parse_group(
        {
            "ID": "cattle",
            "Properties": {
                "Allocation": {"Size": 5},
                "Instance": {
                    "Plugin": "instance-file",
                    "Properties": {"Note": "Instance properties version 1.0"},
                },
                "Flavor": {
                    "Plugin": "flavor-vanilla",
                    "Properties": {
                        "Init": ["docker pull nginx:alpine", "docker run -d -p 80:80 nginx-alpine"]
                    },
                },
            },
        }
    )
    assert spec.config_hash == "x6qw5avqzwkvov3roxmw6fxqdsfrroi3"


def test_absent_properties_hash_as_null_like_go() -> None:
    assert config_hash(
        {"Plugin": "instance-process"}, {"Plugin": "flavor-vanilla", "Properties": None}
    ) != config_hash({"Plugin": "instance-process", "Properties": None}, {"Plugin": "x"})
    spec = parse_group(
        {
            "ID": "g",
            "Properties": {
                "Allocation": {"Size": 1},
                "Instance": {"Plugin": "instance-process"},
                "Flavor": {"Plugin": "flavor-vanilla"},
            },
        }
    )
    assert spec.config_hash == "uowpiagav3qusx4h7qdffdxi5fp2vpu5"


def test_resize_does_not_change_hash_but_properties_do() -> None:
    def group(size: int, note: str) -> str:
        return parse_group(
            {
                "ID": "g",
                "Properties": {
                    "Allocation": {"Size": size},
                    "Instance": {"Plugin": "instance-file", "Properties": {"Note": note}},
                    "Flavor": {"Plugin": "flavor-vanilla"},
                },
            }
        ).config_hash

    assert group(3, "a") == group(30, "a")
    assert group(3, "a") != group(3, "b")


def test_key_order_does_not_matter_and_legacy_encoding_differs() -> None:
    a = {"Plugin": "p", "Properties": {"x": 1, "y": [1, {"b": 2, "a": 1}]}}
    b = {"Properties": {"y": [1, {"a": 1, "b": 2}], "x": 1}, "Plugin": "p"}
    assert config_hash(a, a) == config_hash(b, b)
    legacy = legacy_config_hash(a, a)
    assert legacy.endswith("=") and legacy != config_hash(a, a)
