"""What `terraform.tfstate` (Terraform 0.11's format, version 3) says of the root module's
resources: for each resource name, its type, ID, attributes and whether it is tainted."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "terraform.tfstate"


@dataclass(frozen=True)
class Resource:
    """One resource in the state. A tainted one failed (or was marked to be replaced): the next
    apply destroys it."""

    type: str
    name: str
    id: str
    tainted: bool
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{self.type}.{self.name}"


def parse(text: str) -> dict[str, Resource]:
    """Resource name -> resource of the root module in state `text`; ValueError if `text` is not
    a whole state (Terraform rewrites its state in place, so a reader can see half of one)."""
    data: Any = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("modules", []), list):
        raise ValueError("not a Terraform 0.11 state")
    found: dict[str, Resource] = {}
    for module in data.get("modules") or []:
        if not isinstance(module, dict) or module.get("path") not in (["root"], None):
            continue
        for address, resource in (module.get("resources") or {}).items():
            parsed = _resource(str(address), resource)
            if parsed is not None:
                found[parsed.name] = parsed
    return found


def _resource(address: str, resource: Any) -> Resource | None:
    """A managed resource of one instance (`type.name`; data sources and `count`ed resources,
    which are no instance's, are left out). One whose ID is empty is not there: Terraform
    writes it so while it destroys it."""
    parts = address.split(".")
    if len(parts) != 2 or not isinstance(resource, dict):
        return None
    primary = resource.get("primary")
    if not isinstance(primary, dict) or not primary.get("id"):
        return None
    attributes = primary.get("attributes")
    return Resource(
        type=parts[0],
        name=parts[1],
        id=str(primary.get("id", "")),
        tainted=bool(primary.get("tainted", False)),
        attributes={str(k): str(v) for k, v in (attributes or {}).items()},
    )


def read(directory: Path) -> dict[str, Resource]:
    """The resources in `directory`'s state (none before the first apply); ValueError if the
    state is not whole, OSError if it cannot be read."""
    try:
        text = (directory / STATE_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return parse(text)
