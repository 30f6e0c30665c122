"""Tests of the vanilla flavor, including its health command run as a real shell."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from infrakit.plugins.flavor.vanilla import (
    HealthCheck,
    VanillaFlavor,
    run_health_check,
    tag_env_name,
)
from infrakit.plugins.instance._proc import proc_stat
from infrakit.spi import (
    AllocationMethod,
    Attachment,
    Description,
    FlavorPlugin,
    Health,
    Spec,
    ValidationError,
)

SIZE = AllocationMethod(size=1)
INSTANCE = Description(id="i-1", logical_id=None, tags={"infrakit.group": "web", "role": "x"})


@pytest.fixture
def flavor() -> VanillaFlavor:
    return VanillaFlavor()


def test_is_a_flavor_plugin(flavor: VanillaFlavor) -> None:
    assert isinstance(flavor, FlavorPlugin)


def test_prepare_appends_init_lines(flavor: VanillaFlavor) -> None:
    props = {"Init": ["echo one", "echo two"]}
    assert flavor.prepare(props, Spec(), SIZE).init == "echo one\necho two"
    assert flavor.prepare(props, Spec(init="first"), SIZE).init == "first\necho one\necho two"
    assert flavor.prepare({"Init": []}, Spec(init="first"), SIZE).init == "first"
    assert flavor.prepare(None, Spec(init="first"), SIZE).init == "first"


def test_prepare_merges_tags_but_keeps_the_groups_own(flavor: VanillaFlavor) -> None:
    spec = Spec(
        properties={"p": 1},
        tags={"infrakit.group": "web", "env": "dev", "keep": "me"},
        logical_id="a",
    )
    props = {"Tags": {"infrakit.group": "evil", "infrakit.extra": "ok", "env": "prod"}}
    out = flavor.prepare(props, spec, SIZE)
    assert out.tags == {
        "infrakit.group": "web",
        "infrakit.extra": "ok",
        "env": "prod",
        "keep": "me",
    }
    assert (out.properties, out.logical_id) == ({"p": 1}, "a")
    assert spec.tags["env"] == "dev"  # the input is not modified


def test_keys_are_case_insensitive_and_attachments_append(flavor: VanillaFlavor) -> None:
    props = {"init": ["x"], "TAGS": {"a": "b"}, "attachments": [{"id": "vol", "type": "ebs"}]}
    spec = Spec(attachments=(Attachment("net", "eni"),))
    out = flavor.prepare(props, spec, SIZE)
    assert (out.init, out.tags) == ("x", {"a": "b"})
    assert out.attachments == (Attachment("net", "eni"), Attachment("vol", "ebs"))


@pytest.mark.parametrize(
    ("properties", "path", "message"),
    [
        ([], "", "must be an object"),
        ({"Init": "echo"}, "Init", "must be a list of strings"),
        ({"Init": ["a", "b", 3]}, "Init[2]", "must be a string"),
        ({"Tags": {"a": 1}}, "Tags.a", "must be a string"),
        ({"Tags": ["a"]}, "Tags", "must be an object of strings"),
        ({"Health": "yes"}, "Health", "must be an object"),
        ({"Health": {"Command": 3}}, "Health.Command", "must be a string"),
        ({"Health": {"Timeout": "2 parsecs"}}, "Health.Timeout", "not a duration: '2 parsecs'"),
        ({"Health": {"Timeout": "0s"}}, "Health.Timeout", "must be at least 1ms"),
        ({"Health": {"Retries": 3}}, "Health.Retries", "unknown key 'Retries'"),
        ({"Attachments": [{"ID": 1}]}, "Attachments[0].ID", "must be a string"),
        ({"Size": 3}, "Size", "unknown key 'Size'"),
        ({"Tags": {"": "v"}}, "Tags", "a tag name must not be empty"),
        ({"Tags": {"a=b": "v"}}, "Tags.a=b", "must not contain '='"),
        ({"Tags": {"a\0": "v"}}, 'Tags["a\\u0000"]', "control characters"),
        ({"Tags": {"t" * 100_000: "v"}}, "Tags." + "t" * 57 + "...", "at most 253 characters"),
        ({"Tags": {"k": "v\0"}}, "Tags.k", "must not contain a NUL"),
        ({"Tags": {"k": "v" * 5000}}, "Tags.k", "must be at most 4096 characters"),
        ({"Tags": {f"k{i}": "v" for i in range(1001)}}, "Tags", "at most 1000 tags"),
        ({"Init": ["x" * 70_000]}, "Init", "must be at most 65536 bytes in all"),
        ({"Init": ["a", "b\0"]}, "Init[1]", "must not contain a NUL"),
        ({"Health": {"Timeout": "999999999999h"}}, "Health.Timeout", "must be at most 10m"),
        ({"Health": {"Timeout": 1e308}}, "Health.Timeout", "must be at most 10m"),
        ({"Health": {"Command": "true\0"}}, "Health.Command", "no NUL"),
    ],
)
def test_validate_reports_the_path(
    flavor: VanillaFlavor, properties: object, path: str, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        flavor.validate(properties, SIZE)
    assert caught.value.path == path
    assert message in caught.value.reason


def test_validate_accepts_good_properties(flavor: VanillaFlavor) -> None:
    flavor.validate(None, SIZE)
    flavor.validate({}, SIZE)
    flavor.validate(
        {"Init": ["a"], "Tags": {"k": "v"}, "Health": {"Command": "true", "Timeout": "500ms"}},
        AllocationMethod(logical_ids=("a", "b")),
    )
    flavor.validate({"Health": {"Command": "true", "Timeout": 2}}, SIZE)


def test_healthy_without_a_command(flavor: VanillaFlavor) -> None:
    assert flavor.healthy(None, INSTANCE) is Health.HEALTHY
    assert flavor.healthy({"Init": ["x"]}, INSTANCE) is Health.HEALTHY


def test_health_command_exit_status(flavor: VanillaFlavor) -> None:
    assert flavor.healthy({"Health": {"Command": "exit 0"}}, INSTANCE) is Health.HEALTHY
    assert flavor.healthy({"Health": {"Command": "exit 1"}}, INSTANCE) is Health.UNHEALTHY


def test_health_command_sees_the_instance(flavor: VanillaFlavor) -> None:
    command = (
        'test "$INFRAKIT_INSTANCE_ID" = i-1 && test -z "$INFRAKIT_LOGICAL_ID" && '
        'test "$INFRAKIT_TAG_INFRAKIT_GROUP" = web && test "$INFRAKIT_TAG_ROLE" = x'
    )
    assert flavor.healthy({"Health": {"Command": command}}, INSTANCE) is Health.HEALTHY
    named = Description(id="i-2", logical_id="db1", tags={})
    check = {"Health": {"Command": 'test "$INFRAKIT_LOGICAL_ID" = db1'}}
    assert flavor.healthy(check, named) is Health.HEALTHY
    slotted = Description(id="i-3", logical_id=None, tags={"infrakit.logical_id": "web-0"})
    check = {"Health": {"Command": 'test "$INFRAKIT_LOGICAL_ID" = web-0'}}
    assert flavor.healthy(check, slotted) is Health.HEALTHY  # a Size group's slot
    assert tag_env_name("infrakit.config.hash") == "INFRAKIT_TAG_INFRAKIT_CONFIG_HASH"


def test_health_command_timeout_is_unhealthy_and_killed(
    flavor: VanillaFlavor, tmp_path: Path, wait_for: Callable[..., None]
) -> None:
    pid_file = tmp_path / "pid"
    command = f"sleep 1000 & echo $! > {pid_file}.part; mv {pid_file}.part {pid_file}; wait"
    props = {"Health": {"Command": command, "Timeout": "500ms"}}
    assert flavor.healthy(props, INSTANCE) is Health.UNHEALTHY
    # On a very loaded machine the kill may come before the shell wrote the file; then the
    # sleep either never started or was in the killed group too.
    if pid_file.exists():
        pid = int(pid_file.read_text())

        def killed() -> bool:  # SIGKILL lands asynchronously on the other group members
            st = proc_stat(pid)
            return st is None or not st.running

        wait_for(killed)


def test_health_command_that_cannot_start_is_unknown() -> None:
    # Validation refuses a NUL in the command; were one to get through, the check says unknown.
    assert run_health_check(HealthCheck("true\0"), INSTANCE) is Health.UNKNOWN


def test_drain_does_nothing(flavor: VanillaFlavor) -> None:
    flavor.drain({"Init": ["x"]}, INSTANCE)
