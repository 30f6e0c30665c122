"""The process instance plugin: each instance is a local process in its own session.

State lives in `<state_dir>/<id>/instance.json`, so a restarted runtime adopts the processes an
earlier one started. The PID is recorded with its start time so a reused PID is never mistaken
for (or signalled as) an instance. The record is written before the process starts, and the
process carries `INFRAKIT_INSTANCE_ID` and `INFRAKIT_INSTANCE_DIR` in its environment, so a
process whose provision was killed before its PID was recorded is still found (see `provision`).
`INFRAKIT_LOGICAL_ID` is the spec's logical ID, else its `infrakit.logical_id` tag (a Size
group's slot).
"""

from __future__ import annotations

import contextlib
import dataclasses
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

from pydantic import Field

from infrakit.plugins._atomic import (
    PROVISIONING,
    build_dir,
    is_stale,
    is_temp_name,
    remove_dir,
    remove_stale,
    write_json_atomic,
)
from infrakit.plugins._props import Command, EnvMap, PropertiesModel, Text, parse
from infrakit.plugins.instance._dead import DEAD_MARKER, dead_for
from infrakit.plugins.instance._proc import (
    CHILDREN,
    ENV_INSTANCE_DIR,
    ENV_INSTANCE_ID,
    Carrier,
    carriers,
    group_running,
    is_running,
    kill_group,
    proc_stat,
    self_token,
    signal_group,
    stop_carriers,
    token_alive,
)
from infrakit.plugins.instance._watch import PollingWatcher
from infrakit.spi.errors import PluginError
from infrakit.spi.instance import (
    Description,
    InstanceID,
    InstancePlugin,
    Spec,
    Sweepable,
    Unsubscribe,
    Watchable,
    logical_id_or_slot,
    tags_match,
)

log = logging.getLogger(__name__)

ID_PREFIX = "proc-"
RECORD = "instance.json"
OUTPUT = "output.log"
_KILL_WAIT = 5.0  # how long to wait for a SIGKILLed group to disappear


class ProcessOptions(PropertiesModel):
    """The instance properties this plugin understands: `{"Cmd", "Dir", "Env"}`, all optional."""

    cmd: Command | None = Field(default=None, alias="Cmd")
    dir: Text | None = Field(default=None, alias="Dir")
    env: EnvMap | None = Field(default=None, alias="Env")


def parse_options(properties: Any) -> ProcessOptions:
    """Check instance properties (keys case-insensitive, as Go's JSON) and return them parsed;
    every fault raises one `ValidationError`, each with its JSON path."""
    return parse(ProcessOptions, properties)


@dataclass(frozen=True)
class _Record:
    """What `instance.json` says about one instance. `pid` is None while it is provisioned:
    the record is written before the process starts, naming its `provisioner` instead."""

    id: str
    logical_id: str | None
    tags: dict[str, str]
    pid: int | None
    start_time: int | None
    provisioner: str | None
    properties: Any

    @classmethod
    def from_json(cls, instance_id: str, data: Any) -> _Record:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        pid, start = data.get("PID"), data.get("StartTime")
        recorded = pid is not None or start is not None  # None both: being provisioned
        if recorded and (not isinstance(pid, int) or pid <= 0 or not isinstance(start, int)):
            raise ValueError("bad PID or StartTime")
        tags = data.get("Tags") or {}
        spec = data.get("Spec") or {}
        if not isinstance(tags, dict) or not isinstance(spec, dict):
            raise ValueError("Tags or Spec is not an object")
        logical_id = data.get("LogicalID")
        provisioner = data.get("Provisioner")
        return cls(
            id=instance_id,
            logical_id=logical_id if isinstance(logical_id, str) else None,
            tags={str(k): str(v) for k, v in tags.items()},
            pid=pid,
            start_time=start,
            provisioner=provisioner if isinstance(provisioner, str) else None,
            properties=spec.get("Properties"),
        )

    @property
    def running(self) -> bool:
        """Whether the recorded process runs (False while none is recorded)."""
        return (
            self.pid is not None
            and self.start_time is not None
            and is_running(self.pid, self.start_time)
        )

    def describe(self) -> Description:
        return Description(self.id, self.logical_id, dict(self.tags), self.properties)


