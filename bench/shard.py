"""Sharding on etcd (`Manager.Mode: shared`, issue 15): how evenly managers share the groups,
how soon a killed manager's groups run again under the others, and converge throughput with 1,
2 and 3 managers, with real `infrakit run` processes on the machine's etcd.

1. balance: 3 managers (each its own INFRAKIT_HOME, one cluster file of `--groups` groups of
   `--size` file instances): the groups each owns per `Owners` of Manager.Status (what
   `infrakit manager status --json` prints), once every manager agrees: max, min, max/min.
2. moves: `--kills` times, kill -9 one manager (each in turn) and time until every group it
   owned is owned by a live manager whose own view of it is converged, from a look begun after
   the kill: median and max, beside the TTL. The killed manager is started again and the bench
   waits until the groups are back where they were; it prints that time too, and the
   instances replaced, duplicated or orphaned over all the kills.
3. throughput: for 1, 2 and 3 managers (a fresh key prefix and state each), commit `--tgroups`
   groups of `--tsize` file instances, round robin through the managers, and time until every
   group is converged on its owner: instances per second; how long the commits took (and the
   slowest one); how many groups a manager other than the one the commit reached ended up
   running (a new group is claimed where it is committed, then moved); the CPU each runtime,
   etcd, this bench and everything else on the machine used meanwhile, in % of one core (a
   runtime near 100 % is held by its GIL), the machine's busy share of all its cores and its
   1-minute load average (it counts runnable threads, each runtime's many among them), to say
   what limits it.

    .venv/bin/python bench/shard.py [--kills 5] [--ttl 2s] [--tgroups 30] [--tsize 20]

Needs etcd on 127.0.0.1:2379 (scripts/services.sh starts it). Everything goes under a private
key prefix and a temporary directory, both removed at the end, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.remote import RemoteRef
from actors.rpc_errors import RemoteError, RpcTimeout
from infrakit.duration import parse_duration
from infrakit.manager.localstate import shared_state_home
from infrakit.plugins.instance.file import FileInstancePlugin
from infrakit.spi.instance import TAG_GROUP, TAG_LOGICAL_ID
from tests.support import ETCD, INFRAKIT, etcd_forget, etcd_in_use, etcd_up, free_port

TICKS = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


def group_spec(group_id: str, size: int) -> dict[str, Any]:
    """A group of `size` file instances: cheap to make, so the figures are the managers'."""
    return {
        "ID": group_id,
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": "instance-file", "Properties": {"Note": "bench"}},
            "Flavor": {"Plugin": "flavor-vanilla"},
        },
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process `pid` has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy() -> float:
    """CPU seconds the whole machine (every core, every process) has been busy so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICKS  # less idle and iowait


def etcd_cpu() -> float | None:
    """CPU seconds the etcd at ETCD has used so far, as its own metrics say; None if they do
    not say."""
    try:
        with urllib.request.urlopen(f"{ETCD}/metrics", timeout=2) as answer:
            text = answer.read().decode(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("process_cpu_seconds_total "):
            return float(line.split()[1])
    return None


class Manager:
    """One `infrakit run` of the cluster: its own home, its cluster file (the same groups as
    the others', its own Listen port), a log, and a client of its Group API."""

    def __init__(self, root: Path, index: int, cluster: dict[str, Any], env: dict[str, str]):
        self.index = index
        self.port = free_port()
        self.location = f"tcp://127.0.0.1:{self.port}"
        self.log = root / f"runtime-{index}.log"
        self.config = root / f"cluster-{index}.json"
        manager = {**cluster["Manager"], "Listen": [self.location]}
        self.config.write_text(json.dumps({**cluster, "Manager": manager}, indent=1))
        self.env = {**env, "INFRAKIT_HOME": str(root / f"home-{index}")}
        self.process: subprocess.Popen[bytes] | None = None
        self.killed = False  # by the bench: not a death to report
        self.ref = RemoteRef(self.location, timeout=30.0, retries=0)  # a slow commit is a figure

    def start(self) -> None:
        self.killed = False
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [*INFRAKIT, "run", str(self.config)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the bench, which stops them all
            )

    def kill(self) -> None:
        """kill -9 the runtime (and anything it started) and reap it."""
        self.killed = True
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def status(self) -> dict[str, Any] | None:
        """Its Manager.Status, or None if it does not answer now."""
        if not self.alive:
            return None
        try:
            answer = self.ref.call("Manager.Status", {})
        except (RpcTimeout, RemoteError):
            return None
        return answer if isinstance(answer, dict) else None

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid) if self.process is not None else 0.0


