"""The EC2 instance plugin against a real EC2 emulator: moto's server, started for this module
on a free 127.0.0.1 port and stopped after, checking AMIs, instance types and key pairs as EC2
does. Tags are EC2 tags, the Init is the UserData, stopped and terminated instances are gone,
every page of a listing is read, refusals are clear errors, and groups (sized and named)
converge, heal, roll and are destroyed through the runtime. Every test names what it makes
with its own token; credentials are fake and no AWS setting of the machine is read."""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import os
import random
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import INFRAKIT, cli_env, free_port, require, run_cli, wait_for

from infrakit import Runtime
from infrakit.events import Event
from infrakit.plugins.instance.aws import AwsInstancePlugin
from infrakit.spi import PluginError, Spec
from infrakit.spi.errors import ValidationError
from infrakit.spi.instance import TAG_GROUP, TAG_LOGICAL_ID

REGION = "us-east-1"
AMI = "ami-04681a1dbd79675a5"  # Amazon Linux 2, one of the images moto's server knows
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "aws-cluster.json"
# Have the emulator refuse what EC2 refuses (moto accepts any AMI, type or key by default).
EMULATOR_SETTINGS = {
    "MOTO_ENABLE_AMI_VALIDATION": "true",
    "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "true",
    "MOTO_ENABLE_KEYPAIR_VALIDATION": "true",
}
GONE_STATES = ("shutting-down", "terminated")


def moto_server_available() -> bool:
    """Whether moto's server (moto[server]: moto with Flask) can run here."""
    return all(importlib.util.find_spec(name) for name in ("moto", "flask", "flask_cors"))


def answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def aws_env() -> Iterator[None]:
    """Fake credentials, and none of the machine's AWS settings (region, profile, files)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("AWS_"):
                patch.delenv(name)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_CONFIG_FILE", os.devnull)
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        yield


@pytest.fixture(scope="module")
def emulator(aws_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint of moto's server, started on a free port (another if that one is taken
    meanwhile) and stopped after the module."""
    require("moto_server", moto_server_available(), "pip install 'moto[server]'")
    log_path = tmp_path_factory.mktemp("moto") / "server.log"
    env = {**os.environ, **EMULATOR_SETTINGS}
    for _ in range(5):
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        with log_path.open("ab") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(
            lambda: server.poll() is not None or answers(endpoint),  # noqa: B023 (this server)
            what="moto's server to answer",
        )
        if server.poll() is None:
            break
    else:
        pytest.fail(f"moto's server did not start: {log_path.read_text()[-3000:]}")
    try:
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def ec2(emulator: str) -> Iterator[Any]:
    """An EC2 client of the emulator: the operator's hands, out of band."""
    import boto3

    client = boto3.client("ec2", region_name=REGION, endpoint_url=emulator)
    assert client.describe_images(ImageIds=[AMI])["Images"], f"the emulator lacks {AMI}"
    yield client
    client.close()


@pytest.fixture
def plugin(emulator: str) -> Iterator[AwsInstancePlugin]:
    """The plugin on the emulator, listing 5 instances a page (EC2's smallest page)."""
    made = AwsInstancePlugin(region=REGION, endpoint=emulator, page_size=5)
    yield made
    made.close()


@pytest.fixture
def token() -> str:
    return secrets.token_hex(4)