class ProcessInstancePlugin(InstancePlugin, Watchable, Sweepable):
    """Instances as local processes, each in its own session, with state under `state_dir`.

    `stop_timeout` is how long `destroy` waits after SIGTERM before SIGKILL; directories of
    instances dead for longer than `dead_retention` seconds are removed by `describe_instances`
    (or at once by `sweep`).
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
        """Start the instance's process (detached in its own session); return its ID.

        Killed at any step, it leaves what a later look resolves, never a process no look sees:

        1. The instance directory is built under a hidden name with its record (tags, spec and
           this process as its provisioner; no PID yet), then renamed into place. Before the
           rename only a hidden directory exists, removed once we are gone (`remove_stale`);
           after it, a look knows the instance is being provisioned.
        2. The process starts carrying `INFRAKIT_INSTANCE_ID` and `INFRAKIT_INSTANCE_DIR`. If we
           die before step 3, a later look finds it by them, records its PID and describes it;
           if it never started, the instance is dead.
        3. Its PID and start time are recorded: an ordinary live instance.
        """
        options = parse_options(spec.properties)
        instance_id = f"{ID_PREFIX}{secrets.token_hex(6)}"
        idir = self._dir / instance_id
        record = {
            "ID": instance_id,
            "LogicalID": spec.logical_id,
            "Tags": dict(spec.tags),
            "Spec": spec.to_json(),
            "Provisioner": self_token(),
        }
        with PROVISIONING.holding(idir):
            try:
                build_dir(idir, lambda new: write_json_atomic(new / RECORD, record, fsync=True))
            except OSError as exc:
                raise PluginError(f"cannot create {idir}: {exc}") from exc
            child = self._start(idir, options, spec)
            # Read before the child is shared: nobody can reap it yet, so its stat is there.
            stat = proc_stat(child.pid)
            CHILDREN.add(child)
            start_time = stat.start_time if stat is not None else -1
            started = {**record, "PID": child.pid, "StartTime": start_time}
            try:
                write_json_atomic(idir / RECORD, started, fsync=True)
            except OSError as exc:
                kill_group(child.pid, start_time)
                CHILDREN.wait(child.pid, _KILL_WAIT)
                self._forget(idir)
                raise PluginError(f"cannot record instance {instance_id}: {exc}") from exc
        log.debug("started instance %s as pid %d", instance_id, child.pid)
        return instance_id

    def destroy(self, instance_id: InstanceID) -> None:
        """Stop the instance's processes (SIGTERM, then SIGKILL after `stop_timeout`) and remove
        its directory. An instance that is unknown or already dead is not an error.

        Killed at any step, it leaves the instance (live, or dead and seen as such) for the next
        destroy, or a hidden directory for `sweep`: the directory goes, by a rename, only once
        its processes are gone. One whose PID was never recorded (its provision was killed) is
        stopped by what its processes carry.
        """
        idir = self._instance_dir(instance_id)
        if idir.is_dir():
            record = self._record(instance_id)
            if record is None or not self._stop(record):
                # No PID recorded, or its process group is gone already: stop what carries it.
                self._stop_carriers(instance_id, carriers(self._dir))
            CHILDREN.reap()
            remove_dir(idir)  # renamed first: a concurrent describe cannot add files to it
        with self._lock:
            self._cache.pop(instance_id, None)

    def describe_instances(self, tags: Mapping[str, str]) -> list[Description]:
        """Every instance whose process is alive and whose tags include all of `tags`."""
        wanted = dict(tags)
        return [r.describe() for r in self._live_records() if tags_match(r.tags, wanted)]

    def sweep(self, tags: Mapping[str, str]) -> list[InstanceID]:
        """Remove the remains of every dead instance whose tags include all of `tags`: what
        still runs of it (found by what it carries) and its directory. Also removes, whatever
        the tags, what belongs to no instance: processes whose instance directory is gone,
        directories with no readable record, and hidden leftovers of interrupted provisions and
        destroys. Live instances and those being provisioned are left alone."""
        wanted = dict(tags)
        CHILDREN.reap()
        # Listed before the directories: a process started after this has its directory.
        found = carriers(self._dir)
        swept: set[str] = set()
        names: set[str] = set()
        for entry in self._entries():
            names.add(entry.name)
            record = self._record(entry.name)
            if record is not None and (
                not tags_match(record.tags, wanted) or self._alive(record, found)
            ):
                continue
            if record is not None and record.pid is not None and record.start_time is not None:
                kill_group(record.pid, record.start_time)
            self._stop_carriers(entry.name, found)
            remove_dir(Path(entry.path))
            swept.add(entry.name)
        for carrier in found:
            gone = carrier.instance_dir is not None and not Path(carrier.instance_dir).exists()
            if gone and Path(carrier.instance_dir or "").name not in names:
                self._stop_carriers(carrier.instance_id, [carrier])
                swept.add(carrier.instance_id)
        remove_stale(self._dir, destroyed=True)
        with self._lock:
            for name in swept:
                self._cache.pop(name, None)
        return sorted(swept)

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
            if not record.running:
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

    def _start(self, idir: Path, options: ProcessOptions, spec: Spec) -> subprocess.Popen[bytes]:
        """Start the instance's process in `idir` (already in place), in its own session."""
        env = dict(os.environ)
        env.update(options.env or {})
        env[ENV_INSTANCE_ID] = idir.name
        env[ENV_INSTANCE_DIR] = str(idir)
        env["INFRAKIT_LOGICAL_ID"] = logical_id_or_slot(spec) or ""
        if options.cmd:
            argv = options.cmd
            env["INFRAKIT_INIT"] = spec.init
        else:
            argv = ["/bin/sh", "-c", spec.init]
        try:
            with open(idir / OUTPUT, "ab") as output:
                return subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    cwd=options.dir or idir,
                    env=env,
                    start_new_session=True,
                )
        except (OSError, ValueError) as exc:
            self._forget(idir)  # nothing started: the instance never was
            raise PluginError(f"cannot start {argv[0]!r}: {exc}") from exc

    def _forget(self, idir: Path) -> None:
        """Remove a failed provision's directory; if that fails, a later look finds it dead."""
        try:
            remove_dir(idir)
        except PluginError as error:
            log.warning("%s", error)

    def _instance_dir(self, instance_id: InstanceID) -> Path:
        if not instance_id or "/" in instance_id or is_temp_name(instance_id):
            raise PluginError(f"not an instance ID: {instance_id!r}")
        return self._dir / instance_id

    def _entries(self) -> list[os.DirEntry[str]]:
        """The instance directories (hidden ones left out)."""
        try:
            with os.scandir(self._dir) as it:
                return [
                    e for e in it if not is_temp_name(e.name) and e.is_dir(follow_symlinks=False)
                ]
        except OSError as exc:
            raise PluginError(f"cannot list {self._dir}: {exc}") from exc

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
        """Records of running instances; notes dead ones, removes long-dead directories and
        the hidden leftovers of provisions whose provisioner is gone."""
        CHILDREN.reap()
        live: list[_Record] = []
        unresolved: list[_Record] = []
        hidden: list[os.DirEntry[str]] = []
        names: set[str] = set()
        try:
            it = os.scandir(self._dir)
        except OSError as exc:
            raise PluginError(f"cannot list {self._dir}: {exc}") from exc
        with it:
            for dirent in it:
                if is_temp_name(dirent.name):
                    hidden.append(dirent)
                    continue
                if not dirent.is_dir(follow_symlinks=False):
                    continue
                names.add(dirent.name)
                idir = Path(dirent.path)
                record = self._record(dirent.name)
                if record is not None and record.running:
                    live.append(record)
                elif record is None or record.pid is not None:
                    self._note_dead(idir, record)
                elif idir in PROVISIONING:
                    continue  # being provisioned here: no process yet, or about to record it
                elif (idir / DEAD_MARKER).exists():
                    self._note_dead(idir, record)  # found never started by an earlier look
                else:
                    unresolved.append(record)
        if unresolved:
            live.extend(self._resolve(unresolved))
        self._clean(hidden)
        with self._lock:
            for gone in self._cache.keys() - names:
                del self._cache[gone]
        live.sort(key=lambda r: r.id)
        return live

    def _resolve(self, records: list[_Record]) -> list[_Record]:
        """Settle records with no PID that nobody here is provisioning, by what processes
        carry: a process this plugin started for one (its session leader) is recorded and
        described; with none, one that another live process provisions is left for later,
        and the others never started: dead."""
        found = sorted(carriers(self._dir), key=lambda c: c.start_time)
        live = []
        for record in records:
            idir = self._dir / record.id
            leader = next(
                (
                    c
                    for c in found
                    if c.instance_dir == str(idir)
                    and c.instance_id == record.id
                    and c.pid == c.pgrp
                ),
                None,
            )
            if leader is not None:
                adopted = dataclasses.replace(record, pid=leader.pid, start_time=leader.start_time)
                if not self._provisioner_alive(record):
                    self._write_pid(adopted)
                live.append(adopted)
            elif not self._provisioner_alive(record):
                self._note_dead(idir, record)
        return live

    def _alive(self, record: _Record, found: list[Carrier]) -> bool:
        """Whether an instance runs or may yet run (a sweep leaves it alone)."""
        if record.pid is not None:
            return record.running
        idir = self._dir / record.id
        return (
            idir in PROVISIONING
            or self._provisioner_alive(record)
            or any(c.instance_dir == str(idir) and c.pid == c.pgrp for c in found)
        )

    @staticmethod
    def _provisioner_alive(record: _Record) -> bool:
        """Whether another live process may still start the instance of a record with no PID."""
        provisioner = record.provisioner
        return provisioner is not None and provisioner != self_token() and token_alive(provisioner)

    def _write_pid(self, record: _Record) -> None:
        """Record the PID of an instance found running after its provisioner died."""
        path = self._dir / record.id / RECORD
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data.update(PID=record.pid, StartTime=record.start_time)
            write_json_atomic(path, data, fsync=True)
            remove_stale(path.parent)  # the temp file of the write the provisioner never ended
        except (OSError, ValueError, PluginError) as exc:
            log.warning("cannot record the PID of instance %s: %s", record.id, exc)
            return
        log.info("instance %s was started but not recorded: found as pid %s", record.id, record.pid)

    def _note_dead(self, idir: Path, record: _Record | None) -> None:
        """Mark a dead instance's directory and, when first seen dead, kill what is left of its
        process group (the instance went with its leader); remove the directory once dead for
        `dead_retention`, with whatever still carries the instance."""
        unrecorded = record is None
        dead = dead_for(idir, since=idir if unrecorded else None)
        if dead is None:
            log.debug("instance %s is no longer running", idir.name)
            if record is not None and record.pid is not None and record.start_time is not None:
                kill_group(record.pid, record.start_time)
        elif dead > self._dead_retention:
            log.info("removing directory of long-dead instance %s", idir.name)
            try:
                self._stop_carriers(idir.name, carriers(self._dir))
                remove_dir(idir)
            except PluginError as error:
                log.warning("%s", error)

    def _clean(self, hidden: list[os.DirEntry[str]]) -> None:
        """Remove hidden directories of provisions whose provisioner is gone (no process was
        ever started from one) and temp files whose writer is gone."""
        for entry in hidden:
            if not is_stale(entry):
                continue
            log.info("removing %s, left by an interrupted provision", entry.name)
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)

    def _stop(self, record: _Record) -> bool:
        """SIGTERM the group, wait up to `stop_timeout` for it to go, then SIGKILL it.

        Returns False if no PID is recorded or no process of the group was there to signal.
        """
        if record.pid is None or record.start_time is None:
            return False
        if not signal_group(record.pid, record.start_time, signal.SIGTERM):
            return False
        if self._wait_group_gone(record.pid, self._stop_timeout):
            return True
        log.warning("instance %s ignored SIGTERM; killing it", record.id)
        signal_group(record.pid, record.start_time, signal.SIGKILL)
        if not self._wait_group_gone(record.pid, _KILL_WAIT):
            raise PluginError(f"instance {record.id} (pid {record.pid}) did not die")
        return True

    def _stop_carriers(self, instance_id: str, found: list[Carrier]) -> None:
        """Stop the processes in `found` that carry `instance_id` of this state directory."""
        idir = str(self._dir / instance_id)
        mine = [c for c in found if c.instance_id == instance_id and c.instance_dir in (idir, None)]
        if mine and not stop_carriers(mine, self._stop_timeout):
            raise PluginError(f"processes of instance {instance_id} did not die")

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
