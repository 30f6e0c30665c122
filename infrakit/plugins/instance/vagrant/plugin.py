"""The vagrant instance plugin: each instance is a Vagrant machine in its own directory.

As InfraKit's vagrant plugin did, an instance is a directory `<state_dir>/<id>/` holding a
rendered `Vagrantfile`, the flavor's Init as `boot.sh` and the instance's tags as JSON in `tags`;
provisioning is `vagrant up`, destroying is `vagrant destroy -f` and removing the directory.
Vagrant is driven through python-vagrant, offline (no version check, no box update check).

Its properties are in `options.py`, its Vagrantfile in `vagrantfile.py`.

`describe_instances` does not run `vagrant status` for docker-provider machines (each costs a
second or more of Ruby start-up): it asks the Docker engine once, with `docker ps`, which
machines' containers run (each carries the label `infrakit.vagrant.instance=<id>`, even one
Vagrant never recorded). Machines of other providers are asked with `vagrant status`,
concurrently.

The directory, with its tags, is in place before `vagrant up` runs, and a machine is described
while its provisioning is alive, so a provision killed mid-`vagrant up` (which carries on
without it) leaves nothing unseen (see `provision`). `sweep` destroys a group's dead machines,
directories, containers and `vagrant global-status` entries.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import vagrant

from infrakit.plugins._atomic import (
    PROVISIONING,
    build_dir,
    is_temp_name,
    remove_dir,
    remove_stale,
    write_json_atomic,
)
from infrakit.plugins.instance._dead import dead_for, seen_alive
from infrakit.plugins.instance._proc import (
    ENV_INSTANCE_DIR,
    ENV_INSTANCE_ID,
    carriers,
    self_token,
    stop_carriers,
    token_alive,
)
from infrakit.plugins.instance.vagrant.options import DEFAULT_PROVIDER, parse_options
from infrakit.plugins.instance.vagrant.vagrantfile import (
    BOOT_SCRIPT,
    INSTANCE_LABEL,
    render_vagrantfile,
)
from infrakit.spi.errors import PluginError
from infrakit.spi.instance import (
    Description,
    InstanceID,
    InstancePlugin,
    Spec,
    Sweepable,
    logical_id_or_slot,
    tags_match,
)

log = logging.getLogger(__name__)

ID_PREFIX = "vagrant-"
VAGRANTFILE = "Vagrantfile"
TAGS = "tags"
RECORD = "instance.json"  # ID, LogicalID, Provider and Properties of the instance
PROVISIONING_MARKER = "provisioning"  # while `vagrant up` runs: who runs it (<pid>-<start>)
OUTPUT = "vagrant.log"  # what Vagrant printed, every command appended
MACHINE = "default"

# Set for every Vagrant run: work offline, plain output.
_VAGRANT_ENV = {
    "VAGRANT_CHECKPOINT_DISABLE": "1",
    "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1",
    "VAGRANT_NO_COLOR": "1",
}
# Dropped from the environment: they would point Vagrant away from the instance directory.
_DROPPED_ENV = frozenset(
    {"VAGRANT_CWD", "VAGRANT_VAGRANTFILE", "VAGRANT_DOTFILE_PATH", "VAGRANT_FORCE_COLOR"}
)
# A Vagrant run that failed with one of these in its output is tried again:
_TRANSIENT_MARKERS = (
    # Vagrant's own locks, busy with another Vagrant process.
    "lock is being held by another instance of Vagrant",
    "another process is already executing an action on the machine",
    # Before creating a container, the docker provider lists every container on the engine
    # and `docker inspect`s each (to find forwarded ports in use): one removed in between, by
    # anybody, fails the `vagrant up` before it made anything ("Error: No such object").
    'Command: ["docker", "inspect", ',
)
_RETRY_FOR = 60.0  # seconds: how long to keep trying a run that failed for a passing reason
_RETRY_BACKOFF = 0.25  # seconds, doubled after each retry up to _RETRY_BACKOFF_MAX
_RETRY_BACKOFF_MAX = 2.0
_OUTPUT_TAIL_LINES = 12
_STATUS_WORKERS = 8  # concurrent `vagrant status` runs in one describe
_CLI_TIMEOUT = 30.0  # a `docker ps` or `vagrant global-status`
_STOP_RUN_TIMEOUT = 10.0  # an orphaned `vagrant up`: SIGTERM, then SIGKILL after this


@dataclass(frozen=True)
class _Found:
    """One instance directory as describe sees it (before asking whether it runs)."""

    id: str
    path: Path
    tags: dict[str, str]
    logical_id: str | None
    provider: str
    properties: Any

    def describe(self) -> Description:
        return Description(self.id, self.logical_id, dict(self.tags), self.properties)


class VagrantInstancePlugin(InstancePlugin, Sweepable):
    """Instances as Vagrant machines, one directory each under `state_dir`.

    `vagrant_bin` is the `vagrant` executable (default: the one on PATH) and `docker_bin` the
    `docker` CLI used to ask about docker-provider machines (default: the one on PATH). Every
    method is safe to call from many threads at once; slow `vagrant up`s of different instances
    run in parallel (no lock is held across a Vagrant run).

    A machine that stops running (its container exited, its VM powered off) is no longer
    described, so its group replaces it; once it has been seen stopped for `dead_retention`
    seconds, `describe_instances` destroys it in the background (`vagrant destroy -f` and its
    directory). A `dead` file in the instance directory says since when it is stopped.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        vagrant_bin: str | None = None,
        docker_bin: str | None = None,
        dead_retention: float = 3600.0,
    ) -> None:
        self._dir = Path(state_dir)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._vagrant_bin = vagrant_bin
        self._docker_bin = docker_bin
        self._env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        self._env.update(_VAGRANT_ENV)
        self._dead_retention = dead_retention
        self._lock = threading.Lock()  # guards the dicts below; never held across a slow call
        self._tags_lock = threading.Lock()  # serialises read-modify-write of tags files
        self._destroy_locks: dict[str, threading.Lock] = {}  # one destroy per instance at a time
        self._reapers: dict[str, threading.Thread] = {}  # destroying long-dead machines

    @property
    def state_dir(self) -> Path:
        """The directory holding one subdirectory per instance."""
        return self._dir

    def validate(self, properties: Any) -> None:
        """Check the properties, including that a `Template` renders."""
        options = parse_options(properties)
        render_vagrantfile(options, f"{ID_PREFIX}000000000000")

    def provision(self, spec: Spec) -> InstanceID:
        """Make the instance's directory and `vagrant up` it; return once that succeeded.

        A failed `vagrant up` raises `PluginError` with the end of Vagrant's output, after
        destroying whatever it made. Killed at any step, it leaves what a look or a sweep
        settles, never a machine no look sees:

        1. The directory is built under a hidden name with its Vagrantfile, `boot.sh`, record,
           tags and a `provisioning` marker naming this process, then renamed into place.
           Before the rename only a hidden directory exists (removed once we are gone); after
           it, the instance is described while its provisioning is alive.
        2. `vagrant up` runs with `INFRAKIT_INSTANCE_ID` and `INFRAKIT_INSTANCE_DIR` in its
           environment. If we die, it carries on alone: the instance is described while a
           process carries it or its machine runs, and a destroy stops that run first.
        3. The marker goes: from now on the instance lives while its machine runs.
        """
        options = parse_options(spec.properties)
        instance_id = f"{ID_PREFIX}{secrets.token_hex(6)}"
        vagrantfile = render_vagrantfile(
            options, instance_id, spec.logical_id, logical_id_or_slot(spec)
        )
        idir = self._dir / instance_id
        record = {
            "ID": instance_id,
            "LogicalID": spec.logical_id,
            "Provider": options.provider,
            "Properties": spec.properties,
        }

        def fill(new: Path) -> None:
            (new / VAGRANTFILE).write_text(vagrantfile, encoding="utf-8")
            boot = new / BOOT_SCRIPT
            boot.write_text(spec.init, encoding="utf-8")
            boot.chmod(0o755)
            write_json_atomic(new / RECORD, record)
            write_json_atomic(new / TAGS, dict(spec.tags))
            (new / PROVISIONING_MARKER).write_text(self_token(), encoding="utf-8")

        with PROVISIONING.holding(idir):
            try:
                build_dir(idir, fill, mode=0o755)
            except (OSError, TypeError, ValueError) as exc:
                raise PluginError(f"cannot prepare {idir}: {exc}") from exc
            started = time.monotonic()
            try:
                self._vagrant(
                    idir, options.provider, "up", lambda v: v.up(provider=options.provider)
                )
            except Exception:
                self._discard(instance_id, options.provider)
                raise
            with contextlib.suppress(OSError):
                (idir / PROVISIONING_MARKER).unlink()
        log.debug("vagrant up of %s took %.1fs", instance_id, time.monotonic() - started)
        return instance_id

    def destroy(self, instance_id: InstanceID) -> None:
        """`vagrant destroy -f` the machine and remove its directory; a missing one is fine."""
        idir = self._instance_dir(instance_id)
        with self._lock:
            lock = self._destroy_locks.setdefault(instance_id, threading.Lock())
        with lock:
            self._destroy_locked(instance_id, idir)
        with self._lock:
            if not idir.exists():
                self._destroy_locks.pop(instance_id, None)

    def _destroy_locked(self, instance_id: str, idir: Path) -> None:
        """Killed at any step, this leaves the directory (and so the instance, for the next
        destroy or sweep) until the machine is gone, or a hidden directory `sweep` removes."""
        if not idir.is_dir():
            return
        provider = self._provider_of(idir)
        self._stop_orphaned_up(idir)
        without_vagrant = not (idir / VAGRANTFILE).exists()
        if not without_vagrant:
            try:
                self._vagrant(idir, provider, "destroy", lambda v: v.destroy())
            except PluginError:
                # A docker machine's container can be removed without Vagrant; others cannot.
                if provider != "docker" or not self._remove_containers(instance_id):
                    raise
                without_vagrant = True
        if provider == "docker":
            # `vagrant up` can leave a container it never recorded (created, failed to start).
            self._remove_containers(instance_id)
        self._remove_dir(idir)
        if without_vagrant:  # Vagrant's machine index may still list the machine
            try:
                self._prune_index()
            except PluginError as error:
                log.warning("%s (a sweep tries again)", error)

    def _stop_orphaned_up(self, idir: Path) -> None:
        """Stop a `vagrant up` of the instance that outlived its provisioner (killed mid-up),
        so that it makes nothing after the machine is destroyed."""
        if not (idir / PROVISIONING_MARKER).exists() or idir in PROVISIONING:
            return
        runs = [c for c in carriers(self._dir) if c.instance_dir == str(idir)]
        if runs and not stop_carriers(runs, _STOP_RUN_TIMEOUT):
            raise PluginError(f"the vagrant run provisioning {idir.name} did not stop")

    def describe_instances(self, tags: Mapping[str, str]) -> list[Description]:
        """Every instance whose tags include all of `tags` and whose machine is running or
        being provisioned."""
        wanted = dict(tags)
        found = [f for f in self._scan() if tags_match(f.tags, wanted)]
        alive = self._alive(found)
        out = []
        for f in found:
            if alive[f.id]:
                out.append(f.describe())
            self._note_state(f, alive[f.id])
        out.sort(key=lambda d: d.id)
        return out

    def sweep(self, tags: Mapping[str, str]) -> list[InstanceID]:
        """Destroy every machine that is not running nor being provisioned and whose tags
        include all of `tags` (`vagrant destroy`, its containers, its directory); remove the
        hidden leftovers of interrupted provisions and destroys, and the `vagrant
        global-status` entries of machines of this state directory that are gone."""
        wanted = dict(tags)
        found = [f for f in self._scan() if tags_match(f.tags, wanted)]
        alive = self._alive(found)
        swept = [f.id for f in found if not alive[f.id]]
        for instance_id in swept:
            self.destroy(instance_id)
        remove_stale(self._dir, destroyed=True)
        self._prune_index()
        return sorted(swept)

    def label(self, instance_id: InstanceID, labels: Mapping[str, str]) -> None:
        """Merge `labels` into the instance's `tags` file."""
        path = self._instance_dir(instance_id) / TAGS
        with self._tags_lock:
            try:
                current = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise PluginError(f"no such instance: {instance_id}") from None
            except (OSError, ValueError) as exc:
                raise PluginError(f"cannot read {path}: {exc}") from exc
            if not isinstance(current, dict):
                raise PluginError(f"{path} is not a JSON object")
            try:
                write_json_atomic(path, {**current, **labels}, fsync=True)
            except OSError as exc:
                raise PluginError(f"cannot write {path}: {exc}") from exc

    def close(self, timeout: float = 60.0) -> None:
        """Wait (up to `timeout` seconds) for background destroys of dead machines to end."""
        deadline = time.monotonic() + timeout
        with self._lock:
            reapers = list(self._reapers.values())
        for thread in reapers:
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- live and dead machines -------------------------------------------------------------

    def _alive(self, found: list[_Found]) -> dict[str, bool]:
        """Instance ID -> whether it is being provisioned (by a live run) or its machine runs."""
        alive = dict.fromkeys((f.id for f in found), False)
        unsettled = []
        for f in found:
            provisioner = self._provisioner(f.path)
            if provisioner is None:
                continue
            if f.path in PROVISIONING or (provisioner != self_token() and token_alive(provisioner)):
                alive[f.id] = True
            else:
                unsettled.append(f)
        if unsettled:  # the provisioner is gone: is the `vagrant up` it ran still going?
            runs = {c.instance_dir for c in carriers(self._dir)}
            for f in unsettled:
                if str(f.path) in runs:
                    alive[f.id] = True
                else:  # over: from now on the machine alone says
                    with contextlib.suppress(OSError):
                        (f.path / PROVISIONING_MARKER).unlink()
        rest = [f for f in found if not alive[f.id]]
        if any(f.provider == "docker" for f in rest):
            running = self._running_machines()
            alive.update({f.id: f.id in running for f in rest if f.provider == "docker"})
        others = [f for f in rest if f.provider != "docker"]
        if others:  # each `vagrant status` is a second of Ruby start-up: ask them all at once
            with ThreadPoolExecutor(
                max_workers=min(_STATUS_WORKERS, len(others)), thread_name_prefix="vagrant-status"
            ) as pool:
                states = pool.map(self._is_running, others)
                alive.update(zip([f.id for f in others], states, strict=True))
        return alive

    @staticmethod
    def _provisioner(idir: Path) -> str | None:
        """Who runs the instance's `vagrant up` (`<pid>-<start time>`), if its marker is there."""
        try:
            return (idir / PROVISIONING_MARKER).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except OSError:
            return ""

    def _note_state(self, found: _Found, alive: bool) -> None:
        """Keep the `dead` marker of a machine up to date; reap one dead for too long."""
        if alive:
            seen_alive(found.path)
            return
        dead = dead_for(found.path)
        if dead is None:
            log.info("machine %s is not running", found.id)
        if dead is None or dead < self._dead_retention:
            return
        with self._lock:
            if found.id in self._reapers:
                return
            thread = threading.Thread(
                target=self._reap, args=(found.id,), name=f"vagrant-reap:{found.id}", daemon=True
            )
            self._reapers[found.id] = thread
        thread.start()

    def _reap(self, instance_id: str) -> None:
        log.info("destroying machine %s, not running for %gs", instance_id, self._dead_retention)
        try:
            self.destroy(instance_id)
        except PluginError as exc:
            log.warning("cannot destroy dead machine %s: %s", instance_id, exc)
        except Exception:
            log.exception("cannot destroy dead machine %s", instance_id)
        finally:
            with self._lock:
                self._reapers.pop(instance_id, None)

    # -- Vagrant ----------------------------------------------------------------------------

    def _vagrant(self, idir: Path, provider: str, what: str, call: Callable[[Any], None]) -> None:
        """Run one Vagrant command in `idir`, its output appended to the instance's log.

        A run that failed for a passing reason (see `_TRANSIENT_MARKERS`) is tried again; any
        other failure raises `PluginError` with the end of Vagrant's output. `provider` is
        Vagrant's default provider for the run (a machine not made yet has no other).
        """
        exe = self._vagrant_bin or shutil.which("vagrant")
        if exe is None:
            raise PluginError("vagrant is not installed (no 'vagrant' on PATH)")
        output = idir / OUTPUT
        delay = _RETRY_BACKOFF
        deadline = time.monotonic() + _RETRY_FOR
        while True:
            try:
                start = output.stat().st_size
            except FileNotFoundError:
                start = 0
            log_output = vagrant.make_file_cm(str(output))  # type: ignore[no-untyped-call]
            machine = vagrant.Vagrant(  # type: ignore[no-untyped-call]
                root=str(idir),
                quiet_stdout=True,
                quiet_stderr=True,
                env={
                    **self._env,
                    "VAGRANT_DEFAULT_PROVIDER": provider,
                    # So that a run that outlives us is found by what it carries.
                    ENV_INSTANCE_ID: idir.name,
                    ENV_INSTANCE_DIR: str(idir),
                },
                out_cm=log_output,
                err_cm=log_output,
            )
            machine._vagrant_exe = exe  # python-vagrant only looks on PATH by itself
            try:
                call(machine)
                return
            except subprocess.CalledProcessError as exc:
                tail = _tail(output, start)
                transient = any(m in tail for m in _TRANSIENT_MARKERS)
                if transient and time.monotonic() + delay < deadline:
                    log.info("%s: vagrant %s failed (%s); trying again", idir.name, what, tail)
                    time.sleep(delay * random.uniform(0.5, 1.0))  # jitter: unsync the retries
                    delay = min(delay * 2, _RETRY_BACKOFF_MAX)
                    continue
                raise PluginError(
                    f"vagrant {what} of {idir.name} failed (exit status {exc.returncode}): {tail}"
                ) from None
            except OSError as exc:
                raise PluginError(f"cannot run {exe}: {exc}") from exc

    def _is_running(self, found: _Found) -> bool:
        """Ask `vagrant status` whether a (non-docker) machine runs."""
        states: list[str] = []

        def status(machine: Any) -> None:
            states.extend(s.state for s in machine.status())

        self._vagrant(found.path, found.provider, "status", status)
        return states == [vagrant.Vagrant.RUNNING]

    def _discard(self, instance_id: str, provider: str) -> None:
        """Best-effort removal of a half-made instance (after a failed provision)."""
        try:
            self.destroy(instance_id)
        except PluginError as exc:
            log.warning("cannot clean up after failed provision of %s: %s", instance_id, exc)
            if provider == "docker":
                self._remove_containers(instance_id)
            self._remove_dir(self._dir / instance_id)

    def _prune_index(self) -> None:
        """Prune Vagrant's machine index (`vagrant global-status --prune`) if it lists a machine
        of this state directory whose directory is gone (one destroyed without Vagrant)."""
        listed = self._cli(self._vagrant_bin, "vagrant", "global-status", "--machine-readable")
        for line in listed.splitlines():
            parts = line.split(",", 3)
            if len(parts) < 4 or parts[2] != "machine-home":
                continue
            home = Path(parts[3].replace("%!(VAGRANT_COMMA)", ","))
            if home.parent == self._dir and not home.exists():
                log.info("pruning Vagrant's machine index of %s", home.name)
                self._cli(self._vagrant_bin, "vagrant", "global-status", "--prune")
                return

    # -- Docker -----------------------------------------------------------------------------

    def _docker(self, *args: str) -> str:
        return self._cli(self._docker_bin, "docker", *args)

    def _cli(self, exe: str | None, name: str, *args: str) -> str:
        """Run `name ARGS` (`exe` if given, else from PATH) and return its output."""
        exe = exe or shutil.which(name)
        if exe is None:
            raise PluginError(f"the {name} CLI is not installed (no {name!r} on PATH)")
        try:
            done = subprocess.run(
                [exe, *args],
                capture_output=True,
                text=True,
                env=self._env,
                cwd=self._dir,
                timeout=_CLI_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PluginError(f"{name} {args[0]} failed: {exc}") from exc
        if done.returncode != 0:
            raise PluginError(f"{name} {args[0]} failed: {done.stderr.strip()[-500:]}")
        return done.stdout

    def _running_machines(self) -> set[str]:
        """The IDs of the instances whose machine's container runs: one `docker ps` for all
        (by the label each carries, so also one Vagrant never recorded)."""
        listed = self._docker(
            "ps",
            "--filter",
            f"label={INSTANCE_LABEL}",
            "--format",
            f'{{{{.Label "{INSTANCE_LABEL}"}}}}',
        )
        return set(listed.split())

    def _remove_containers(self, instance_id: str) -> bool:
        """Remove every container labelled as this instance's; False if Docker would not."""
        try:
            ids = self._docker(
                "ps", "--all", "--quiet", "--filter", f"label={INSTANCE_LABEL}={instance_id}"
            ).split()
            if ids:
                self._docker("rm", "--force", "--volumes", *ids)
        except PluginError as exc:
            log.warning("cannot remove containers of %s: %s", instance_id, exc)
            return False
        return True

    # -- files ------------------------------------------------------------------------------

    def _instance_dir(self, instance_id: InstanceID) -> Path:
        if not instance_id or "/" in instance_id or is_temp_name(instance_id):
            raise PluginError(f"not an instance ID: {instance_id!r}")
        return self._dir / instance_id

    @staticmethod
    def _read_record(idir: Path) -> dict[str, Any]:
        try:
            data = json.loads((idir / RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _provider_of(self, idir: Path, record: Mapping[str, Any] | None = None) -> str:
        """The instance's provider, from its record or else from Vagrant's machine data."""
        provider = (self._read_record(idir) if record is None else record).get("Provider")
        if isinstance(provider, str):
            return provider
        machines = idir / ".vagrant" / "machines" / MACHINE
        with contextlib.suppress(OSError):
            for entry in machines.iterdir():
                return entry.name
        return DEFAULT_PROVIDER

    def _scan(self) -> list[_Found]:
        """Every instance directory (an older version's without tags left out: its tags were
        written only after `vagrant up`, so it cannot be matched)."""
        try:
            entries = list(os.scandir(self._dir))
        except OSError as exc:
            raise PluginError(f"cannot list {self._dir}: {exc}") from exc
        found = []
        for entry in entries:
            if is_temp_name(entry.name) or not entry.is_dir(follow_symlinks=False):
                continue
            idir = Path(entry.path)
            try:
                tags = json.loads((idir / TAGS).read_text(encoding="utf-8"))
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                log.warning("ignoring instance %s: cannot read its tags: %s", entry.name, exc)
                continue
            if not isinstance(tags, dict):
                log.warning("ignoring instance %s: its tags are not a JSON object", entry.name)
                continue
            record = self._read_record(idir)
            logical_id = record.get("LogicalID")
            found.append(
                _Found(
                    id=entry.name,
                    path=idir,
                    tags={str(k): str(v) for k, v in tags.items()},
                    logical_id=logical_id if isinstance(logical_id, str) else None,
                    provider=self._provider_of(idir, record),
                    properties=record.get("Properties"),
                )
            )
        return found

    def _remove_dir(self, idir: Path) -> None:
        # Renamed first, so a concurrent describe never sees a half-removed instance.
        left = remove_dir(idir)
        if left is not None:
            # E.g. files a container made as another user in the synced folder.
            log.warning("could not remove all of %s (it is hidden from describe)", left)


def _tail(path: Path, start: int) -> str:
    """The last lines Vagrant wrote to `path` after offset `start`, joined for an error."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no output)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-_OUTPUT_TAIL_LINES:]) or "(no output)"