def live(ec2: Any, **tags: str) -> dict[str, dict[str, Any]]:
    """Instance ID -> instance, for every pending or running instance carrying `tags`."""
    filters = [{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    filters += [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
    found = {}
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                found[instance["InstanceId"]] = instance
    return found


def instance_of(ec2: Any, instance_id: str) -> dict[str, Any]:
    reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return dict(reservations[0]["Instances"][0])


def tags_of(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def subnet(ec2: Any) -> tuple[str, str]:
    """A new VPC and subnet; returns the subnet's ID and its first three octets."""
    prefix = f"10.{random.randrange(1, 255)}.{random.randrange(0, 255)}"
    vpc = ec2.create_vpc(CidrBlock=f"{prefix}.0/24")["Vpc"]["VpcId"]
    made = ec2.create_subnet(VpcId=vpc, CidrBlock=f"{prefix}.0/24")["Subnet"]["SubnetId"]
    return str(made), prefix


def recorder(runtime: Runtime) -> list[Event]:
    seen: list[Event] = []
    runtime.events.subscribe(seen.append)
    return seen


# -- the plugin on its own -------------------------------------------------------------------


def test_provision_describe_destroy_with_tags_as_ec2_tags(
    plugin: AwsInstancePlugin, ec2: Any, token: str, emulator: str
) -> None:
    group = f"tags-{token}"
    one = plugin.provision(
        Spec(
            properties={"ImageId": AMI, "InstanceType": "t3.micro", "Tags": {"team": token}},
            tags={TAG_GROUP: group, TAG_LOGICAL_ID: f"{group}-0", "role": "a"},
            init="#!/bin/sh\necho one",
        )
    )
    two = plugin.provision(
        Spec(
            properties={"RunInstancesInput": {"ImageId": AMI}, "Tags": {"team": token}},
            tags={TAG_GROUP: group, "role": "b", "Name": "custom"},
            logical_id="zk1",
        )
    )
    other = plugin.provision(Spec(properties={"ImageId": AMI}, tags={TAG_GROUP: f"x-{token}"}))

    fresh = AwsInstancePlugin(region=REGION, endpoint=emulator)  # knows nothing it made
    described = {d.id: d for d in fresh.describe_instances({TAG_GROUP: group})}
    assert sorted(described) == sorted([one, two])
    assert described[one].tags == {
        TAG_GROUP: group,
        TAG_LOGICAL_ID: f"{group}-0",
        "role": "a",
        "team": token,
        "Name": f"{group}-0",
    }
    assert described[one].logical_id == f"{group}-0"
    assert described[one].properties["InstanceType"] == "t3.micro"
    assert described[one].properties["State"] in ("pending", "running")
    assert (described[two].logical_id, described[two].tags["Name"]) == ("zk1", "custom")
    # EC2 itself holds the tags, and the Init as the UserData.
    assert tags_of(instance_of(ec2, one)) == described[one].tags
    user_data = ec2.describe_instance_attribute(InstanceId=one, Attribute="userData")
    assert base64.b64decode(user_data["UserData"]["Value"]).decode() == "#!/bin/sh\necho one"
    # Tags AND-match.
    assert [d.id for d in fresh.describe_instances({TAG_GROUP: group, "role": "b"})] == [two]
    assert fresh.describe_instances({TAG_GROUP: group, "role": "c"}) == []
    assert {d.id for d in fresh.describe_instances({"team": token})} == {one, two}

    plugin.label(two, {"extra": "yes", "role": "c"})
    assert tags_of(instance_of(ec2, two))["extra"] == "yes"
    assert [d.id for d in fresh.describe_instances({TAG_GROUP: group, "role": "c"})] == [two]

    plugin.destroy(one)
    plugin.destroy(one)  # already gone: not an error
    assert instance_of(ec2, one)["State"]["Name"] in GONE_STATES
    assert [d.id for d in fresh.describe_instances({TAG_GROUP: group})] == [two]
    assert [d.id for d in fresh.describe_instances({TAG_GROUP: f"x-{token}"})] == [other]
    fresh.close()


def test_stopped_and_terminated_instances_are_gone_and_sweep_ends_the_stopped(
    plugin: AwsInstancePlugin, ec2: Any, token: str
) -> None:
    group = f"gone-{token}"
    spec = Spec(properties={"ImageId": AMI}, tags={TAG_GROUP: group})
    stopped, terminated, running = (plugin.provision(spec) for _ in range(3))
    ec2.stop_instances(InstanceIds=[stopped])
    ec2.terminate_instances(InstanceIds=[terminated])
    assert [d.id for d in plugin.describe_instances({TAG_GROUP: group})] == [running]
    # A stopped instance keeps its volumes (and their cost): sweep terminates it.
    assert plugin.sweep({TAG_GROUP: group}) == [stopped]
    assert instance_of(ec2, stopped)["State"]["Name"] in GONE_STATES
    assert plugin.sweep({TAG_GROUP: group}) == []
    assert instance_of(ec2, running)["State"]["Name"] == "running"


def test_a_new_instance_terminated_out_of_band_is_gone_at_once(
    plugin: AwsInstancePlugin, ec2: Any, token: str
) -> None:
    """The plugin remembers new instances in case EC2's listing lags; it still believes EC2
    when EC2 says one is terminated."""
    group = f"new-{token}"
    made = plugin.provision(Spec(properties={"ImageId": AMI}, tags={TAG_GROUP: group}))
    ec2.terminate_instances(InstanceIds=[made])
    assert plugin.describe_instances({TAG_GROUP: group}) == []


def test_describe_reads_every_page(plugin: AwsInstancePlugin, ec2: Any, token: str) -> None:
    group = f"pages-{token}"
    made = {
        plugin.provision(Spec(properties={"ImageId": AMI}, tags={TAG_GROUP: group}))
        for _ in range(12)
    }
    filters = [{"Name": f"tag:{TAG_GROUP}", "Values": [group]}]
    first = ec2.describe_instances(Filters=filters, MaxResults=5)
    assert first.get("NextToken"), "the emulator pages as EC2 does"
    fresh = AwsInstancePlugin(region=REGION, endpoint=plugin.endpoint, page_size=5)
    assert {d.id for d in fresh.describe_instances({TAG_GROUP: group})} == made
    fresh.close()


def test_a_bad_ami_or_a_refused_request_is_a_clear_error(
    plugin: AwsInstancePlugin, ec2: Any, token: str
) -> None:
    group = f"refused-{token}"
    missing = "ami-0123456789abcdef0"
    with pytest.raises(ValidationError) as caught:
        plugin.validate({"ImageId": missing, "InstanceType": "t3.micro"})
    assert caught.value.path == "ImageId"
    assert f"AMI {missing!r} does not exist in {REGION}" in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        plugin.validate({"RunInstancesInput": {"ImageId": missing}})
    assert caught.value.path == "RunInstancesInput.ImageId"
    plugin.validate({"ImageId": AMI})

    def provision(**properties: Any) -> str:
        return plugin.provision(Spec(properties=properties, tags={TAG_GROUP: group}))

    with pytest.raises(PluginError, match=r"\(InvalidAMIID\.NotFound\); the AMI does not exist"):
        provision(ImageId=missing)
    with pytest.raises(PluginError, match=r"\(InvalidInstanceType\.NotFound\); no such instance"):
        provision(ImageId=AMI, InstanceType="t9.gigantic")
    with pytest.raises(PluginError, match=r"\(InvalidSubnetID\.NotFound\); no such subnet"):
        provision(ImageId=AMI, SubnetId="subnet-0123456789abcdef0")
    with pytest.raises(PluginError, match=r"\(InvalidKeyPair\.NotFound\); no such key pair"):
        provision(ImageId=AMI, KeyName=f"missing-{token}")
    assert live(ec2, **{TAG_GROUP: group}) == {}


def test_an_ip_address_logical_id_is_the_private_ip(
    plugin: AwsInstancePlugin, ec2: Any, token: str
) -> None:
    group = f"ip-{token}"
    subnet_id, prefix = subnet(ec2)
    address = f"{prefix}.10"
    made = plugin.provision(
        Spec(
            properties={"ImageId": AMI, "SubnetId": subnet_id},
            tags={TAG_GROUP: group},
            logical_id=address,
        )
    )
    assert instance_of(ec2, made)["PrivateIpAddress"] == address
    (described,) = plugin.describe_instances({TAG_GROUP: group})
    assert (described.logical_id, described.tags["Name"]) == (address, address)
    named = plugin.provision(
        Spec(properties={"ImageId": AMI}, tags={TAG_GROUP: group}, logical_id="zk1")
    )
    assert instance_of(ec2, named)["PrivateIpAddress"] != "zk1"


def test_the_plugin_served_by_the_cli(ec2: Any, emulator: str, token: str, tmp_path: Path) -> None:
    """`infrakit plugin start aws --option ...` serves the plugin on its socket, and
    `infrakit instance` validates, provisions, describes and destroys through it."""
    group = f"cli-{token}"
    env = {**cli_env(tmp_path / "home"), "INFRAKIT_PLUGINS_DIR": str(tmp_path / "plugins")}
    options = [f"Region={REGION}", f"Endpoint={emulator}", "MaxAttempts=2"]
    command = [*INFRAKIT, "plugin", "start", "aws", *(f"--option={o}" for o in options)]
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*INFRAKIT, "instance", "--name", "instance-aws", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("Listening at: ipc://")
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"ImageId": "ami-0123456789abcdef0", "MinCount": 2}))
        refused = cli("validate", str(bad))
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
        assert "MinCount: not accepted" in refused.stderr
        spec = tmp_path / "spec.json"
        spec.write_text(
            json.dumps({"Properties": {"ImageId": AMI}, "Tags": {TAG_GROUP: group}, "Init": "hi"})
        )
        made = cli("provision", str(spec))
        assert made.returncode == 0, made.stderr
        instance_id = made.stdout.strip()
        assert set(live(ec2, **{TAG_GROUP: group})) == {instance_id}
        listed = cli("describe", "--tags", f"{TAG_GROUP}={group}", "-q")
        assert listed.stdout.split() == [instance_id]
        assert cli("destroy", instance_id).returncode == 0
        assert cli("describe", "--tags", f"{TAG_GROUP}={group}", "-q").stdout.split() == []
    finally:
        server.terminate()
        server.wait(timeout=30)


# -- groups through the runtime ----------------------------------------------------------------


def ec2_group(group: str, allocation: dict[str, Any], **properties: Any) -> dict[str, Any]:
    return {
        "ID": group,
        "Properties": {
            "Allocation": allocation,
            "Instance": {
                "Plugin": "instance-aws",
                "Properties": {"ImageId": AMI, "InstanceType": "t3.micro", **properties},
            },
            "Flavor": {
                "Plugin": "flavor-vanilla",
                "Properties": {"Init": ["#!/bin/sh", "echo hello"], "Tags": {"role": "worker"}},
            },
            "Health": {"Interval": "1s", "GracePeriod": "2s"},
        },
    }


def converge_heal_roll_destroy(
    runtime: Runtime, ec2: Any, spec: dict[str, Any], logical_ids: list[str], by_ip: bool
) -> None:
    """Commit `spec`; its instances come up, one terminated out of band is replaced, a changed
    InstanceType is rolled onto every instance, and destroy terminates them all."""
    group = spec["ID"]
    size = len(logical_ids)

    def members(instance_type: str) -> dict[str, dict[str, Any]] | None:
        found = live(ec2, **{TAG_GROUP: group})
        lids = sorted(tags_of(i)[TAG_LOGICAL_ID] for i in found.values())
        if lids != sorted(logical_ids):
            return None
        if any(i["InstanceType"] != instance_type for i in found.values()):
            return None
        for instance in found.values():
            tags = tags_of(instance)
            assert tags["Name"] == tags[TAG_LOGICAL_ID] and tags["role"] == "worker"
            if by_ip:
                assert instance["PrivateIpAddress"] == tags[TAG_LOGICAL_ID]
        return found

    assert runtime.commit(spec) == f"Managing {size} instances"
    before = wait_for(lambda: members("t3.micro"), what=f"{size} instances of {group}")
    runtime.wait_converged(group)

    victim = sorted(before)[1]
    ec2.terminate_instances(InstanceIds=[victim])

    def healed() -> dict[str, dict[str, Any]] | None:
        found = members("t3.micro")
        return found if found is not None and victim not in found else None

    after = wait_for(healed, what="the terminated instance to be replaced")
    assert len(set(after) - set(before)) == 1
    runtime.wait_converged(group)

    changed = copy.deepcopy(spec)
    changed["Properties"]["Instance"]["Properties"]["InstanceType"] = "t3.small"
    assert runtime.commit(changed) == f"Performing a rolling update on {size} instances"
    rolled = wait_for(lambda: members("t3.small"), what="every instance rolled to t3.small")
    assert not set(rolled) & set(after)
    runtime.wait_converged(group)

    runtime.destroy(group)
    assert live(ec2, **{TAG_GROUP: group}) == {}
    for instance_id in rolled:
        assert instance_of(ec2, instance_id)["State"]["Name"] in GONE_STATES


def test_a_size_group_converges_heals_rolls_and_is_destroyed(
    plugin: AwsInstancePlugin, ec2: Any, token: str, home: Path
) -> None:
    group = f"workers-{token}"
    spec = ec2_group(group, {"Size": 3})
    with Runtime(home=home, plugins={"instance-aws": plugin}) as runtime:
        converge_heal_roll_destroy(runtime, ec2, spec, [f"{group}-{i}" for i in range(3)], False)


def test_a_logical_ids_group_keeps_its_addresses_through_heal_and_roll(
    plugin: AwsInstancePlugin, ec2: Any, token: str, home: Path
) -> None:
    """Named instances whose logical IDs are private IPs (as Go's infrakit.aws ran managers):
    each replacement comes back at its address."""
    subnet_id, prefix = subnet(ec2)
    addresses = [f"{prefix}.11", f"{prefix}.12", f"{prefix}.13"]
    # In EC2 an instance's own interface goes with it; moto's only when told so (else its
    # address stays taken).
    interface = {"DeviceIndex": 0, "SubnetId": subnet_id, "DeleteOnTermination": True}
    spec = ec2_group(f"managers-{token}", {"LogicalIDs": addresses}, NetworkInterfaces=[interface])
    with Runtime(home=home, plugins={"instance-aws": plugin}) as runtime:
        converge_heal_roll_destroy(runtime, ec2, spec, addresses, True)


def test_a_refused_provision_is_reported_and_retried_until_fixed(
    plugin: AwsInstancePlugin, ec2: Any, token: str, home: Path
) -> None:
    """A key pair that does not exist: the group stays up, says why on every attempt, backs
    off behind its circuit breaker instead of hammering EC2, and converges once an operator
    creates the key pair (no commit needed)."""
    group, key = f"keyed-{token}", f"key-{token}"
    with Runtime(home=home, plugins={"instance-aws": plugin}) as runtime:
        seen = recorder(runtime)
        assert runtime.commit(ec2_group(group, {"Size": 2}, KeyName=key)) == "Managing 2 instances"
        wait_for(
            lambda: any(e.kind == "circuit" and "open" in e.message for e in seen),
            what="the provisioning circuit to open",
        )
        failures = [e for e in seen if e.kind == "provision-failed" and e.group == group]
        assert failures
        for event in failures:
            assert "(InvalidKeyPair.NotFound); no such key pair" in event.message
        assert runtime.is_managed(group)
        assert any("InvalidKeyPair.NotFound" in c for c in runtime.describe(group)["Conditions"])
        assert live(ec2, **{TAG_GROUP: group}) == {}

        ec2.create_key_pair(KeyName=key)
        wait_for(lambda: len(live(ec2, **{TAG_GROUP: group})) == 2, what="2 instances")
        runtime.wait_converged(group)
        assert all(i["KeyName"] == key for i in live(ec2, **{TAG_GROUP: group}).values())
        runtime.destroy(group)


def test_the_example_cluster_file_runs(ec2: Any, emulator: str, token: str, home: Path) -> None:
    """examples/aws-cluster.json, with the emulator's port for the documented 5000: the
    cluster file makes the plugin from its options."""
    text = EXAMPLE.read_text()
    assert '"Endpoint": "http://127.0.0.1:5000"' in text
    cluster = json.loads(text.replace("http://127.0.0.1:5000", emulator))
    (group,) = cluster["Groups"]
    group["ID"] = f"example-{token}"
    checked = run_cli(home, "validate", str(EXAMPLE))
    assert checked.returncode == 0, checked.stderr
    with Runtime(cluster, home=home) as runtime:
        found = wait_for(
            lambda: (
                (f := live(ec2, **{TAG_GROUP: group["ID"], "role": "worker"})) and len(f) == 3 and f
            ),
            what="the example's 3 instances",
        )
        runtime.wait_converged(group["ID"])
        for instance in found.values():
            assert tags_of(instance)["example"] == "aws-cluster"
            assert instance["MetadataOptions"]["HttpTokens"] == "required"
        runtime.destroy(group["ID"])
        assert live(ec2, **{TAG_GROUP: group["ID"]}) == {}
