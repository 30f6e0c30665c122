"""`Manager.Metrics`: a HOST:PORT, loopback unless `Insecure` says otherwise; a bad one is one
line naming its path."""

from __future__ import annotations

from typing import Any

import pytest

from infrakit.spec import SpecError, parse_cluster


def problems(manager: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as caught:
        parse_cluster({"Manager": manager})
    return caught.value.problems


@pytest.mark.parametrize("address", ["127.0.0.1:9464", "localhost:9464", "[::1]:9464"])
def test_loopback_is_served(address: str) -> None:
    assert parse_cluster({"Manager": {"Metrics": address}}).manager.metrics == address


def test_metrics_are_off_by_default() -> None:
    assert parse_cluster({}).manager.metrics is None


@pytest.mark.parametrize("address", ["0.0.0.0:9464", "10.0.0.5:9464", "example.org:9464"])
def test_beyond_loopback_needs_insecure(address: str) -> None:
    found = problems({"Metrics": address})
    assert [path for path, _ in found] == ["Manager.Metrics"]
    assert "Manager.Insecure" in found[0][1]
    insecure = parse_cluster({"Manager": {"Insecure": True, "Metrics": address}})
    assert insecure.manager.metrics == address


@pytest.mark.parametrize("address", ["9464", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000"])
def test_a_malformed_address_names_its_path(address: str) -> None:
    found = problems({"Metrics": address})
    assert [path for path, _ in found] == ["Manager.Metrics"]
    assert "HOST:PORT" in found[0][1]