class Cluster:
    """`count` managers in shared mode on the machine's etcd, under a private key prefix and a
    temporary directory (the homes, and XDG_STATE_HOME, under which the file plugin keeps the
    instances every manager sees); `close` stops every process and removes both."""

    def __init__(
        self, label: str, count: int, ttl: str, poll: str, groups: list[dict[str, Any]]
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"ik-shard-{label}-"))
        self.prefix = f"/infrakit-bench-shard-{uuid.uuid4().hex[:8]}"
        store = f"{self.prefix}/groups/"
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAKIT_")}
        env["XDG_STATE_HOME"] = str(self.root / "state")
        self.instances = shared_state_home(store, env) / "instances" / "file"
        cluster = {
            "Manager": {
                "Mode": "shared",
                "Leader": {
                    "Kind": "etcd",
                    "Endpoints": [ETCD],
                    "TTL": ttl,
                    "Key": f"{self.prefix}/leader",
                },
                "Store": {"Kind": "etcd", "Endpoints": [ETCD], "Prefix": store},
                "LeaderPoll": poll,
            },
            "Groups": groups,
        }
        self.managers = [Manager(self.root, index, cluster, env) for index in range(count)]
        self.sizes = {g["ID"]: int(g["Properties"]["Allocation"]["Size"]) for g in groups}
        self.last_check = 0.0  # seconds the last check of `wait` took: the figures' resolution
        self.why = ""  # what the last check found missing
        self.deadline = 300.0  # seconds any one wait may take before the bench gives up
        self.kept: Path | None = None  # where the logs of a failed wait are kept

    def start(self) -> None:
        for manager in self.managers:
            manager.start()

    def close(self) -> None:
        # A second Ctrl-C must not leave runtimes or keys behind: it waits until this is done.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self._remove()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})

    def _remove(self) -> None:
        for manager in self.managers:
            manager.kill()
            manager.ref.close()
        try:
            etcd_forget(self.prefix)
        finally:
            if self.kept is not None:
                for log in self.root.glob("*.log"):
                    shutil.copy(log, self.kept)
            shutil.rmtree(self.root, ignore_errors=True)

    def wait(self, what: str, check: Callable[[], T | None], every: float = 0.01) -> T:
        """`check()`'s first value that is not None, polled every `every` seconds; exits,
        keeping the runtimes' logs, after `deadline` seconds."""
        deadline = time.monotonic() + self.deadline
        while time.monotonic() < deadline:
            for manager in self.managers:
                if manager.process is not None and not manager.killed and not manager.alive:
                    said = manager.log.read_text(errors="replace").strip()[-1500:]
                    self.kept = Path(tempfile.mkdtemp(prefix="ik-shard-logs-"))
                    raise SystemExit(f"bench: runtime {manager.index} exited:\n{said}")
            began = time.monotonic()
            value = check()
            self.last_check = time.monotonic() - began
            if value is not None:
                return value
            time.sleep(every)
        self.kept = Path(tempfile.mkdtemp(prefix="ik-shard-logs-"))
        raise SystemExit(
            f"bench: {what} did not happen within {self.deadline:g} s; last seen: {self.why}"
            f" (the runtimes' logs are kept in {self.kept})"
        )

    def statuses(self) -> list[dict[str, Any]] | None:
        """Every live manager's status, or None if one of them does not answer now."""
        found = []
        for manager in self.managers:
            if manager.alive:
                status = manager.status()
                if status is None:
                    self.why = f"manager {manager.index} ({manager.location}) does not answer"
                    return None
                found.append(status)
        return found

    def all_up(self) -> list[dict[str, Any]] | None:
        """Every manager's status once each answers in shared mode and sees all the others."""
        statuses = self.statuses()
        if statuses is None or len(statuses) != len(self.managers):
            return None
        for status in statuses:
            if status.get("Mode") != "shared":
                return None
            if len(status.get("ManagerList") or []) != len(self.managers):
                return None
        return statuses

    def running(
        self,
        groups: Iterable[str],
        since: Mapping[str, float] | float = 0.0,
        agree: bool = False,
        owners: Mapping[str, str] | None = None,
        statuses: list[dict[str, Any]] | None = None,
    ) -> dict[str, str] | None:
        """{group: owner's location} once each of `groups` is owned by a live manager (per
        its own status's Owners) that runs it converged at full size, from a look begun at
        or after `since` (a wall time, or one per group); with `agree`, every live manager
        reports the same owners; with `owners`, those are the ones. Else None, and `why`
        says what was missing. `statuses`: those just read, else read now."""
        statuses = self.statuses() if statuses is None else statuses
        if not statuses:
            return None
        found: dict[str, str] = {}
        for group in groups:
            after = since if isinstance(since, int | float) else since.get(group, 0.0)
            where = self._where(group, statuses, after)
            if where is None:
                return None
            claims = {str((s.get("Owners") or {}).get(group)) for s in statuses}
            if agree and claims != {where}:
                self.why = f"{group}: the managers name different owners: {sorted(claims)}"
                return None
            if owners is not None and owners.get(group) != where:
                self.why = f"{group}: run by {where}, not yet by {owners.get(group)}"
                return None
            found[group] = where
        return found

    def claimed(self, groups: Iterable[str], statuses: list[dict[str, Any]]) -> bool:
        """Whether a live manager says it owns each of `groups` (running it or not yet)."""
        return all(
            any((s.get("Owners") or {}).get(group) == s.get("Location") for s in statuses)
            for group in groups
        )

    def _where(self, group: str, statuses: list[dict[str, Any]], after: float) -> str | None:
        """The location of the live manager that runs `group` converged, from a look begun
        at or after `after`; None (saying why in `why`) if none does."""
        owner = next(
            (s for s in statuses if (s.get("Owners") or {}).get(group) == s.get("Location")),
            None,
        )
        if owner is None:
            self.why = f"{group}: no live manager says it owns it"
            return None
        info = next((g for g in owner.get("Groups") or [] if g.get("ID") == group), None)
        if info is None:
            self.why = f"{group}: its owner {owner['Location']} does not list it"
            return None
        members, size = info.get("Members"), self.sizes.get(group, info.get("Size"))
        if not info.get("Converged") or members != size:
            conditions = "; ".join(info.get("Conditions") or []) or "no conditions"
            self.why = (
                f"{group} on {owner['Location']}: {members} of {size} members, not converged"
                f" ({info.get('Phases')}; {conditions})"
            )
            return None
        if (info.get("LookedAt") or 0.0) < after:
            self.why = f"{group} on {owner['Location']}: no look since {after:.2f}"
            return None
        return str(owner["Location"])

    def tracebacks(self) -> str:
        """A note of the unhandled exceptions the runtimes logged (a bug each), keeping their
        logs; "" if none."""
        found = sum(
            log.read_text(errors="replace").count("Traceback (most recent call last)")
            for log in self.root.glob("*.log")
        )
        if not found:
            return ""
        self.kept = self.kept or Path(tempfile.mkdtemp(prefix="ik-shard-logs-"))
        return f"{found} tracebacks in the runtimes' logs (kept in {self.kept})"

    def census(self) -> dict[tuple[str, str], list[str]]:
        """(group, slot) -> the IDs of the file instances there, read from the directory."""
        plugin = FileInstancePlugin(self.instances)
        try:
            described = plugin.describe_instances({})
        finally:
            plugin.close()
        slots: dict[tuple[str, str], list[str]] = {}
        for description in described:
            key = (description.tags.get(TAG_GROUP, "?"), description.tags.get(TAG_LOGICAL_ID, "?"))
            slots.setdefault(key, []).append(str(description.id))
        return slots


