"""The file instance plugin: each instance is one JSON file in a directory (InfraKit's dev plugin).

Deleting a file loses the instance, which makes it handy for trying out group supervision. A
file is written whole (a temp file renamed into place), so it is an instance from the moment it
exists; the temp file of a write whose writer was killed is removed by a later look.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infrakit.plugins._atomic import (
    TEMP_PREFIX,
    is_stale,
    is_temp_name,
    remove_stale,
    write_json_atomic,
)
from infrakit.plugins.instance._watch import DirectoryWatcher, PollingWatcher
from infrakit.spi.errors import PluginError, ValidationError
from infrakit.spi.instance import (
    Changes,
    ChangeWatchable,
    Description,
    InstanceID,
    InstancePlugin,
    Spec,
    Sweepable,
    Unsubscribe,
    Watchable,
    tags_match,
)

log = logging.getLogger(__name__)

ID_PREFIX = "instance-"

# A directory listing is re-read by the watcher when the directory's mtime changed, when the
# mtime is this recent (a change within the same timestamp tick could otherwise be missed) and
# at least this often anyway (clock skew on network filesystems).
_RACY_NS = 2_000_000_000
_FULL_RESCAN_S = 10.0

_FileKey = tuple[int, int, int]  # (mtime_ns, size, inode)

# Instance IDs: 48 random bits, as before, from a generator seeded by the OS once (asking the
# OS for each of 10,000 IDs cost a tenth of a converge); they need to be unique, not secret.
_ids = random.Random(os.urandom(32))


@dataclass(frozen=True)
class _Entry:
    """One cached file: its stat key and what it parsed to (None if corrupt/unreadable)."""

    key: _FileKey
    instance: Description | None


def _file_key(st: os.stat_result) -> _FileKey:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _parse_record(name: str, data: Any) -> Description:
    """Turn a file's JSON into a Description; the file name is the instance ID."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    tags = data.get("Tags") or {}
    if not isinstance(tags, dict):
        raise ValueError("Tags is not an object")
    logical_id = data.get("LogicalID")
    if logical_id is not None and not isinstance(logical_id, str):
        raise ValueError("LogicalID is not a string")
    spec = data.get("Spec") or {}
    if not isinstance(spec, dict):
        raise ValueError("Spec is not an object")
    return Description(
        id=name,
        logical_id=logical_id,
        tags={str(k): str(v) for k, v in tags.items()},
        properties=spec.get("Properties"),
    )


def check_properties(properties: Any) -> None:
    """Accept any properties that can be stored as JSON (the plugin's whole validation)."""
    try:
        json.dumps(properties)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(f"not JSON: {exc}") from exc


