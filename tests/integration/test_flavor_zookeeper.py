"""The zookeeper flavor: its properties and prepared Init (run by a real shell), its health checks
against real sockets, and a real three-member ZooKeeper ensemble on 127.0.0.1 run by the runtime
on the process instance plugin (the example cluster file), which heals a SIGKILLed leader.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import free_port, recorded_pids, require, run_cli, wait_for

from infrakit import Runtime
from infrakit.plugins.flavor.zookeeper import (
    DEBIAN_JAR,
    TAG_CLIENT,
    TAG_MYID,
    ZooKeeperFlavor,
    client_address,
    connect_string,
    four_letter_word,
    parse_srvr,
)
from infrakit.spi.errors import PluginError, ValidationError
from infrakit.spi.flavor import AllocationMethod, Health
from infrakit.spi.instance import TAG_LOGICAL_ID, Description, Spec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "zookeeper.json"
THREE = AllocationMethod(logical_ids=("zk1", "zk2", "zk3"))
ONE = AllocationMethod(logical_ids=("solo",))
STRIDE = {"PortStride": 10}


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("properties", "allocation", "path", "words"),
    [
        (None, AllocationMethod(size=3), "Allocation.LogicalIDs", "needs Allocation.LogicalIDs"),
        (None, AllocationMethod(logical_ids=()), "Allocation.LogicalIDs", "at least one"),
        (STRIDE, AllocationMethod(logical_ids=("a", "b")), "Allocation.LogicalIDs", "odd"),
        (STRIDE, AllocationMethod(logical_ids=("a", "b", "a")), "Allocation.LogicalIDs", "unique"),
        (None, THREE, "PortStride", "set PortStride"),
        (
            {"Host": "{LogicalID}"},
            AllocationMethod(logical_ids=("a", "b c", "d")),
            "Allocation.LogicalIDs[1]",
            "host name",
        ),
        ({"Host": "bad host"}, ONE, "Host", "host name"),
        ({"Host": 7}, ONE, "Host", "host name"),
        ({"ClientPort": 0}, ONE, "ClientPort", "from 1 to 65535"),
        ({"PeerPort": 70000}, ONE, "PeerPort", "from 1 to 65535"),
        ({"ElectionPort": "3888"}, ONE, "ElectionPort", "integer"),
        ({"ClientPort": True}, ONE, "ClientPort", "integer"),
        ({"PortStride": -1}, ONE, "PortStride", "from 0"),
        ({"ClientPort": 65530, "PortStride": 10}, THREE, "ClientPort", "> 65535"),
        ({"ClientPort": 2181, "PeerPort": 2182, "PortStride": 1}, THREE, "ClientPort", "PeerPort"),
        ({"TickTime": 0}, ONE, "TickTime", "from 1"),
        ({"DataDir": ""}, ONE, "DataDir", "non-empty"),
        ({"Java": "a\nb"}, ONE, "Java", "newline"),
        ({"JvmFlags": "-Xmx1g"}, ONE, "JvmFlags", "list"),
        ({"JvmFlags": ["-Xmx1g", 2]}, ONE, "JvmFlags[1]", "string"),
        ({"ZooKeeperHome": "/opt/zk", "Classpath": "x.jar"}, ONE, "Classpath", "not both"),
        ({"Members": 3}, ONE, "Members", "unknown key"),
        ("zk", ONE, "", "object"),
    ],
)
def test_validate_refuses_with_the_path(
    properties: Any, allocation: AllocationMethod, path: str, words: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        ZooKeeperFlavor().validate(properties, allocation)
    assert caught.value.path == path
    assert words in caught.value.reason


def test_validate_accepts_case_insensitive_keys_and_a_single_member() -> None:
    flavor = ZooKeeperFlavor()
    flavor.validate(None, ONE)
    flavor.validate({"portstride": 10, "clientport": 21810, "HOST": "127.0.0.1"}, THREE)
    ips = AllocationMethod(logical_ids=("10.0.0.1", "10.0.0.2", "10.0.0.3"))
    flavor.validate({"Host": "{LogicalID}"}, ips)
    flavor.validate({"Host": "{LogicalID}"}, THREE)  # zk1, zk2, zk3 are host names too
    assert connect_string({"Host": "{LogicalID}"}, ips) == (
        "10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181"
    )
    assert connect_string(STRIDE, THREE) == "127.0.0.1:2181,127.0.0.1:2191,127.0.0.1:2201"


# -- prepare: the Init, run by a real shell with a stand-in for java ---------------------------


def run_init(spec: Spec, cwd: Path) -> str:
    """Run a prepared Init as the process plugin does (sh -c in its directory); its output."""
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["/bin/sh", "-c", spec.init],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "INFRAKIT_LOGICAL_ID": spec.logical_id or ""},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_prepare_writes_zoo_cfg_myid_and_execs_the_server_in_the_foreground(
    tmp_path: Path,
) -> None:
    properties = {
        "ClientPort": 21810,
        "PeerPort": 28880,
        "ElectionPort": 29880,
        "PortStride": 10,
        "TickTime": 500,
        "Java": "echo",  # the "server" prints its command line instead of running
        "JvmFlags": ["-Xmx64m", "-Dx=a b"],
        "Classpath": "/zk/zookeeper.jar:/zk/lib/*",
    }
    spec = Spec(logical_id="zk2", init="echo before", tags={"infrakit.group": "zk"})
    prepared = ZooKeeperFlavor().prepare(properties, spec, THREE)
    assert prepared.tags == {
        "infrakit.group": "zk",
        TAG_MYID: "2",
        TAG_CLIENT: "127.0.0.1:21820",
    }
    assert prepared.init.startswith("echo before\n")
    assert prepared.logical_id == "zk2"

    member = tmp_path / "member"
    out = run_init(prepared, member).splitlines()
    assert out[0] == "before"
    cfg = (member / "zoo.cfg").read_text().splitlines()
    assert [line for line in cfg if not line.startswith("#")] == [
        "tickTime=500",
        "initLimit=10",
        "syncLimit=5",
        "clientPort=21820",
        "clientPortAddress=127.0.0.1",
        "4lw.commands.whitelist=ruok,srvr,mntr",
        "admin.enableServer=false",
        "server.1=127.0.0.1:28880:29880",
        "server.2=127.0.0.1:28890:29890",
        "server.3=127.0.0.1:28900:29900",
        f"dataDir={member / 'data'}",
    ]
    assert (member / "data" / "myid").read_text() == "2\n"
    command = out[1]
    assert command.endswith(
        "-Xmx64m -Dx=a b -cp /zk/zookeeper.jar:/zk/lib/* "
        f"org.apache.zookeeper.server.quorum.QuorumPeerMain {member / 'zoo.cfg'}"
    )


def test_prepare_with_hosts_from_logical_ids_and_an_absolute_data_dir(tmp_path: Path) -> None:
    ips = AllocationMethod(logical_ids=("10.0.0.1", "10.0.0.2", "10.0.0.3"))
    data = tmp_path / "var" / "zk data"
    properties = {"Host": "{LogicalID}", "DataDir": str(data), "Java": "true"}
    prepared = ZooKeeperFlavor().prepare(properties, Spec(logical_id="10.0.0.3"), ips)
    assert prepared.tags == {TAG_MYID: "3", TAG_CLIENT: "10.0.0.3:2181"}
    run_init(prepared, tmp_path / "cwd")
    cfg = (tmp_path / "cwd" / "zoo.cfg").read_text()
    assert "clientPort=2181\nclientPortAddress=10.0.0.3\n" in cfg
    assert "server.1=10.0.0.1:2888:3888\nserver.2=10.0.0.2:2888:3888\n" in cfg
    assert f"dataDir={data}\n" in cfg
    assert (data / "myid").read_text() == "3\n"


def test_the_init_fails_clearly_without_java_or_zookeeper(tmp_path: Path) -> None:
    flavor = ZooKeeperFlavor()
    for properties, words in (
        ({"Java": "no-such-java-here"}, "no java command"),
        ({"ZooKeeperHome": str(tmp_path / "nowhere")}, "has no lib directory"),
    ):
        prepared = flavor.prepare(properties, Spec(logical_id="solo"), ONE)
        done = subprocess.run(
            ["/bin/sh", "-c", prepared.init],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 127
        assert words in done.stderr


def test_prepare_refuses_a_logical_id_outside_the_ensemble() -> None:
    with pytest.raises(PluginError, match="'zk9' is not a member"):
        ZooKeeperFlavor().prepare(STRIDE, Spec(logical_id="zk9"), THREE)
    with pytest.raises(ValidationError):
        ZooKeeperFlavor().prepare(None, Spec(), AllocationMethod(size=1))


# -- health against real sockets --------------------------------------------------------------


def test_health_without_a_server() -> None:
    flavor = ZooKeeperFlavor(timeout=0.3)
    stranger = Description(id="i-1", logical_id="zk1", tags={"infrakit.group": "zk"})
    assert flavor.healthy(STRIDE, stranger) is Health.UNKNOWN
    assert flavor.member_status(STRIDE, stranger)["Mode"] == "unknown"
    flavor.drain(STRIDE, stranger)

    port = free_port()  # nobody listens: refused
    member = Description(id="i-2", logical_id="zk1", tags={TAG_CLIENT: f"127.0.0.1:{port}"})
    assert flavor.healthy(STRIDE, member) is Health.UNHEALTHY
    assert flavor.member_status(STRIDE, member)["Mode"] == "unreachable"
    # Without the client tag, the port comes from myid and the properties.
    by_myid = Description(id="i-3", logical_id="zk2", tags={TAG_MYID: "2"})
    assert client_address({"ClientPort": port - 10, "PortStride": 10}, by_myid) == (
        "127.0.0.1",
        port,
    )
    assert flavor.healthy({"ClientPort": port - 10, "PortStride": 10}, by_myid) is Health.UNHEALTHY


def test_a_member_that_never_answers_is_of_unknown_health() -> None:
    with socket.create_server(("127.0.0.1", 0), backlog=4) as mute:  # listens, never accepts
        port = mute.getsockname()[1]
        member = Description(id="i-1", tags={TAG_CLIENT: f"127.0.0.1:{port}"})
        started = time.monotonic()
        assert ZooKeeperFlavor(timeout=0.3).healthy(None, member) is Health.UNKNOWN
        assert time.monotonic() - started < 2


def test_parse_srvr() -> None:
    text = "Zookeeper version: 3.8.0, built on x\nZxid: 0x100000000\nMode: leader\nNode count: 5\n"
    assert parse_srvr(text) == {
        "Zookeeper version": "3.8.0, built on x",
        "Zxid": "0x100000000",
        "Mode": "leader",
        "Node count": "5",
    }


# -- a real ensemble, end to end -------------------------------------------------------------


def port_free(port: int) -> bool:
    """True if a server could listen on `port` (as ZooKeeper does, with SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_bases(members: int, stride: int) -> tuple[int, int, int]:
    """Client, peer and election base ports (below the ephemeral range) all free for members."""
    for shift in range(0, 3000, 100):
        bases = (21810 + shift, 25880 + shift, 28880 + shift)
        ports = [b + i * stride for b in bases for i in range(members)]
        if all(port_free(p) for p in ports):
            return bases
    raise AssertionError("no free ports for the ensemble")


def zookeeper_available() -> bool:
    return Path(DEBIAN_JAR).is_file() and shutil.which("java") is not None


def modes(clients: list[tuple[str, int]]) -> list[str] | None:
    """Every member's srvr Mode (sorted) if all answer ruok with imok; else None."""
    found = []
    for host, port in clients:
        try:
            if four_letter_word(host, port, "ruok").strip() != "imok":
                return None
            found.append(parse_srvr(four_letter_word(host, port, "srvr")).get("Mode", "?"))
        except OSError:
            return None
    return sorted(found)


def whole(clients: list[tuple[str, int]]) -> bool:
    return modes(clients) == ["follower", "follower", "leader"]


def by_logical_id(runtime: Runtime, group: str) -> dict[str, dict[str, Any]]:
    return {i["Tags"][TAG_LOGICAL_ID]: i for i in runtime.describe(group)["Instances"]}


@pytest.fixture
def ensemble_file() -> Iterator[dict[str, Any]]:
    require("zookeeper", zookeeper_available(), f"{DEBIAN_JAR} and java are needed")
    yield json.loads(EXAMPLE.read_text())


@pytest.mark.slow
def test_an_ensemble_forms_and_heals_a_killed_leader(
    home: Path, ensemble_file: dict[str, Any]
) -> None:
    cluster = ensemble_file
    assert cluster["Plugins"] == [{"Name": "flavor-zookeeper", "Kind": "zookeeper"}]
    del cluster["Plugins"]  # the kind is registered by the runtime; here the plugin is given
    (group,) = cluster["Groups"]
    props = group["Properties"]
    flavor_props = props["Flavor"]["Properties"]
    stride = flavor_props["PortStride"]
    client, peer, election = free_bases(3, stride)
    flavor_props.update(ClientPort=client, PeerPort=peer, ElectionPort=election)
    props["Health"].update(Interval="500ms", GracePeriod="60s", UnhealthyAfter=20)
    gid = group["ID"]
    clients = [("127.0.0.1", client + i * stride) for i in range(3)]
    flavor = ZooKeeperFlavor()
    state = home / "instances" / "process"

    started = time.monotonic()
    with Runtime(cluster, home=home, plugins={"flavor-zookeeper": flavor}) as runtime:
        wait_for(lambda: whole(clients), 90, "a quorum: one leader, two followers")
        formed = time.monotonic() - started
        before = runtime.wait_converged(gid, 90)
        members = {i["Tags"][TAG_LOGICAL_ID]: i for i in before["Instances"]}
        assert sorted(members) == ["zk1", "zk2", "zk3"]
        status = {
            lid: flavor.member_status(flavor_props, Description.from_json(i))
            for lid, i in members.items()
        }
        assert sorted(s["Mode"] for s in status.values()) == ["follower", "follower", "leader"]
        for lid, i in members.items():
            myid = int(i["Tags"][TAG_MYID])
            assert i["Tags"][TAG_CLIENT] == f"127.0.0.1:{client + (myid - 1) * stride}"
            assert myid == int(lid[-1])

        # SIGKILL the leader: the group replaces it under the same logical ID (same myid, same
        # ports), the two others are left alone, and the ensemble is whole again.
        (leader,) = (lid for lid, s in status.items() if s["Mode"] == "leader")
        victim = members[leader]["ID"]
        os.killpg(recorded_pids(state)[victim], signal.SIGKILL)
        killed = time.monotonic()

        def replaced() -> dict[str, dict[str, Any]] | None:
            now = by_logical_id(runtime, gid)
            ok = sorted(now) == ["zk1", "zk2", "zk3"] and now[leader]["ID"] != victim
            return now if ok else None

        after = wait_for(replaced, 90, f"{leader} to be replaced")
        wait_for(lambda: whole(clients), 90, "the ensemble to be whole again")
        healed = time.monotonic() - killed
        runtime.wait_converged(gid, 90)
        after = by_logical_id(runtime, gid)
        for lid in members:
            if lid != leader:
                assert after[lid]["ID"] == members[lid]["ID"], f"{lid} was replaced too"
        assert after[leader]["Tags"][TAG_MYID] == members[leader]["Tags"][TAG_MYID]
        assert flavor.healthy(flavor_props, Description.from_json(after[leader])) is Health.HEALTHY

        runtime.destroy(gid, 60)
        for host, port in clients:
            with pytest.raises(ConnectionRefusedError):
                four_letter_word(host, port, "ruok")
    print(f"\nensemble formed in {formed:.1f}s; healed {healed:.1f}s after the kill")


@pytest.mark.slow
def test_a_flavor_in_its_own_process_shows_each_members_status(home: Path) -> None:
    """The flavor launched as a plugin process of its own (as a cluster file's `Launch` does):
    `group describe` still shows what each member says of itself, asked over the wire."""
    require("zookeeper", zookeeper_available(), f"{DEBIAN_JAR} and java are needed")
    client, peer, election = free_bases(1, 0)
    launch = [sys.executable, "-m", "infrakit.cli.main", "plugin", "start", "zookeeper"]
    flavor_props = {"ClientPort": client, "PeerPort": peer, "ElectionPort": election}
    flavor_props["JvmFlags"] = ["-Xmx128m", "-XX:+UseSerialGC"]
    group = {
        "ID": "zk",
        "Properties": {
            "Allocation": {"LogicalIDs": ["solo"]},
            "Instance": {"Plugin": "instance-process", "Properties": {}},
            "Flavor": {"Plugin": "flavor-zookeeper", "Properties": flavor_props},
            "Health": {"Interval": "500ms", "GracePeriod": "60s", "UnhealthyAfter": 20},
        },
    }
    cluster = {"Plugins": [{"Name": "flavor-zookeeper", "Launch": launch}], "Groups": [group]}
    with Runtime(cluster, home=home) as runtime:

        def mode() -> str | None:
            if not runtime.is_managed("zk"):
                return None  # committed once the launched flavor answers
            instances = runtime.describe("zk")["Instances"]
            return instances[0].get("Status", {}).get("Mode") if len(instances) == 1 else None

        wait_for(lambda: mode() == "standalone", 120, "the member's status from the flavor")
        shown = run_cli(home, "group", "describe", "zk", "--json")
        assert shown.returncode == 0, shown.stderr
        (member,) = json.loads(shown.stdout)["Instances"]
        assert member["Status"]["Mode"] == "standalone"
        runtime.destroy("zk", 60)
