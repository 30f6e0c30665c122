"""Container names a person recognises: the group and the logical ID, or a Size group's slot.

- The name is the logical ID (else the `infrakit.logical_id` tag: the slot, `workers-0`) when
  it starts with the group's ID, else `<group>-<logical ID>` (group `db`, ID `10.0.0.5`:
  `db-10.0.0.5`), so that two groups' instances do not want one name; without a group (a
  spec given by hand), the logical ID alone; with neither, no name (Docker makes one up).
- Characters Docker refuses in a name become `_`.
- The name is only wished for: a name held by a container the plugin must not remove gets a
  short random suffix (`workers-0-3fa9c1`). The instance ID is the container's ID, never the
  name, so a suffix changes nothing but what `docker ps` shows.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping

from infrakit.spi.instance import TAG_CLUSTER, TAG_GROUP, Spec, logical_id_or_slot

# Docker's rule for container names; \Z: `$` would allow a final newline.
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+\Z")
_REFUSED = re.compile(r"[^a-zA-Z0-9_.-]")
_MAX = 200  # room for the suffix; Docker keeps names far shorter than any group ID may be
_FALLBACK = "infrakit"  # starts a name whose own first character Docker refuses


def wanted_name(spec: Spec) -> str | None:
    """The name the spec's container should have, or None to let Docker choose."""
    logical_id = logical_id_or_slot(spec)
    if logical_id is None:
        return None
    group = spec.tags.get(TAG_GROUP)
    name = logical_id if not group or logical_id.startswith(group) else f"{group}-{logical_id}"
    name = _REFUSED.sub("_", name)[:_MAX]
    return name if NAME_RE.match(name) else f"{_FALLBACK}-{name}"[:_MAX]


def suffixed(name: str) -> str:
    """`name` with a short random suffix, for when `name` itself is held."""
    return f"{name}-{secrets.token_hex(3)}"


def is_ours(labels: Mapping[str, str], spec: Spec) -> bool:
    """Whether a container with `labels` was made for the spec's group by its cluster (and so
    may be removed once dead): same `infrakit.group`, same `infrakit.cluster.id`."""
    group = spec.tags.get(TAG_GROUP)
    if group is None or labels.get(TAG_GROUP) != group:
        return False
    return labels.get(TAG_CLUSTER) == spec.tags.get(TAG_CLUSTER)
