"""The zookeeper flavor: turns each instance of a LogicalIDs group into one member of a ZooKeeper
ensemble, and asks the member itself whether it is healthy.

InfraKit's flavor wrote `server.<i+1>=<id>:2888:3888` for every logical ID and `myid` = own
position + 1, and called every instance healthy. This one writes the same ensemble (the
logical IDs, in order, are the members: `myid` is a member's position + 1), runs the server in
the foreground as the instance's own process, and judges health with ZooKeeper's four-letter
words `ruok` and `srvr`.

Properties (all optional, keys case-insensitive as Go's JSON):

- `Host` ("127.0.0.1"): the address every member is reached at. The special value
  `"{LogicalID}"` makes each member's host its logical ID, as InfraKit did (IDs are then the
  members' host names or IPv4 addresses).
- `ClientPort` (2181), `PeerPort` (2888), `ElectionPort` (3888): the base ports.
- `PortStride` (0): member i uses `base + i * PortStride`. 0 puts every member on the same ports
  (members on different hosts); e.g. 10 makes a whole ensemble runnable on one host.
- `DataDir` ("data"): the member's data directory; a relative path is relative to the directory
  the Init runs in (the instance's own directory with the process instance plugin), so a
  replaced member starts empty and syncs from the ensemble.
- `TickTime` (2000 ms), `InitLimit` (10 ticks), `SyncLimit` (5 ticks): as in `zoo.cfg`.
- `Java` (`$JAVA_HOME/bin/java` if set, else `java`): the java command on the instance.
- `JvmFlags` (["-Xmx256m"]): JVM flags, after the flavor's own slf4j-simple ones (timestamps;
  no INFO line per health check), so they can override them.
- `ZooKeeperHome`: an upstream install (`<home>/lib/*.jar`, `<home>/conf`); or `Classpath`: the
  Java class path verbatim. Neither: Debian's layout (`/usr/share/java/zookeeper.jar`, whose
  manifest names its dependencies, plus `slf4j-simple.jar` if present so logs reach stderr),
  found when the Init runs, on the instance's host.

The ensemble is fixed: an even member count is refused (it tolerates no more failures than one
member fewer, and two halves can each lose the quorum), and `drain` does nothing, because a
member leaving is a reconfiguration this flavor does not do. Changing the logical IDs changes
every member's `zoo.cfg`, so the group rolls all of them.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shlex
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator

from infrakit.plugins._props import PropertiesModel, Strings, Text, parse
from infrakit.spi.errors import PluginError, ValidationError
from infrakit.spi.flavor import AllocationMethod, FlavorPlugin, Health, Reportable
from infrakit.spi.instance import Description, Spec

log = logging.getLogger(__name__)

TAG_MYID = "zookeeper.myid"
TAG_CLIENT = "zookeeper.client"
LOGICAL_ID_HOST = "{LogicalID}"
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
FOUR_LETTER_WORDS = "ruok,srvr,mntr"
NOT_SERVING = "not currently serving requests"
SERVING_MODES = frozenset({"leader", "follower", "observer", "standalone"})
DEBIAN_JAR = "/usr/share/java/zookeeper.jar"
DEBIAN_LOGGER_JAR = "/usr/share/java/slf4j-simple.jar"
DEFAULT_TIMEOUT = 1.0  # seconds, for each four-letter word
# For slf4j-simple (Debian's layout): timestamps, and no INFO line for every health check.
_LOG_FLAGS = (
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd HH:mm:ss.SSS",
    "-Dorg.slf4j.simpleLogger.log.org.apache.zookeeper.server.NIOServerCnxn=warn",
)
_MAX_REPLY = 1 << 16
_RECOMMENDED_MAX = 7
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def _host(host: Any) -> str:
    if not isinstance(host, str) or not (host == LOGICAL_ID_HOST or _HOST.fullmatch(host)):
        raise ValueError(f"must be a host name, an IPv4 address or {LOGICAL_ID_HOST!r}")
    return host


def _integer(low: int, high: int) -> Callable[[Any], int]:
    """A validator of an integer from `low` to `high`."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer from {low} to {high}")
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}, got {value}")
        return value

    return check


def _line(value: str) -> str:
    if "\n" in value:
        raise ValueError("must not contain a NUL or newline character")
    return value


Port = Annotated[int, BeforeValidator(_integer(1, 65535))]
Ticks = Annotated[int, BeforeValidator(_integer(1, 1_000_000))]
Line = Annotated[Text, AfterValidator(_line)]