def balance(cluster: Cluster) -> dict[str, str]:
    """Part 1: start the managers, wait until every group runs and all agree on its owner;
    print the groups per manager. Returns the owners."""
    cluster.start()
    cluster.wait("every manager up in shared mode, seeing the others", cluster.all_up)
    owners = cluster.wait(
        "every group running, every manager agreeing on its owner",
        lambda: cluster.running(cluster.sizes, agree=True),
        every=0.1,
    )
    counts = Counter(owners.values())
    per = [counts.get(manager.location, 0) for manager in cluster.managers]
    size = next(iter(cluster.sizes.values()), 0)
    print(
        f"1. balance: {len(per)} managers, {len(owners)} groups of {size} file instances"
        " (Owners of Manager.Status, the same on every manager)"
    )
    ratio = f"{max(per) / min(per):.2f}" if min(per) else "inf"
    print(
        f"   groups per manager: {', '.join(map(str, per))}   max {max(per)}  min {min(per)}"
        f"  max/min {ratio}  (target <= 1.5)"
    )
    return owners


def moves(cluster: Cluster, owners: dict[str, str], kills: int, ttl: str, poll: str) -> None:
    """Part 2: kill -9 each manager in turn, time until its groups run converged under the
    others, start it again and time until every group is back with its owner before."""
    before = cluster.census()
    took, gone, owned, back, moved_counts, resolution = [], [], [], [], [], []
    for kill in range(kills):
        victim = cluster.managers[kill % len(cluster.managers)]
        moved = sorted(group for group, where in owners.items() if where == victim.location)
        moved_counts.append(len(moved))
        killed_wall, killed = time.time(), time.monotonic()
        victim.kill()
        seen: dict[str, float] = {}  # when the victim left ManagerList; when all were claimed

        def moved_on(
            moved: list[str] = moved,
            since: float = killed_wall,
            seen: dict[str, float] = seen,
            victim: Manager = victim,
        ) -> dict[str, str] | None:
            """The moved groups' owners once they run converged; notes when the victim's
            lease went and when its groups were all claimed."""
            statuses = cluster.statuses()
            if not statuses:
                return None
            now = time.monotonic()
            listed = {str(m.get("Location")) for s in statuses for m in s.get("ManagerList") or []}
            if victim.location not in listed:
                seen.setdefault("gone", now)
            if cluster.claimed(moved, statuses):
                seen.setdefault("claimed", now)
            return cluster.running(moved, since=since, statuses=statuses)

        cluster.wait(
            f"kill {kill + 1}: manager {victim.index}'s groups running elsewhere", moved_on
        )
        took.append(time.monotonic() - killed)
        done = took[-1] + killed
        gone.append(seen.get("gone", done) - killed)
        owned.append(seen.get("claimed", done) - killed)
        resolution.append(cluster.last_check)
        started_wall, started = time.time(), time.monotonic()
        victim.start()
        cluster.wait(
            f"kill {kill + 1}: manager {victim.index} started again, its groups back with it",
            partial(
                cluster.running,
                owners,
                since=dict.fromkeys(moved, started_wall),
                agree=True,
                owners=owners,
            ),
            every=0.05,
        )
        back.append(time.monotonic() - started)
    seconds = parse_duration(ttl)
    print(
        f"2. moves: {kills} kill -9 of a manager (each in turn; {span(moved_counts)} groups"
        f" each), TTL {ttl} ({seconds:g} s), LeaderPoll {poll}"
    )
    print(
        f"   kill -> its groups converged under the others: median {statistics.median(took):.2f}"
        f" s, max {max(took):.2f} s, min {min(took):.2f} s   TTL + 0.5 s = {seconds + 0.5:.2f} s"
        f"  (each check of every manager took ~{statistics.median(resolution) * 1e3:.0f} ms)"
    )
    print(
        f"   of which: kill -> its lease gone (out of every ManagerList) median"
        f" {statistics.median(gone):.2f} s; -> its groups claimed (Owners) median"
        f" {statistics.median(owned):.2f} s"
    )
    print(
        f"   start again -> every group back with its owner, converged: median"
        f" {statistics.median(back):.2f} s, max {max(back):.2f} s (includes the runtime's start)"
    )
    print("   " + instance_report(before, cluster.census(), cluster.sizes))
    tracebacks = cluster.tracebacks()
    if tracebacks:
        print("   " + tracebacks)


