"""The plugin's working directory as describe reads it: the instance files and Terraform's
state, each parsed again only when it changed (a look every second costs a listing and a few
stats), with no lock held while reading."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from infrakit.plugins.instance.terraform import resource, state
from infrakit.spi.errors import PluginError

log = logging.getLogger(__name__)

_FileKey = tuple[int, int, int]  # (mtime_ns, size, inode)


def _key(st: os.stat_result) -> _FileKey:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class WorkDir:
    """The instance files and the state of `directory`, cached by their stat."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()  # guards the caches; never held across I/O
        self._files: dict[str, tuple[_FileKey, resource.InstanceFile | None]] = {}
        self._state: tuple[_FileKey | None, dict[str, state.Resource]] = (None, {})

    def path(self, instance_id: str) -> Path:
        """The file of instance `instance_id`."""
        return self.directory / resource.file_name(instance_id)

    def files(self) -> dict[str, resource.InstanceFile]:
        """Instance ID -> what its file declares, for every readable instance file (one that
        cannot be read is logged once and left out). PluginError if the directory cannot be
        listed."""
        try:
            with os.scandir(self.directory) as it:
                named = [(resource.instance_of(e.name), e) for e in it]
        except OSError as error:
            raise PluginError(f"cannot list {self.directory}: {error}") from None
        with self._lock:
            cached = dict(self._files)
        found: dict[str, tuple[_FileKey, resource.InstanceFile | None]] = {}
        for instance_id, entry in named:
            if instance_id is None:
                continue
            try:
                key = _key(entry.stat(follow_symlinks=False))
            except FileNotFoundError:
                continue
            known = cached.get(instance_id)
            if known is not None and known[0] == key:
                found[instance_id] = known
            else:
                found[instance_id] = (key, _read(instance_id, Path(entry.path)))
        with self._lock:
            self._files = found
        return {k: declared for k, (_, declared) in found.items() if declared is not None}

    def state(self) -> tuple[dict[str, state.Resource], bool]:
        """The resources in the state, and whether they were read whole just now: Terraform
        rewrites its state in place, and a read that catches half of it gets the resources
        last read whole instead. PluginError if the state cannot be read at all."""
        path = self.directory / state.STATE_FILE
        try:
            key: _FileKey | None = _key(path.stat())
        except FileNotFoundError:
            key = None
        except OSError as error:
            raise PluginError(f"cannot read {path}: {error}") from None
        with self._lock:
            cached_key, cached = self._state
        if key == cached_key:
            return cached, True
        try:
            resources = state.read(self.directory)
        except ValueError:
            return cached, False
        except OSError as error:
            raise PluginError(f"cannot read {path}: {error}") from None
        with self._lock:
            self._state = (key, resources)
        return resources, True


def _read(instance_id: str, path: Path) -> resource.InstanceFile | None:
    try:
        return resource.read(json.loads(path.read_text(encoding="utf-8")), instance_id)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log.warning("ignoring %s: %s", path, error)
        return None
