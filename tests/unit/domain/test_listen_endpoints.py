"""Manager.Listen: a tcp:// endpoint beyond loopback needs CURVE or an explicit, loud opt-in
(Manager.Insecure), and the leader's advertised location is one others can connect to."""

from __future__ import annotations

from typing import Any

import pytest

from infrakit.endpoints import connectable, exposed, wildcard
from infrakit.spec import SpecError, parse_cluster

CURVE = {"SecretKey": "server.key_secret", "AuthorizedKeys": "clients"}


def refused(manager: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as caught:
        parse_cluster({"Manager": manager})
    return caught.value.problems


@pytest.mark.parametrize(
    "endpoint",
    [
        "tcp://*:24871",
        "tcp://0.0.0.0:24871",
        "tcp://[::]:24871",
        "tcp://10.0.0.5:24871",
        "tcp://192.168.1.7:0",
        "tcp://eth0:24871",
        "tcp://example.org:24871",
        "tcp://[2001:db8::1]:24871",
    ],
)
def test_a_tcp_endpoint_beyond_loopback_without_curve_is_refused_with_its_path(
    endpoint: str,
) -> None:
    """The issue's case: tcp://*:24871 served every interface, and a stranger ran `touch`."""
    problems = refused({"Listen": ["ipc:///tmp/x", endpoint]})

    assert [path for path, _ in problems] == ["Manager.Listen[1]"]
    assert "Manager.Curve" in problems[0][1] and "Manager.Insecure" in problems[0][1]


def test_a_single_listen_string_is_refused_with_the_path_of_its_only_entry() -> None:
    assert [path for path, _ in refused({"Listen": "tcp://*:1"})] == ["Manager.Listen[0]"]


@pytest.mark.parametrize(
    "endpoint",
    ["tcp://127.0.0.1:24871", "tcp://127.8.9.10:1", "tcp://[::1]:24871", "tcp://localhost:0"],
)
def test_loopback_needs_no_curve(endpoint: str) -> None:
    config = parse_cluster({"Manager": {"Listen": [endpoint]}})
    assert config.manager.listen == (endpoint,)


def test_curve_or_insecure_lets_any_interface_listen() -> None:
    with_curve = parse_cluster({"Manager": {"Listen": ["tcp://*:1"], "Curve": CURVE}})
    insecure = parse_cluster({"manager": {"listen": ["tcp://*:1"], "insecure": True}})

    assert with_curve.manager.curve is not None and not with_curve.manager.insecure
    assert insecure.manager.insecure and insecure.manager.curve is None


def test_insecure_must_be_a_boolean() -> None:
    problems = refused({"Listen": ["tcp://127.0.0.1:1"], "Insecure": "yes"})
    assert [path for path, _ in problems] == ["Manager.Insecure"]


@pytest.mark.parametrize(
    "advertise", ["tcp://10.0.0.5:24871", "tcp://manager-1.example.org:24871", "ipc:///x/group"]
)
def test_advertise_names_where_others_connect(advertise: str) -> None:
    config = parse_cluster(
        {"Manager": {"Listen": ["tcp://*:24871"], "Curve": CURVE, "Advertise": advertise}}
    )
    assert config.manager.advertise == advertise


@pytest.mark.parametrize(
    "advertise", ["tcp://*:24871", "tcp://0.0.0.0:24871", "tcp://[::]:1", "http://x:1", ""]
)
def test_an_advertised_location_nobody_can_connect_to_is_refused(advertise: str) -> None:
    problems = refused({"Listen": ["tcp://127.0.0.1:1"], "Advertise": advertise})
    assert [path for path, _ in problems] == ["Manager.Advertise"]


@pytest.mark.parametrize("endpoint", ["tcp://*:24871", "tcp://0.0.0.0:24871", "tcp://[::]:24871"])
def test_a_wildcard_bind_is_advertised_as_this_hosts_name_or_address(endpoint: str) -> None:
    location = connectable(endpoint)

    assert not wildcard(location)
    assert location.startswith("tcp://") and location.endswith(":24871")
    host = location[len("tcp://") : -len(":24871")].strip("[]")
    assert host and host not in ("*", "0.0.0.0", "::")


@pytest.mark.parametrize("endpoint", ["tcp://10.0.0.5:1", "tcp://127.0.0.1:2", "ipc:///x/group"])
def test_a_bind_to_one_address_is_advertised_as_it_is(endpoint: str) -> None:
    assert connectable(endpoint) == endpoint


def test_ipc_is_never_exposed() -> None:
    assert not exposed("ipc:///tmp/group")
    assert exposed("tcp://lo:1"), "an interface name cannot be checked, so it counts as exposed"
