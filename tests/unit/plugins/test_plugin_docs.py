"""The plugin docs stay true to the code: every built-in kind has its page under docs/plugins/,
and every key its options and properties take (nested ones too) is named on that page."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from infrakit.plugins import builtin_kinds, options_model
from infrakit.plugins.flavor.swarm import SwarmOptions
from infrakit.plugins.flavor.vanilla import VanillaOptions
from infrakit.plugins.flavor.zookeeper import ZooKeeperOptions
from infrakit.plugins.instance.aws.options import Ec2Properties, GoShape
from infrakit.plugins.instance.dind import DindOptions
from infrakit.plugins.instance.docker import DockerOptions
from infrakit.plugins.instance.gcp.properties import GcpProperties
from infrakit.plugins.instance.process import ProcessOptions
from infrakit.plugins.instance.terraform.options import TerraformProperties
from infrakit.plugins.instance.vagrant import VagrantOptions

DOCS = Path(__file__).resolve().parents[3] / "docs" / "plugins"

# The models of each kind's instance or flavor Properties. `file` takes any JSON: no model.
PROPERTIES: dict[str, tuple[type[BaseModel], ...]] = {
    "file": (),
    "process": (ProcessOptions,),
    "docker": (DockerOptions,),
    "dind": (DindOptions,),
    "vagrant": (VagrantOptions,),
    "gcp": (GcpProperties,),
    "aws": (Ec2Properties, GoShape),
    "terraform": (TerraformProperties,),
    "vanilla": (VanillaOptions,),
    "zookeeper": (ZooKeeperOptions,),
    "swarm": (SwarmOptions,),
}


def nested_models(annotation: object) -> list[type[BaseModel]]:
    """The pydantic models inside a field's type (`list[Mount] | None` -> `[Mount]`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in nested_models(arg)]


def keys(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> set[str]:
    """Every JSON key of `model` and of the models nested in it."""
    seen = set() if seen is None else seen
    if model in seen:
        return set()
    seen.add(model)
    found = set()
    for name, field in model.model_fields.items():
        found.add(field.alias or name)
        for inner in nested_models(field.annotation):
            found |= keys(inner, seen)
    return found


def code_of(text: str) -> list[str]:
    """The code on a Markdown page: fenced blocks, then `inline` spans outside them."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
    return blocks + re.findall(r"`([^`\n]+)`", prose)


def test_every_builtin_kind_has_its_properties_models_listed_here() -> None:
    assert sorted(PROPERTIES) == sorted(builtin_kinds())


@pytest.mark.parametrize("kind", builtin_kinds())
def test_every_builtin_kind_has_a_docs_page(kind: str) -> None:
    page = DOCS / f"{kind}.md"
    assert page.is_file(), f"docs/plugins/{kind}.md is missing"
    assert f"`{kind}`" in page.read_text(encoding="utf-8"), f"{page} never names its kind"


@pytest.mark.parametrize("kind", builtin_kinds())
def test_every_option_and_property_is_named_on_its_page(kind: str) -> None:
    page = DOCS / f"{kind}.md"
    text = page.read_text(encoding="utf-8") if page.is_file() else ""
    named = {word for code in code_of(text) for word in re.findall(r"\w+", code)}
    wanted = keys(options_model(kind))
    for model in PROPERTIES.get(kind, ()):
        wanted |= keys(model)
    missing = sorted(wanted - named)
    assert not missing, f"docs/plugins/{kind}.md does not name {missing} as code"


def test_the_etcd_page_names_every_backend_key() -> None:
    from infrakit.spec import BackendConfig

    text = (DOCS.parent / "etcd.md").read_text(encoding="utf-8")
    named = {word for code in code_of(text) for word in re.findall(r"\w+", code)}
    missing = sorted((keys(BackendConfig) | {"LeaderPoll"}) - named)
    assert not missing, f"docs/etcd.md does not name {missing} as code"
