"""The file store: committed group specs in one JSON file, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any


class FileStore:
    """Keeps `{"Groups": {ID: {"Plugin": "group", "Properties": spec, ...}}, "Cluster": {"ID":
    ...}}` in one file.

    The layout follows InfraKit's `configs/global.config`. Every save writes a temp file in the
    same directory, fsyncs it, renames it over the old one and fsyncs the directory, so a crash
    leaves either the old file or the new one, never a torn one.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._activity_lock = threading.Lock()

    def load(self) -> dict[str, dict[str, Any]]:
        """Every stored group record by ID; empty when nothing was ever stored."""
        groups = self._read().get("Groups")
        if not isinstance(groups, dict):
            raise ValueError(f"{self.path}: expected an object with 'Groups'")
        return {str(k): v for k, v in groups.items() if isinstance(v, dict)}

    def load_one(self, group_id: str) -> dict[str, Any] | None:
        """One group's stored record, or None if it has none."""
        return self.load().get(group_id)

    def group_ids(self) -> list[str]:
        """The ID of every stored group record."""
        return list(self.load())

    def put(self, group_id: str, spec: dict[str, Any] | None, **marks: Any) -> None:
        """Store (or replace) one group's spec, with optional marks such as Destroying=True."""
        with self._lock:
            data = self._read()
            data["Groups"][group_id] = {"Plugin": "group", "Properties": spec, **marks}
            self._save(data)

    def remove(self, group_id: str) -> None:
        with self._lock:
            data = self._read()
            if data["Groups"].pop(group_id, None) is not None:
                self._save(data)

    def stored_cluster_id(self) -> str | None:
        """The stored cluster ID, or None while none is stored."""
        return _cluster_id_in(self._read())

    def cluster_id(self, proposed: str) -> str:
        """The stored cluster ID, or `proposed`, stored now."""
        with self._lock:
            data = self._read()
            stored = _cluster_id_in(data)
            if stored is not None:
                return stored
            data["Cluster"] = {"ID": proposed}
            self._save(data)
            return proposed

    @property
    def activity_path(self) -> Path:
        """Where the activity histories are kept: a file of their own beside the specs', so
        that writing one never rewrites a spec."""
        return self.path.with_name(self.path.stem + ".activity.json")

    def load_activity(self, group_id: str) -> list[dict[str, Any]]:
        """The group's stored activity history, oldest first."""
        entries = _read_activity(self.activity_path).get(group_id)
        return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []

    def put_activity(self, histories: dict[str, list[dict[str, Any]]]) -> None:
        """Replace the activity history of each group given, in one atomic write (an empty
        history removes the group's)."""
        with self._activity_lock:
            data = _read_activity(self.activity_path)
            for group_id, entries in histories.items():
                if entries:
                    data[group_id] = entries
                else:
                    data.pop(group_id, None)
            _write_atomically(self.activity_path, json.dumps(data, sort_keys=True) + "\n")

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"Groups": {}}
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{self.path}: not valid JSON ({error}); refusing to guess") from None
        if not isinstance(data, dict) or not isinstance(data.get("Groups"), dict):
            raise ValueError(f"{self.path}: expected an object with 'Groups'")
        return data

    def _save(self, data: dict[str, Any]) -> None:
        _write_atomically(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _write_atomically(path: Path, text: str) -> None:
    """Write `text` to a temp file beside `path`, fsync it, rename it over `path` and fsync
    the directory: a crash leaves the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temp = tempfile.mkstemp(prefix=f".{path.stem}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_activity(path: Path) -> dict[str, Any]:
    """Group ID -> activity history, as stored at `path`; empty if none (a torn or foreign
    file too: the history is a record for people, never worth refusing to run over)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _cluster_id_in(data: dict[str, Any]) -> str | None:
    cluster = data.get("Cluster")
    if isinstance(cluster, dict) and isinstance(cluster.get("ID"), str):
        return str(cluster["ID"])
    return None
