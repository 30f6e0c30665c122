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

    def load(self) -> dict[str, dict[str, Any]]:
        """Every stored group record by ID; empty when nothing was ever stored."""
        groups = self._read().get("Groups")
        if not isinstance(groups, dict):
            raise ValueError(f"{self.path}: expected an object with 'Groups'")
        return {str(k): v for k, v in groups.items() if isinstance(v, dict)}

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
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        fd, temp = tempfile.mkstemp(prefix=".global.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _cluster_id_in(data: dict[str, Any]) -> str | None:
    cluster = data.get("Cluster")
    if isinstance(cluster, dict) and isinstance(cluster.get("ID"), str):
        return str(cluster["ID"])
    return None