class ZooKeeperOptions(PropertiesModel):
    """Parsed zookeeper flavor properties (see the module's doc)."""

    host: Annotated[str, BeforeValidator(_host)] = Field(default="127.0.0.1", alias="Host")
    client_port: Port = Field(default=2181, alias="ClientPort")
    peer_port: Port = Field(default=2888, alias="PeerPort")
    election_port: Port = Field(default=3888, alias="ElectionPort")
    port_stride: Annotated[int, BeforeValidator(_integer(0, 10000))] = Field(
        default=0, alias="PortStride"
    )
    data_dir: Line = Field(default="data", alias="DataDir")
    tick_time: Ticks = Field(default=2000, alias="TickTime")
    init_limit: Ticks = Field(default=10, alias="InitLimit")
    sync_limit: Ticks = Field(default=5, alias="SyncLimit")
    java: Line | None = Field(default=None, alias="Java")
    jvm_flags: Strings = Field(default_factory=lambda: ["-Xmx256m"], alias="JvmFlags")
    zookeeper_home: Line | None = Field(default=None, alias="ZooKeeperHome")
    classpath: Line | None = Field(default=None, alias="Classpath")

    @field_validator("classpath")
    @classmethod
    def _one_way(cls, classpath: str | None, info: ValidationInfo) -> str | None:
        if classpath is not None and info.data.get("zookeeper_home") is not None:
            raise ValueError("give ZooKeeperHome or Classpath, not both")
        return classpath


@dataclass(frozen=True)
class Member:
    """One member of the ensemble: `server.<myid>=<host>:<peer_port>:<election_port>`."""

    myid: int
    logical_id: str
    host: str
    client_port: int
    peer_port: int
    election_port: int

    @property
    def client(self) -> str:
        """`host:port` where clients (and health checks) reach this member."""
        return f"{self.host}:{self.client_port}"

    @property
    def server_line(self) -> str:
        return f"server.{self.myid}={self.host}:{self.peer_port}:{self.election_port}"


def parse_options(properties: Any) -> ZooKeeperOptions:
    """Check zookeeper properties and return them parsed; every fault raises one
    `ValidationError`, each with its JSON path."""
    return parse(ZooKeeperOptions, properties)


def ensemble(options: ZooKeeperOptions, logical_ids: tuple[str, ...]) -> list[Member]:
    """The members, in logical-ID order, with their hosts and ports (unchecked)."""
    members = []
    for i, lid in enumerate(logical_ids):
        offset = i * options.port_stride
        host = lid if options.host == LOGICAL_ID_HOST else options.host
        members.append(
            Member(
                myid=i + 1,
                logical_id=lid,
                host=host,
                client_port=options.client_port + offset,
                peer_port=options.peer_port + offset,
                election_port=options.election_port + offset,
            )
        )
    return members


def check_ensemble(options: ZooKeeperOptions, allocation: AllocationMethod) -> list[Member]:
    """The ensemble for `allocation`, or `ValidationError` if it cannot work."""
    ids = allocation.logical_ids
    if ids is None:
        raise ValidationError(
            "the zookeeper flavor needs Allocation.LogicalIDs: a fixed ensemble, not a Size",
            path="Allocation.LogicalIDs",
        )
    if not ids:
        raise ValidationError("an ensemble needs at least one member", path="Allocation.LogicalIDs")
    if len(set(ids)) != len(ids):
        raise ValidationError("logical IDs must be unique", path="Allocation.LogicalIDs")
    if len(ids) % 2 == 0:
        raise ValidationError(
            f"an ensemble of {len(ids)} members tolerates no more failures than one of"
            f" {len(ids) - 1}; use an odd number of members (1, 3, 5 or 7)",
            path="Allocation.LogicalIDs",
        )
    if len(ids) > _RECOMMENDED_MAX:
        log.warning(
            "a ZooKeeper ensemble of %d voting members writes slower than one of %d",
            len(ids),
            _RECOMMENDED_MAX,
        )
    if options.host == LOGICAL_ID_HOST:
        not_hosts = [
            (
                f"Allocation.LogicalIDs[{i}]",
                f"with Host {LOGICAL_ID_HOST!r} every logical ID must be a host name or"
                f" IPv4 address, not {lid!r}",
            )
            for i, lid in enumerate(ids)
            if not _HOST.fullmatch(lid)
        ]
        if not_hosts:
            raise ValidationError.of(not_hosts)
    members = ensemble(options, ids)
    last = members[-1]
    for key, port in (
        ("ClientPort", last.client_port),
        ("PeerPort", last.peer_port),
        ("ElectionPort", last.election_port),
    ):
        if port > 65535:
            raise ValidationError(
                f"member {last.myid} ({last.logical_id}) would use port {port} (> 65535)",
                path=key,
            )
    used: dict[tuple[str, int], str] = {}
    for m in members:
        for key, port in (
            ("ClientPort", m.client_port),
            ("PeerPort", m.peer_port),
            ("ElectionPort", m.election_port),
        ):
            other = used.get((m.host.lower(), port))
            if other is not None:
                hint = (
                    ""
                    if options.port_stride
                    else f"; set PortStride (e.g. 10), or Host {LOGICAL_ID_HOST!r} for members"
                    " on their own hosts"
                )
                raise ValidationError(
                    f"port {port} on {m.host} is both {other} and member {m.myid}'s {key}{hint}",
                    path="PortStride" if not options.port_stride and len(members) > 1 else key,
                )
            used[(m.host.lower(), port)] = f"member {m.myid}'s {key}"
    return members