def span(values: list[int]) -> str:
    """`8-12`, or `10` when they are all the same."""
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def instance_report(
    before: Mapping[tuple[str, str], list[str]],
    after: Mapping[tuple[str, str], list[str]],
    sizes: Mapping[str, int],
) -> str:
    """The instances the moves replaced, duplicated, orphaned or left missing, in a line."""
    wanted = {(group, f"{group}-{n}") for group, size in sizes.items() for n in range(size)}
    duplicates = sum(len(ids) - 1 for slot, ids in after.items() if slot in wanted)
    orphans = sum(len(ids) for slot, ids in after.items() if slot not in wanted)
    missing = len(wanted - after.keys())
    first = {i for ids in before.values() for i in ids}
    replaced = len(first - {i for ids in after.values() for i in ids})
    return (
        f"over all the moves: {replaced} of {len(first)} instances replaced, {duplicates}"
        f" duplicates, {orphans} orphans, {missing} slots empty"
    )


def throughput(count: int, args: argparse.Namespace) -> str:
    """Part 3, one row: `count` managers with no groups; commit the groups round robin
    through them and time until all are converged; the CPU used meanwhile."""
    cluster = Cluster(f"t{count}", count, args.ttl, args.poll, [])
    cluster.deadline = args.deadline
    try:
        cluster.start()
        cluster.wait("every manager up in shared mode, seeing the others", cluster.all_up)
        specs = [group_spec(f"t{n:02d}", args.tsize) for n in range(args.tgroups)]
        cluster.sizes = {spec["ID"]: args.tsize for spec in specs}
        time.sleep(1.0)  # let the runtimes' start-up work settle before sampling their CPU
        cpu = [manager.cpu() for manager in cluster.managers]
        etcd_was = etcd_cpu()
        busy = machine_busy()
        bench_cpu = time.process_time()
        began_wall, began = time.time(), time.monotonic()
        sent_to, slowest, refused = {}, 0.0, []
        for n, spec in enumerate(specs):
            manager = cluster.managers[n % count]
            sent_to[spec["ID"]] = manager.location
            one = time.monotonic()
            refused += commit(manager, spec)
            slowest = max(slowest, time.monotonic() - one)
        committed = time.monotonic() - began
        owners = cluster.wait(
            "every group converged",
            partial(cluster.running, cluster.sizes, since=began_wall),
            every=args.every,
        )
        took = time.monotonic() - began
        used = [manager.cpu() - was for manager, was in zip(cluster.managers, cpu, strict=True)]
        etcd_now = etcd_cpu()
        etcd_used = etcd_now - etcd_was if etcd_now is not None and etcd_was is not None else 0.0
        busy2 = machine_busy()
        bench_used = time.process_time() - bench_cpu
        load = os.getloadavg()[0]
        made = sum(len(ids) for ids in cluster.census().values())
        notes = (
            [f"{len(refused)} commits refused, then sent again: {refused[0]}"] if refused else []
        )
        tracebacks = cluster.tracebacks()
        notes += [tracebacks] if tracebacks else []
    finally:
        cluster.close()
    moved = sum(1 for group, where in owners.items() if sent_to[group] != where)
    instances = args.tgroups * args.tsize
    each = " ".join(f"{100 * u / took:.0f}" for u in used)
    cores = os.cpu_count() or 1
    machine = busy2 - busy  # CPU seconds, all cores, everyone's
    others = max(0.0, machine - sum(used) - etcd_used - bench_used)  # ticks are coarse
    return (
        f"   {count:>8} {took:>8.2f} s {instances / took:>6.0f}"
        f" {committed:>6.2f} s ({slowest:.2f} s) {moved:>5}"
        f"   {each:<11} {100 * etcd_used / took:>4.0f} {100 * bench_used / took:>5.0f}"
        f" {100 * others / took:>6.0f} {100 * machine / took / cores:>7.0f}% {load:>6.2f}"
        f"  {made}" + "".join(f"\n            {note}" for note in notes)
    )


