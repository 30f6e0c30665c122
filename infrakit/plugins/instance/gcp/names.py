"""Instance names: the logical ID where GCP's naming rules allow it, else a name derived from it
or from the group, with a random suffix.

GCP names an instance with 1 to 63 lowercase letters, digits and `-`, starting with a letter and
not ending with `-`. A name is unique in its zone, so a name derived from something that is not
a valid name (and so maybe from two different logical IDs) gets a random suffix.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass

MAX_NAME = 63
SUFFIX_LENGTH = 6
DEFAULT_PREFIX = "instance"
MAX_PREFIX = MAX_NAME - 1 - len("255-255-255-255")  # room for "-" and an IPv4 address
_NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?\Z")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class Naming:
    """The name of an instance to create, and the internal IP it asks for (if any).

    `reused`: the name is the logical ID's own (the same at every provision), so an instance
    of that name may be there already; a random suffix makes a name new each time.
    """

    name: str
    network_ip: str | None = None
    reused: bool = False


def valid_name(name: str) -> bool:
    """Whether GCP accepts `name` as an instance name."""
    return _NAME.match(name) is not None


def sanitize(text: str, limit: int = MAX_PREFIX) -> str:
    """`text` made into the start of a valid name, at most `limit` characters: lowercased,
    runs of other characters as one `-`, a leading `i-` if it does not start with a letter
    ("" when nothing is left)."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if cleaned and not cleaned[0].isalpha():
        cleaned = f"i-{cleaned}"
    return cleaned[:limit].rstrip("-")


def suffix() -> str:
    """A random suffix of lowercase letters and digits."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(SUFFIX_LENGTH))


def instance_name(logical_id: str | None, prefix: str | None, group: str | None) -> Naming:
    """The name for an instance of logical ID `logical_id` (None for a Size group's).

    - a logical ID that is a valid name is the name (InfraKit's pets);
    - a logical ID that is an IPv4 address is the instance's internal IP, and the name is the
      prefix and the address (`db-10-0-0-5`), as InfraKit's GCP plugin did;
    - any other logical ID: derived from it, with a random suffix;
    - no logical ID: the prefix (`NamePrefix`, else the group's ID made a valid name, else
      `instance`) and a random suffix.
    """
    start = prefix or sanitize(group or "") or DEFAULT_PREFIX
    if logical_id is None:
        return Naming(f"{start}-{suffix()}")
    if valid_name(logical_id):
        return Naming(logical_id, reused=True)
    address = _ipv4(logical_id)
    if address is not None:
        return Naming(f"{start}-{address.replace('.', '-')}", network_ip=address, reused=True)
    return Naming(f"{sanitize(logical_id) or start}-{suffix()}")


def _ipv4(text: str) -> str | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return str(address) if isinstance(address, ipaddress.IPv4Address) else None