def zoo_cfg_lines(options: ZooKeeperOptions, members: list[Member], me: Member) -> list[str]:
    """`zoo.cfg` for member `me`, without `dataDir` (the Init script adds it, made absolute)."""
    return [
        f"# written by the infrakit zookeeper flavor for {me.logical_id} (server.{me.myid})",
        f"tickTime={options.tick_time}",
        f"initLimit={options.init_limit}",
        f"syncLimit={options.sync_limit}",
        f"clientPort={me.client_port}",
        f"clientPortAddress={me.host}",
        f"4lw.commands.whitelist={FOUR_LETTER_WORDS}",
        "admin.enableServer=false",
        *(m.server_line for m in members),
    ]


def init_script(options: ZooKeeperOptions, members: list[Member], me: Member) -> str:
    """The POSIX shell that writes `zoo.cfg` and `myid`, then becomes the server (`exec`)."""
    q = shlex.quote
    cfg = " \\\n    ".join(q(line) for line in zoo_cfg_lines(options, members, me))
    lines = [
        f"# zookeeper flavor: {me.logical_id} is server.{me.myid} of {len(members)}",
        "set -eu",
        f"zk_data={q(options.data_dir)}",
        'case "$zk_data" in /*) ;; *) zk_data="$PWD/$zk_data" ;; esac',
        'mkdir -p "$zk_data"',
        f"printf '%s\\n' {me.myid} > \"$zk_data/myid\"",
        "{",
        f"  printf '%s\\n' {cfg}",
        "  printf 'dataDir=%s\\n' \"$zk_data\"",
        "} > zoo.cfg",
        *_classpath_lines(options),
    ]
    if options.java is not None:
        lines.append(f"zk_java={q(options.java)}")
    else:
        lines.append("zk_java=${JAVA_HOME:+$JAVA_HOME/bin/java}; zk_java=${zk_java:-java}")
    lines += [
        'command -v "$zk_java" >/dev/null 2>&1 || '
        '{ echo "zookeeper flavor: no java command $zk_java" >&2; exit 127; }',
        'exec "$zk_java" '
        + "".join(f"{q(flag)} " for flag in (*_LOG_FLAGS, *options.jvm_flags))
        + f'-cp "$zk_cp" {MAIN_CLASS} "$PWD/zoo.cfg"',
    ]
    return "\n".join(lines)


def _classpath_lines(options: ZooKeeperOptions) -> list[str]:
    q = shlex.quote
    if options.classpath is not None:
        return [f"zk_cp={q(options.classpath)}"]
    if options.zookeeper_home is not None:
        return [
            f"zk_home={q(options.zookeeper_home)}",
            '[ -d "$zk_home/lib" ] || '
            '{ echo "zookeeper flavor: $zk_home has no lib directory" >&2; exit 127; }',
            'zk_cp="$zk_home/lib/*:$zk_home/conf"',
        ]
    return [
        f"if [ -f {DEBIAN_JAR} ]; then",
        f"  zk_cp={DEBIAN_JAR}",
        f'  [ ! -f {DEBIAN_LOGGER_JAR} ] || zk_cp="$zk_cp:{DEBIAN_LOGGER_JAR}"',
        "else",
        f'  echo "zookeeper flavor: no {DEBIAN_JAR}; set ZooKeeperHome or Classpath" >&2',
        "  exit 127",
        "fi",
    ]


def connect_string(properties: Any, allocation: AllocationMethod) -> str:
    """The clients' connection string for the ensemble, e.g. `127.0.0.1:2181,...`."""
    members = check_ensemble(parse_options(properties), allocation)
    return ",".join(m.client for m in members)


