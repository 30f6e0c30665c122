"""How InfraKit's tags are kept on a Compute Engine instance.

The exact tags are one metadata item, `infrakit-tags` (a JSON object): metadata takes any string,
so tags round-trip as they are, and `describe_instances` reads them from there. Each tag is also
a label, where GCP's label rules allow, so that a group is listed with a server-side filter and
shows in the console and in billing reports.

Label keys and values allow only lowercase letters, digits, `_` and `-` (at most 63 characters;
a key starts with a letter). A tag's key and value become a label's by a reversible encoding:
lowercase letters, digits and `-` stay; every other character is `_` and the two hex digits of
each of its UTF-8 bytes (`.` is `_2e`, `_` is `_5f`, `A` is `_41`). So `infrakit.group=workers`
is the label `infrakit_2egroup=workers`. A tag whose encoded key or value does not fit a label
is kept in the metadata only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

METADATA_TAGS = "infrakit-tags"
"""The metadata item holding an instance's tags, as a JSON object."""
METADATA_LOGICAL_ID = "infrakit-logical-id"
"""The metadata item holding the logical ID an instance was provisioned for (named groups)."""
METADATA_PREFIX = "infrakit-"
"""Metadata keys the plugin keeps for itself."""
STARTUP_SCRIPT = "startup-script"
"""The metadata item that Compute Engine's guest agent runs at boot: the flavor's Init."""
LABEL_PREFIX = "infrakit_"
"""Label keys the plugin keeps for itself (those of the tags `infrakit.*`, `infrakit_*`...)."""

MAX_LABELS = 64
MAX_LABEL_LENGTH = 63
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}\Z")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}\Z")
_ESCAPE = re.compile(r"_([0-9a-f]{2})")


def encode(text: str) -> str:
    """`text` in the characters labels allow, reversibly (see the module's doc)."""
    out: list[str] = []
    for char in text:
        if char in _PLAIN:
            out.append(char)
        else:
            out.extend(f"_{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))
    return "".join(out)


def decode(text: str) -> str:
    """The text that `encode` made `text` of; `ValueError` if `encode` could not have made it."""
    data = bytearray()
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char in _PLAIN:
            data.append(ord(char))
            pos += 1
            continue
        match = _ESCAPE.match(text, pos)
        if match is None:
            raise ValueError(f"not an encoded label: {text!r}")
        data.append(int(match.group(1), 16))
        pos = match.end()
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise ValueError(f"not an encoded label: {text!r}") from None


def valid_label_key(key: str) -> bool:
    """Whether GCP accepts `key` as a label key (ASCII only: the plugin's labels are)."""
    return _LABEL_KEY.match(key) is not None


def valid_label_value(value: str) -> bool:
    """Whether GCP accepts `value` as a label value."""
    return _LABEL_VALUE.match(value) is not None


def tag_label(key: str, value: str) -> tuple[str, str] | None:
    """The label of tag `key=value`, or None when its encoding does not fit a label."""
    label_key, label_value = encode(key), encode(value)
    if valid_label_key(label_key) and valid_label_value(label_value):
        return label_key, label_value
    return None


def tag_labels(tags: Mapping[str, str]) -> dict[str, str]:
    """The labels of every tag that fits one."""
    labels: dict[str, str] = {}
    for key, value in tags.items():
        label = tag_label(key, value)
        if label is not None:
            labels[label[0]] = label[1]
    return labels


def label_filter(wanted: Mapping[str, str]) -> str:
    """A list filter matching instances labelled with every wanted tag that fits a label (""
    when none does). The other tags are matched client side, as is every tag: an emulator may
    ignore filters."""
    terms = []
    for key, value in sorted(wanted.items()):
        label = tag_label(key, value)
        if label is not None:
            terms.append(f'(labels.{label[0]} = "{label[1]}")')
    return " AND ".join(terms)


def tags_metadata(tags: Mapping[str, str]) -> str:
    """The value of the `infrakit-tags` metadata item for `tags`."""
    return json.dumps(dict(sorted(tags.items())), ensure_ascii=False, separators=(",", ":"))


def tags_of(metadata: Mapping[str, str]) -> dict[str, str]:
    """The tags kept in an instance's metadata items (`{}` when there are none, or when the item
    is not a JSON object of strings: someone else's instance, or one edited by hand)."""
    text = metadata.get(METADATA_TAGS)
    if text is None:
        return {}
    try:
        tags = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        return {}
    return tags


def relabel(labels: Mapping[str, str], changed: Mapping[str, str]) -> dict[str, str]:
    """An instance's `labels` once tags `changed` are set: each changed tag's label set, or
    removed when its new value does not fit a label (an old value must not still match)."""
    out = dict(labels)
    for key, value in changed.items():
        label = tag_label(key, value)
        if label is not None:
            out[label[0]] = label[1]
        else:
            out.pop(encode(key), None)
    return out
