"""The process instance plugin: each instance is a local process in its own session.

State lives in `<state_dir>/<id>/instance.json`, so a restarted runtime adopts the processes an
earlier one started. The PID is recorded with its start time so a reused PID is never mistaken
for (or signalled as) an instance.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infrakit.plugins._atomic import is_temp_name, remove_dir, write_json_atomic
from infrakit.plugins._props import join_path, object_fields, string_list, string_map
from infrakit.plugins.instance._dead import dead_for
from infrakit.plugins.instance._proc import (
    CHILDREN,
    group_running,
    is_running,
    kill_group,
    proc_stat,
    signal_group,
)
from infrakit.plugins.instance._watch import PollingWatcher
from infrakit.spi.errors import PluginError, ValidationError
from infrakit.spi.instance import (
    Description,
    InstanceID,
    InstancePlugin,
    Spec,
    Unsubscribe,
    Watchable,
    tags_match,
)

log = logging.getLogger(__name__)

ID_PREFIX = "proc-"
RECORD = "instance.json"
OUTPUT = "output.log"
_KILL_WAIT = 5.0  # how long to wait for a SIGKILLed group to disappear


@dataclass(frozen=True)
class ProcessOptions:
    """The instance properties this plugin understands: `{"Cmd", "Dir", "Env"}`, all optional."""

    cmd: list[str] | None = None
    dir: str | None = None
    env: dict[str, str] | None = None


def parse_options(properties: Any) -> ProcessOptions:
    """Check instance properties (keys case-insensitive, as Go's JSON) and return them parsed."""
    if properties is None:
        return ProcessOptions()
    fields = object_fields(properties, ("Cmd", "Dir", "Env"))
    cmd = fields.get("Cmd")
    if cmd is not None:
        cmd = string_list(cmd, "Cmd", non_empty=True)
        for i, arg in enumerate(cmd):
            if "\0" in arg:
                raise ValidationError("must not contain a NUL character", path=f"Cmd[{i}]")
    workdir = fields.get("Dir")
    if workdir is not None and (not isinstance(workdir, str) or not workdir):
        raise ValidationError("must be a non-empty string", path="Dir")
    env = fields.get("Env")
    if env is not None:
        env = string_map(env, "Env")
        for key, value in env.items():
            if not key or "=" in key or "\0" in key or "\0" in value:
                raise ValidationError(
                    "not a valid environment variable", path=join_path("Env", key)
                )
    return ProcessOptions(cmd=cmd, dir=workdir, env=env)


@dataclass(frozen=True)
class _Record:
    """What `instance.json` says about one instance."""

    id: str
    logical_id: str | None
    tags: dict[str, str]
    pid: int
    start_time: int
    properties: Any

    @classmethod
    def from_json(cls, instance_id: str, data: Any) -> _Record:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        pid, start = data.get("PID"), data.get("StartTime")
        if not isinstance(pid, int) or pid <= 0 or not isinstance(start, int):
            raise ValueError("PID or StartTime missing")
        tags = data.get("Tags") or {}
        spec = data.get("Spec") or {}
        if not isinstance(tags, dict) or not isinstance(spec, dict):
            raise ValueError("Tags or Spec is not an object")
        logical_id = data.get("LogicalID")
        return cls(
            id=instance_id,
            logical_id=logical_id if isinstance(logical_id, str) else None,
            tags={str(k): str(v) for k, v in tags.items()},
            pid=pid,
            start_time=start,
            properties=spec.get("Properties"),
        )

    def describe(self) -> Description:
        return Description(self.id, self.logical_id, dict(self.tags), self.properties)


class ProcessInstancePlugin(InstancePlugin, Watchable):
    """Instances as local processes, each in its own session, with state under `state_dir`.

    `stop_timeout` is how long `destroy` waits after SIGTERM before SIGKILL; directories of
    instances dead for longer than `dead_retention` seconds are removed by `describe_instances`.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        stop_timeout: float = 5.0,
        watch_interval: float = 0.2,
        dead_retention: float = 3600.0,
    ) -> None:
        self._dir = Path(state_dir)
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._stop_timeout = stop_timeout
        self._dead_retention = dead_retention
        self._lock = threading.Lock()  # guards _cache and read-modify-write of records
        self._cache: dict[str, tuple[tuple[int, int, int], _Record | None]] = {}
        self._watcher = PollingWatcher(
            self._alive_ids, watch_interval, name=f"process-instance-watch:{self._dir}"
        )

    @property
    def state_dir(self) -> Path:
        """The directory holding one subdirectory per instance."""
        return self._dir

    def validate(self, properties: Any) -> None:
        """Accept null or `{"Cmd": [argv...], "Dir": str, "Env": {str: str}}`."""
        parse_options(properties)

    def provision(self, spec: Spec) -> InstanceID:
        """Start the instance's process (detached in its own session); return its ID."""
        options = parse_options(spec.properties)
        instance_id = f"{ID_PREFIX}{secrets.token_hex(6)}"
        idir = self._dir / instance_id
        try:
            idir.mkdir(mode=0o700)
        except OSError as exc:
            raise PluginError(f"cannot create {idir}: {exc}") from exc
        env = dict(os.environ)
        env.update(options.env or {})
        env["INFRAKIT_INSTANCE_ID"] = instance_id
        env["INFRAKIT_LOGICAL_ID"] = spec.logical_id or ""
        if options.cmd:
            argv = options.cmd
            env["INFRAKIT_INIT"] = spec.init
        else:
            argv = ["/bin/sh", "-c", spec.init]
        try:
            with open(idir / OUTPUT, "ab") as output:
                child = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    cwd=options.dir or idir,
                    env=env,
                    start_new_session=True,
                )
        except (OSError, ValueError) as exc:
            shutil.rmtree(idir, ignore_errors=True)
            raise PluginError(f"cannot start {argv[0]!r}: {exc}") from exc
        CHILDREN.add(child)
        # The child cannot be reaped before we poll it, so its stat is readable even if it ended.
        stat = proc_stat(child.pid)
        start_time = stat.start_time if stat is not None else -1
        record = {
            "ID": instance_id,
            "LogicalID": spec.logical_id,
            "Tags": dict(spec.tags),
            "PID": child.pid,
            "StartTime": start_time,
            "Spec": spec.to_json(),
        }
        try:
            write_json_atomic(idir / RECORD, record, fsync=True)
        except OSError as exc:
            kill_group(child.pid, start_time)
            CHILDREN.wait(child.pid, _KILL_WAIT)
            shutil.rmtree(idir, ignore_errors=True)
            raise PluginError(f"cannot record instance {instance_id}: {exc}") from exc
        log.debug("started instance %s as pid %d", instance_id, child.pid)
        return instance_id

    def destroy(self, instance_id: InstanceID) -> None:
        """Stop the process group (SIGTERM, then SIGKILL after `stop_timeout`); remove its dir.

        An instance that is unknown or already dead is not an error.
        """
        idir = self._instance_dir(instance_id)
        record = self._record(instance_id)
        if record is not None and self._stop(record):
            log.debug("stopped instance %s (pid %d)", instance_id, record.pid)
        CHILDREN.reap()
        remove_dir(idir)  # renamed first: a concurrent describe cannot add files to it
        with self._lock:
            self._cache.pop(instance_id, None)

    def describe_instances(self, tags: Mapping[str, str]) -> list[Description]:
        """Every instance whose process is alive and whose tags include all of `tags`."""
        wanted = dict(tags)
        return [r.describe() for r in self._live_records() if tags_match(r.tags, wanted)]

    def label(self, instance_id: InstanceID, labels: Mapping[str, str]) -> None:
        """Merge `labels` into a live instance's tags."""
        path = self._instance_dir(instance_id) / RECORD
        with self._lock:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                record = _Record.from_json(instance_id, data)
            except FileNotFoundError:
                raise PluginError(f"no such instance: {instance_id}") from None
            except (OSError, ValueError) as exc:
                raise PluginError(f"cannot read {path}: {exc}") from exc
            if not is_running(record.pid, record.start_time):
                raise PluginError(f"instance {instance_id} is not running")
            data["Tags"] = {**record.tags, **labels}
            try:
                write_json_atomic(path, data, fsync=True)
            except OSError as exc:
                raise PluginError(f"cannot write {path}: {exc}") from exc

    def watch(self, callback: Callable[[], None]) -> Unsubscribe:
        """Call `callback` (from a daemon thread) whenever an instance starts or dies."""
        return self._watcher.subscribe(callback)

    def close(self) -> None:
        """Stop the watcher thread. The instances' processes keep running."""
        self._watcher.close()

    # -- internals -------------------------------------------------------------------------

    def _instance_dir(self, instance_id: InstanceID) -> Path:
        if not instance_id or "/" in instance_id or is_temp_name(instance_id):
            raise PluginError(f"not an instance ID: {instance_id!r}")
        return self._dir / instance_id

    def _record(self, instance_id: str) -> _Record | None:
        """The instance's record via a cache keyed by (mtime, size, inode); None if unusable."""
        path = self._dir / instance_id / RECORD
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            cached = self._cache.get(instance_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        record: _Record | None
        try:
            record = _Record.from_json(instance_id, json.loads(path.read_bytes()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring instance record %s: %s", path, exc)
            record = None
        with self._lock:
            self._cache[instance_id] = (key, record)
        return record

    def _live_records(self) -> list[_Record]:
        """Records of running instances; notes dead ones and removes long-dead directories."""
        CHILDREN.reap()
        live: list[_Record] = []
        names: set[str] = set()
        try:
            it = os.scandir(self._dir)
        except OSError as exc:
            raise PluginError(f"cannot list {self._dir}: {exc}") from exc
        with it:
            for dirent in it:
                if is_temp_name(dirent.name) or not dirent.is_dir(follow_symlinks=False):
                    continue
                names.add(dirent.name)
                record = self._record(dirent.name)
                if record is not None and is_running(record.pid, record.start_time):
                    live.append(record)
                else:
                    self._note_dead(Path(dirent.path), record is None)
        with self._lock:
            for gone in self._cache.keys() - names:
                del self._cache[gone]
        live.sort(key=lambda r: r.id)
        return live

    def _note_dead(self, idir: Path, unrecorded: bool) -> None:
        """Mark a dead instance's directory; remove it once dead for `dead_retention`."""
        dead = dead_for(idir, since=idir if unrecorded else None)
        if dead is None:
            log.debug("instance %s is no longer running", idir.name)
        elif dead > self._dead_retention:
            log.info("removing directory of long-dead instance %s", idir.name)
            shutil.rmtree(idir, ignore_errors=True)

    def _stop(self, record: _Record) -> bool:
        """SIGTERM the group, wait up to `stop_timeout` for it to go, then SIGKILL it."""
        if not signal_group(record.pid, record.start_time, signal.SIGTERM):
            return False
        if self._wait_group_gone(record.pid, self._stop_timeout):
            return True
        log.warning("instance %s ignored SIGTERM; killing it", record.id)
        signal_group(record.pid, record.start_time, signal.SIGKILL)
        if not self._wait_group_gone(record.pid, _KILL_WAIT):
            raise PluginError(f"instance {record.id} (pid {record.pid}) did not die")
        return True

    @staticmethod
    def _wait_group_gone(pgid: int, timeout: float) -> bool:
        """Wait until no live process is left in group `pgid`; False if `timeout` passes first."""
        deadline = time.monotonic() + timeout
        CHILDREN.wait(pgid, timeout)  # blocks efficiently if the leader is our child
        delay = 0.002
        while True:
            CHILDREN.reap()
            if not group_running(pgid):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.05)

    def _alive_ids(self) -> frozenset[str]:
        return frozenset(r.id for r in self._live_records())