class ZooKeeperFlavor(FlavorPlugin, Reportable):
    """Each instance of a LogicalIDs group is one ZooKeeper ensemble member, run in the foreground.

    `timeout` bounds each four-letter-word exchange of `healthy` and `member_status`.
    """

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._timeout = timeout

    def validate(self, properties: Any, allocation: AllocationMethod) -> None:
        """Raise `ValidationError` (with its path) for bad properties or an unusable ensemble."""
        check_ensemble(parse_options(properties), allocation)

    def prepare(self, properties: Any, spec: Spec, allocation: AllocationMethod) -> Spec:
        """Append the member's Init (write zoo.cfg and myid, exec the server); tag the instance.

        The Init ends in `exec`, so it must come last: nothing after it would run.
        """
        options = parse_options(properties)
        members = check_ensemble(options, allocation)
        me = next((m for m in members if m.logical_id == spec.logical_id), None)
        if me is None:
            raise PluginError(
                f"logical ID {spec.logical_id!r} is not a member of the ensemble"
                f" ({', '.join(m.logical_id for m in members)})"
            )
        script = init_script(options, members, me)
        init = f"{spec.init}\n{script}" if spec.init else script
        tags = {**spec.tags, TAG_MYID: str(me.myid), TAG_CLIENT: me.client}
        return dataclasses.replace(spec, init=init, tags=tags)

    def healthy(self, properties: Any, instance: Description) -> Health:
        """Ask the member: healthy if `ruok` says `imok` and `srvr` reports a serving mode.

        Not yet (or no longer) in a quorum is UNKNOWN; nobody listening, or an answer other than
        `imok`, is UNHEALTHY; no answer within the timeout is UNKNOWN. The group counts UNKNOWN
        as unhealthy once the grace period is over.
        """
        address = client_address(properties, instance)
        if address is None:
            log.info("%s has no %s tag: cannot tell which member it is", instance.id, TAG_CLIENT)
            return Health.UNKNOWN
        try:
            ok = four_letter_word(*address, "ruok", self._timeout)
            if ok.strip() != "imok":
                log.info("%s answered ruok with %r", instance.id, ok[:100])
                return Health.UNHEALTHY
            status = four_letter_word(*address, "srvr", self._timeout)
        except ConnectionRefusedError:
            return Health.UNHEALTHY
        except OSError as exc:  # timeouts, resets, unreachable hosts
            log.debug("%s did not answer: %s", instance.id, exc)
            return Health.UNKNOWN
        mode = parse_srvr(status).get("Mode", "")
        if mode in SERVING_MODES:
            return Health.HEALTHY
        if NOT_SERVING not in status:
            log.info("%s answered srvr without a mode: %r", instance.id, status[:200])
        return Health.UNKNOWN

    def member_status(self, properties: Any, instance: Description) -> dict[str, str]:
        """What the member's `srvr` says (`Mode`, `Zxid`, `Node count`...), for describe.

        A member not in a quorum is `{"Mode": "not serving"}`; one that does not answer is
        `{"Mode": "unreachable", "Error": ...}`. Never raises for a member that is down.
        """
        address = client_address(properties, instance)
        if address is None:
            return {"Mode": "unknown", "Error": f"no {TAG_CLIENT} tag"}
        try:
            status = four_letter_word(*address, "srvr", self._timeout)
        except OSError as exc:
            return {"Mode": "unreachable", "Error": str(exc) or type(exc).__name__}
        if NOT_SERVING in status:
            return {"Mode": "not serving"}
        return parse_srvr(status)

    def drain(self, properties: Any, instance: Description) -> None:
        """Nothing: a member leaving is a reconfiguration this flavor does not do. The group
        replaces a member with one of the same `myid`, which syncs from the ensemble."""


def client_address(properties: Any, instance: Description) -> tuple[str, int] | None:
    """A member's client address: its `zookeeper.client` tag, else computed from its
    `zookeeper.myid` tag (and logical ID) with `properties`; None if neither tells."""
    tagged = instance.tags.get(TAG_CLIENT)
    if tagged:
        host, _, port = tagged.rpartition(":")
        if host and port.isdigit():
            return host, int(port)
    myid = instance.tags.get(TAG_MYID, "")
    if not myid.isdigit() or int(myid) < 1:
        return None
    options = parse_options(properties)
    if options.host == LOGICAL_ID_HOST:
        if not instance.logical_id:
            return None
        host = instance.logical_id
    else:
        host = options.host
    return host, options.client_port + (int(myid) - 1) * options.port_stride


def four_letter_word(host: str, port: int, word: str, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Send a ZooKeeper four-letter word and return the whole answer (the server then closes).

    Raises `OSError` (`ConnectionRefusedError`, `TimeoutError`...) if there is no answer within
    `timeout` seconds in all.
    """
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(word.encode("ascii"))
        chunks: list[bytes] = []
        size = 0
        while size < _MAX_REPLY:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{host}:{port} did not finish answering {word} in {timeout}s")
            sock.settimeout(remaining)
            chunk = sock.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def parse_srvr(text: str) -> dict[str, str]:
    """`Key: value` lines of a `srvr` answer as a dict, e.g. {"Mode": "leader", "Zxid": "0x..."}."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out