class FileInstancePlugin(InstancePlugin, Watchable, ChangeWatchable, Sweepable):
    """Instances as JSON files named by instance ID in `directory`.

    `describe_instances` lists the directory once per call and parses only files it has not
    seen (every `full_scan_every` seconds it stats them all, to catch one edited in place),
    so thousands of instances can be described every second; no lock is held while it
    lists, so provisions go on meanwhile. Returned descriptions share their `properties` with
    the cache: treat them as read-only. A full scan also removes temp files whose writer is
    gone. The watcher says which files appeared or vanished (`watch_changes`).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        watch_interval: float = 0.05,
        full_scan_every: float = 10.0,
    ) -> None:
        self._dir = Path(directory)
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = threading.Lock()  # guards _cache and _written; never held across I/O
        self._written: set[str] = set()  # names this plugin wrote since the last scan began
        self._last_full_scan = 0.0
        # Every this many seconds a describe stats every file, to notice one edited in place;
        # less often if that costs more than 2 % of a core (at 100,000 files it takes 0.5 s).
        self._full_scan_every = full_scan_every
        self._full_scan_cost = 0.0
        self._write_lock = threading.Lock()  # serialises read-modify-write (label)
        self._cache: dict[str, _Entry] = {}
        self._watcher = PollingWatcher(
            self._listing, watch_interval, name=f"file-instance-watch:{self._dir}"
        )
        # The kernel's notices where it gives them: a change costs what changed, not a
        # listing of the whole directory (100 ms at 100,000 files).
        self._notices = DirectoryWatcher.create(
            str(self._dir), is_temp_name, name=f"file-instance-notices:{self._dir}"
        )
        self._listing_key: tuple[int, int] | None = None
        self._listing_at = 0.0
        self._listing_names: frozenset[str] = frozenset()

    @property
    def directory(self) -> Path:
        """The directory holding one JSON file per instance."""
        return self._dir

    def validate(self, properties: Any) -> None:
        """Accept any properties that can be stored as JSON."""
        check_properties(properties)

    def provision(self, spec: Spec) -> InstanceID:
        """Write a new instance file carrying the spec; return its ID (`instance-<hex>`).

        The file is written whole under a temp name and renamed into place: killed before the
        rename, only the temp file is left, and a later look removes it once we are gone.
        """
        instance_id = f"{ID_PREFIX}{_ids.getrandbits(48):012x}"
        record = {
            "ID": instance_id,
            "LogicalID": spec.logical_id,
            "Tags": dict(spec.tags),
            "Spec": spec.to_json(),
        }
        path = self._dir / instance_id
        try:
            st = write_json_atomic(path, record, indent=None)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"not JSON: {exc}") from exc
        except OSError as exc:
            raise PluginError(f"cannot write instance file {path}: {exc}") from exc
        description = _parse_record(instance_id, record)
        with self._lock:
            self._cache[instance_id] = _Entry(_file_key(st), description)
            self._written.add(instance_id)
        return instance_id

    def destroy(self, instance_id: InstanceID) -> None:
        """Delete the instance's file; one already gone is fine."""
        path = self._path_of(instance_id)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise PluginError(f"cannot remove instance file {path}: {exc}") from exc
        with self._lock:
            self._cache.pop(instance_id, None)

    def describe_instances(self, tags: Mapping[str, str]) -> list[Description]:
        """Every instance file whose tags include all of `tags` (corrupt files are skipped)."""
        wanted = dict(tags)
        out: list[Description] = []
        found, temps = self._scan()
        for instance in found:
            if wanted and not tags_match(instance.tags, wanted):
                continue
            out.append(instance)  # shared with the cache: descriptions are read-only
        for entry in temps:
            if is_stale(entry):
                log.info("removing %s, left by an interrupted write", entry.name)
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
        out.sort(key=lambda d: d.id)
        return out

    def sweep(self, tags: Mapping[str, str]) -> list[InstanceID]:
        """Remove temp files whose writer is gone, whatever `tags` (they belong to no
        instance). Every instance file is a live instance, so none is swept: returns []."""
        remove_stale(self._dir)
        return []

    def label(self, instance_id: InstanceID, labels: Mapping[str, str]) -> None:
        """Merge `labels` into the instance's tags (rewriting its file atomically)."""
        path = self._path_of(instance_id)
        with self._write_lock:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise PluginError(f"no such instance: {instance_id}") from None
            except (OSError, ValueError) as exc:
                raise PluginError(f"cannot read instance file {path}: {exc}") from exc
            try:
                _parse_record(instance_id, data)
            except ValueError as exc:
                raise PluginError(f"instance file {path} is corrupt: {exc}") from exc
            data["Tags"] = {**(data.get("Tags") or {}), **labels}
            try:
                st = write_json_atomic(path, data, indent=None)
            except OSError as exc:
                raise PluginError(f"cannot write instance file {path}: {exc}") from exc
        with self._lock:
            self._cache[instance_id] = _Entry(_file_key(st), _parse_record(instance_id, data))
            self._written.add(instance_id)

    def watch(self, callback: Callable[[], None]) -> Unsubscribe:
        """Call `callback` (from a daemon thread) whenever instance files appear or vanish."""
        return self._watcher.subscribe(callback)

    def watch_changes(self, callback: Callable[[Changes], None]) -> Unsubscribe:
        """Call `callback` (from a daemon thread) with the instance files that appeared or
        vanished, whenever some did."""
        if self._notices is not None:
            return self._notices.subscribe(callback)

        def diff(before: frozenset[str], after: frozenset[str]) -> None:
            callback(Changes(appeared=after - before, gone=before - after))

        return self._watcher.subscribe_diff(diff)

    def close(self) -> None:
        """Stop the watcher threads, dropping every subscriber."""
        self._watcher.close()
        if self._notices is not None:
            self._notices.close()

    def _path_of(self, instance_id: InstanceID) -> Path:
        if not instance_id or "/" in instance_id or instance_id in (".", ".."):
            raise PluginError(f"not an instance ID: {instance_id!r}")
        return self._dir / instance_id

    def _scan(self) -> tuple[list[Description], list[os.DirEntry[str]]]:
        """List the directory once, refreshing the cache, with no lock held while listing.

        Returns the instances found (corrupt files left out) and, on a full scan, the temp
        files seen. This runs every describe over every file, so the loop is kept lean: a new
        name is read, a known one is taken from the cache, and only every `full_scan_every`
        seconds (or more, see above) is every file stat'ed to catch one edited in place (this
        plugin's own writes replace files, and update the cache).
        """
        found: list[Description] = []
        temps: list[os.DirEntry[str]] = []
        with self._lock:
            cache = self._cache
            self._written = set()
            now = time.monotonic()
            every = self._full_scan_every  # 0: every describe (as tests ask)
            if every:
                every = max(every, 50 * self._full_scan_cost)
            full = now - self._last_full_scan >= every
            if full:
                self._last_full_scan = now
        began = time.thread_time()
        fresh: dict[str, _Entry] = {}
        try:
            it = os.scandir(self._dir)
        except OSError as exc:
            raise PluginError(f"cannot list instance directory {self._dir}: {exc}") from exc
        with it:
            for dirent in it:
                name = dirent.name
                known = cache.get(name)
                if known is not None and not full:
                    fresh[name] = known
                    if known.instance is not None:
                        found.append(known.instance)
                    continue
                try:
                    if name.startswith(TEMP_PREFIX):
                        if full:
                            temps.append(dirent)
                        continue
                    if not dirent.is_file():
                        continue
                    st = dirent.stat()
                except OSError:
                    continue  # vanished since listed
                key = (st.st_mtime_ns, st.st_size, st.st_ino)
                entry = known if known is not None and known.key == key else None
                if entry is None:
                    entry = self._load(dirent.path, name, key)
                    if entry is None:
                        continue
                fresh[name] = entry
                if entry.instance is not None:
                    found.append(entry.instance)
        with self._lock:
            # What this plugin wrote while the directory was listed is kept, listed or not.
            for name in self._written:
                entry = self._cache.get(name)
                if entry is not None:
                    fresh[name] = entry
            self._cache = fresh
            if full:
                self._full_scan_cost = time.thread_time() - began
        return found, temps

    def _load(self, path: str, name: str, key: _FileKey) -> _Entry | None:
        """Parse one file; a corrupt or unreadable one is cached as such and warned about once."""
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read())
            return _Entry(key, _parse_record(name, data))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring instance file %s: %s", path, exc)
            return _Entry(key, None)

    def _listing(self) -> frozenset[str]:
        """The instance file names, re-listed only when the directory may have changed."""
        try:
            st = os.stat(self._dir)
        except OSError:
            return frozenset()
        key = (st.st_mtime_ns, st.st_ino)
        now = time.monotonic()
        racy = time.time_ns() - st.st_mtime_ns < _RACY_NS
        if key != self._listing_key or racy or now - self._listing_at > _FULL_RESCAN_S:
            with contextlib.suppress(OSError), os.scandir(self._dir) as it:
                self._listing_names = frozenset(
                    d.name for d in it if not is_temp_name(d.name) and d.is_file()
                )
            self._listing_key, self._listing_at = key, now
        return self._listing_names