def commit(manager: Manager, spec: dict[str, Any]) -> list[str]:
    """Commit `spec` through `manager`, as a user would: a refusal that may pass (etcd slow
    to answer, the group moving) is sent again for up to 30 s. Returns the refusals."""
    refused: list[str] = []
    deadline = time.monotonic() + 30.0
    while True:
        try:
            manager.ref.call("Group.CommitGroup", {"Spec": spec})
            return refused
        except (RpcTimeout, RemoteError) as error:
            refused.append(f"{spec['ID']}: {error}")
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: commit of {refused[-1]}") from None
        time.sleep(0.2)


def interrupted(signum: int, frame: FrameType | None) -> None:
    """SIGTERM as Ctrl-C: unwind, so that every process and key is cleaned up."""
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--groups", type=int, default=30, help="groups for balance and moves")
    parser.add_argument("--size", type=int, default=2, help="file instances per group there")
    parser.add_argument("--kills", type=int, default=5, help="kill -9 of a manager, each timed")
    parser.add_argument("--ttl", default="2s", help="Manager.Leader.TTL (each manager's lease)")
    parser.add_argument("--poll", default="500ms", help="Manager.LeaderPoll")
    parser.add_argument("--tgroups", type=int, default=30, help="groups for the throughput")
    parser.add_argument("--tsize", type=int, default=20, help="file instances per group there")
    parser.add_argument(
        "--managers", default="1,2,3", help="manager counts for the throughput, comma separated"
    )
    parser.add_argument(
        "--every", type=float, default=0.1, help="seconds between checks during the throughput"
    )
    parser.add_argument(
        "--deadline", type=float, default=300.0, help="seconds any one wait may take"
    )
    parser.add_argument(
        "--parts", default="balance,moves,throughput", help="which parts to run, comma separated"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    signal.signal(signal.SIGTERM, interrupted)
    if not etcd_up():
        sys.exit(f"bench: no etcd answers at {ETCD} (scripts/services.sh starts one)")
    # Hold the machine's etcd as the tests do: a test that freezes it waits for the bench.
    try:
        with etcd_in_use():
            run(parts, args)
    except KeyboardInterrupt:
        sys.exit("bench: interrupted; every runtime stopped and every key removed")


def run(parts: set[str], args: argparse.Namespace) -> None:
    """The parts asked for, in order."""
    if parts & {"balance", "moves"}:
        groups = [group_spec(f"g{n:02d}", args.size) for n in range(args.groups)]
        cluster = Cluster("moves", 3, args.ttl, args.poll, groups)
        cluster.deadline = args.deadline
        try:
            owners = balance(cluster)
            if "moves" in parts and args.kills > 0:
                moves(cluster, owners, args.kills, args.ttl, args.poll)
        finally:
            cluster.close()
    if "throughput" in parts:
        print(
            f"3. converge throughput: {args.tgroups} groups x {args.tsize} file instances"
            f" ({args.tgroups * args.tsize}), committed round robin through the managers;"
            f" {os.cpu_count()} cores"
        )
        print(
            "   managers converged inst/s   commits (slowest) moved  CPU, % of one core:"
            "             machine   load"
        )
        print(
            "                                                        runtimes    etcd bench"
            " others  (busy)     1m  files"
        )
        for count in [int(n) for n in args.managers.split(",")]:
            print(throughput(count, args), flush=True)


if __name__ == "__main__":
    main()
