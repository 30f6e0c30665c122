"""The embedding API: build the actor tree from a cluster config and talk to it.

    from infrakit import Runtime

    with Runtime.from_file("cluster.json") as runtime:
        print(runtime.commit(spec))          # "Managing 3 instances"
        runtime.wait_converged("workers")

`infrakit run` is this, in the foreground, until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import pykka

from actors import Backoff, ChildExited, ChildSpec, Scheduler, Supervisor, default_scheduler
from actors.child import start_child_actor
from actors.curve import CurveClientConfig, server_file_problems
from actors.election import Election
from actors.election.file import FileElection
from actors.http_rpc import HttpRpcServer
from actors.owner import Ownership
from actors.pooled import ActorPool, default_pool
from actors.remote import CurveServerConfig, RpcServer, load_keypair
from actors.rpc_errors import RpcError
from actors.workpool import WorkPool
from infrakit import events
from infrakit.activity import ActivityLog
from infrakit.endpoints import connectable, exposed
from infrakit.eventlog import EventLog
from infrakit.events import Event, EventBus
from infrakit.home_sockets import HomeSockets
from infrakit.launcher import LaunchedPlugin
from infrakit.manager.actor import CALL_TIMEOUT, ManagerActor
from infrakit.manager.localstate import (
    LOCAL_KINDS,
    describe_dir,
    host_id,
    shared_state_home,
    unshared,
)
from infrakit.manager.routing import elsewhere, route
from infrakit.manager.store import Store, StoreFenced
from infrakit.manager.store.file import FileStore
from infrakit.manager.validation import validate_with_plugins
from infrakit.paths import (
    GROUP_SOCKET,
    GROUP_ZMQ_SOCKET,
    default_home,
    plugin_endpoint,
    plugins_dir,
)
from infrakit.pidfile import Launcher
from infrakit.plugins import create_plugin
from infrakit.publisher import EventPublisher
from infrakit.served import ServedPlugins
from infrakit.spec import (
    DEFAULT_PLUGINS,
    ClusterConfig,
    GroupSpec,
    SpecError,
    groups_of,
    load_json,
    parse_cluster,
    plugin_name,
)
from infrakit.spi import FlavorPlugin, InstancePlugin
from infrakit.spi.flavor import Reportable
from infrakit.spi.group import (
    ActivityHistory,
    Caller,
    GroupCannotRunError,
    GroupID,
    GroupNotFoundError,
    GroupPlugin,
    Maintenance,
    RecentEvents,
    Revisions,
    not_leader,
)
from infrakit.spi.instance import logical_id_or_slot
from infrakit.views import GroupRecord, GroupView, Views
from infrakit.wire.common import NOT_LEADER
from infrakit.wire.forward import Forwarder
from infrakit.wire.go_group import go_group_handlers
from infrakit.wire.group import GroupClient, group_handlers
from infrakit.wire.plugin import RemotePlugin, connect_plugin

log = logging.getLogger(__name__)

# Each instance is an actor with a thread: small stacks keep 10,000 of them cheap in virtual
# memory (Python frames live on the heap; 256 KiB is ample for the actors' call depth).
ACTOR_STACK_SIZE = 256 * 1024

# The root supervisor's restart budget: a manager that crashes this often is not going to get
# better by itself, and a runtime that cannot act must exit and say so (`infrakit run` does).
ROOT_MAX_RESTARTS = 5
ROOT_WITHIN = 60.0
ROOT_BACKOFF = Backoff(initial=0.5, maximum=5.0)


class _Root(Supervisor):
    """The runtime's root supervisor: reports each child that exits, so that the runtime can
    name the one that made it give up."""

    def __init__(self, on_exit: Callable[[str, BaseException | None], None], **kwargs: Any):
        super().__init__(**kwargs)
        self._on_exit = on_exit

    def on_child_exit(self, exit: ChildExited, will_restart: bool) -> None:
        self._on_exit(exit.name, exit.error)


class Runtime:
    """A running InfraKit: a root supervisor over the manager, its leader and its groups."""

    def __init__(
        self,
        config: ClusterConfig | Mapping[str, Any] | None = None,
        home: str | os.PathLike[str] | None = None,
        location: str = "",
        plugins: Mapping[str, InstancePlugin | FlavorPlugin] | None = None,
        http_group: bool | None = None,
    ) -> None:
        """`plugins` adds plugin objects of your own, by name, beside the cluster's;
        `http_group` overrides the cluster file's `Manager.HTTP`."""
        extra = dict(plugins or {})
        if config is None:
            config = ClusterConfig()
        elif not isinstance(config, ClusterConfig):
            config = parse_cluster(config, extra_plugins=extra)
        self.config = config
        self.home = Path(home) if home is not None else default_home()
        self.plugins_dir = plugins_dir(self.home)
        # With HTTP, Go InfraKit's CLI gets `plugins/group` and ZeroMQ moves to `group.zmq`.
        self.http_group = config.manager.http if http_group is None else http_group
        self.http_path = self.plugins_dir / GROUP_SOCKET if self.http_group else None
        group_socket = GROUP_ZMQ_SOCKET if self.http_group else GROUP_SOCKET
        self.home_endpoint = f"ipc://{self.plugins_dir / group_socket}"
        """Where this home's Group API is served, whatever `Manager.Listen` says."""
        self.listen = config.manager.listen or (self.home_endpoint,)
        if self.http_path is not None and f"ipc://{self.http_path}" in self.listen:
            raise ValueError(
                f"Manager.Listen: ipc://{self.http_path} is where Manager.HTTP serves Go"
                f" InfraKit's CLI; listen at ipc://{self.plugins_dir / GROUP_ZMQ_SOCKET} instead"
            )
        # Where followers and clients are told to find the leader: never a wildcard bind.
        self._location_given = bool(location or config.manager.advertise)
        self.location = location or config.manager.advertise or connectable(self.listen[0])
        self.events_endpoint = f"ipc://{self.home / 'events'}"
        self.events = EventBus()
        self.event_log = EventLog()
        """The recent events, numbered: what `infrakit events --since` replays."""
        self.views = Views()
        self.metrics = self._make_metrics()
        self.activity: ActivityLog | None = None
        """Each group's activity history, while running (infrakit/activity.py)."""
        self.group_plugin: GroupPlugin = _GroupPlugin(self)
        """This runtime's Group API, as its servers serve it (infrakit/wire/group.py)."""
        self.started_at = time.time()
        self.local_dirs: dict[str, tuple[str, Path]] = {}
        """Each local instance plugin (file, process) made here: its kind and state directory."""
        self.plugins = {**self._make_plugins(), **extra}
        # Served by name while leading, so that the CLI reaches every plugin this runtime uses.
        self.served = ServedPlugins(self.plugins, self.plugins_dir)
        self._root: pykka.ActorRef[Any] | None = None
        self._manager: pykka.ActorRef[Any] | None = None
        self._election: Election | None = None
        self._store: Store | None = None
        self._ownership: Ownership | None = None  # shared mode only
        self._last_exit: tuple[str, BaseException | None] | None = None
        self._scheduler: Scheduler | None = None
        self._pool: ActorPool | None = None
        self._health_checks: WorkPool | None = None
        # Written into the pid files of the plugins it launches, so that another runtime
        # tells its plugins (leave them) from an orphan of a runtime that died (stop it).
        self._launcher = Launcher.of_this_process(secrets.token_hex(6))
        # tcp:// servers run all the time; ipc:// ones (this home's socket among them) too,
        # but never on a path another live server holds (a runtime on the same home): those
        # are claimed once free (home_sockets.py). The event publisher, the served plugins
        # and the HTTP socket run only while leading.
        self._servers: list[RpcServer] = []
        self._home_sockets = HomeSockets(
            self._local_endpoints(),
            self._serve,
            self._leader_elsewhere,
            every=min(1.0, config.manager.poll),
        )
        self._forward: Forwarder | None = None
        self._http_server: HttpRpcServer | None = None
        self._publisher: EventPublisher | None = None
        self._unsubscribe: Any = None
        self._unrecord: Any = None
        self._unpublish: Any = None
        self._unobserve: list[Callable[[], None]] = []

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> Runtime:
        """A runtime for the cluster file at `path` (validated whole, or `SpecError`)."""
        return cls(parse_cluster(load_json(path), source=str(path)), **kwargs)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, wait_for_leadership: float = 5.0) -> Runtime:
        """Start the actor tree; wait up to `wait_for_leadership` seconds to lead.

        A runtime that does not win the election keeps running as a follower and takes over
        when the leader goes away.
        """
        if self._root is not None:
            return self
        election, store, ownership = self._backends()
        self._refuse_what_cannot_run(store)
        self._refuse_unshared_state(election)
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.plugins_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        threading.stack_size(ACTOR_STACK_SIZE)
        try:  # tcp:// servers first: the location the election publishes is their bound one
            if self.metrics is not None and self.config.manager.metrics is not None:
                self.metrics.serve(self.config.manager.metrics)
            for endpoint in self.listen:
                if endpoint.startswith("tcp://"):
                    self._servers.append(self._serve(endpoint))
        except BaseException:
            self._stop_servers()
            if self.metrics is not None:
                self.metrics.stop()
            raise
        bound = self._servers[0].endpoint if self.listen[0].startswith("tcp://") else ""
        if not self._location_given and bound and connectable(bound) != self.location:
            self.location = connectable(bound)  # tcp://...:0: the port it was given
            election, store, ownership = self._backends()  # that publish this location
        self._forward = self._forwarder()
        self._unsubscribe = self.events.subscribe(self._on_event)
        self._unrecord = self.events.subscribe(self.event_log.record)
        self._observe(store)
        self._election, self._store, self._ownership = election, store, ownership
        self._health_checks = WorkPool(self.config.limits.health_checks, name="health-check")
        manager = ChildSpec(
            "manager",
            ManagerActor,
            args=(election, store, self.plugins, self.events.publish, self.views),
            kwargs={
                "initial_groups": groups_of(self.config),
                "leader_poll": self.config.manager.poll,
                "cluster_id": self.config.cluster.id,
                "max_group_size": self.config.limits.max_group_size,
                "health_checks": self._health_checks,
                "ownership": ownership,
            },
            shutdown_timeout=120.0,
        )
        children = [manager]
        launched = self._launched_plugins()
        if launched:
            # Plugin processes restart with backoff for ever; their own supervisor's budget is
            # generous so a crash-looping plugin cannot take the runtime down.
            plugins = ChildSpec(
                "plugins",
                Supervisor,
                kwargs={
                    "children": launched,
                    "max_restarts": 1000,
                    "within": 60.0,
                    "backoff": Backoff(initial=0.2, maximum=10.0),
                },
            )
            children.insert(0, plugins)
        self._scheduler, self._pool = default_scheduler(), default_pool()
        root = ChildSpec(
            "runtime",
            _Root,
            kwargs={
                "on_exit": self._child_exited,
                "children": children,
                "max_restarts": ROOT_MAX_RESTARTS,
                "within": ROOT_WITHIN,
                "backoff": ROOT_BACKOFF,
            },
        )
        self._root = start_child_actor(root, None)
        with contextlib.suppress(RuntimeError, pykka.ActorDeadError):
            self._manager = self._current_manager()
        self._home_sockets.start()
        deadline = time.monotonic() + wait_for_leadership
        while time.monotonic() < deadline and not self.is_leader():
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 120.0) -> None:
        """Stop every actor, in reverse start order. Instances keep running."""
        root, self._root, self._manager = self._root, None, None
        activity, self.activity = self.activity, None
        if activity is not None:
            activity.stop()  # written while still leading: a follower writes nothing
        self._home_sockets.stop()
        self._stop_servers()
        if root is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                root.stop(block=True, timeout=timeout)
        self._stop_leader_servers()
        if self._health_checks is not None:
            self._health_checks.shutdown()
            self._health_checks = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unrecord()
            self._unsubscribe = None
        self._stop_observing()
        for plugin in self.plugins.values():
            close = getattr(plugin, "close", None)
            if callable(close):
                close()

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._root is not None and self._root.is_alive()

    def cannot_act(self) -> list[str]:
        """What this runtime has lost that it needs in order to act, one sentence each; empty
        while it can act. A restart in progress is not a loss: the supervisors see to it."""
        if self._root is None:
            return ["the runtime is not running"]
        lost = []
        if not self._root.is_alive():
            if self._last_exit is None:
                lost.append("the root supervisor stopped")
            else:
                name, error = self._last_exit
                lost.append(
                    f"the {name} died (it failed more than {ROOT_MAX_RESTARTS} times within"
                    f" {ROOT_WITHIN:g}s, last with {error!r})"
                )
        if self._scheduler is not None and not self._scheduler.alive:
            lost.append(f"the timer thread ({self._scheduler.name}) died")
        if self._pool is not None and not self._pool.alive:
            lost.append(f"the actor pool ({self._pool.name}) died")
        for server in [*self._servers, *self._home_sockets.servers()]:
            if not server.running:
                lost.append(f"the Group API server at {server.endpoint} died")
        lost.extend(self.served.died())
        publisher = self._publisher
        if publisher is not None and not publisher.alive:
            lost.append(f"the event publisher at {publisher.endpoint} died")
        return lost

    # -- the Group API ---------------------------------------------------------------------
    #
    # Writes go through the manager actor; questions are answered from what the manager and
    # the groups last published, so that an answer never waits on a busy actor or a plugin.

    def commit(
        self,
        spec: Mapping[str, Any] | GroupSpec,
        pretend: bool = False,
        expect_revision: int | None = None,
        who: Caller | None = None,
    ) -> str:
        """Commit a group spec; returns InfraKit's sentence (`Managing 3 instances`, ...).
        A real change is a new revision; a stale `expect_revision` raises RevisionError."""
        return str(self._call("commit", spec, pretend, expect_revision, who))

    def commit_revision(
        self,
        spec: Mapping[str, Any] | GroupSpec,
        pretend: bool = False,
        expect_revision: int | None = None,
        who: Caller | None = None,
    ) -> dict[str, Any]:
        """`commit`, answering `{"Details": sentence, "Revision": the group's revision}`."""
        return dict(self._call("commit_revision", spec, pretend, expect_revision, who))

    def history(self, group_id: str) -> dict[str, Any]:
        """The group's last revisions, the newest last (docs/protocol.md, `Group.History`)."""
        return dict(self._call("history", group_id))

    def rollback(
        self,
        group_id: str,
        to: int | None = None,
        expect_revision: int | None = None,
        who: Caller | None = None,
    ) -> dict[str, Any]:
        """Commit revision `to` again (default: the latest earlier one fully rolled out)."""
        return dict(self._call("rollback", group_id, to, expect_revision, who))

    def pause(self, group_id: str, who: Caller | None = None) -> dict[str, Any]:
        """Hold the group's rolling updates until `resume`; self-healing goes on."""
        return dict(self._call("pause", group_id, who))

    def resume(self, group_id: str, who: Caller | None = None) -> dict[str, Any]:
        """Go on with the group's rolling update."""
        return dict(self._call("resume", group_id, who))

    def scale(
        self,
        group_id: str,
        size: int,
        expect_revision: int | None = None,
        who: Caller | None = None,
    ) -> dict[str, Any]:
        """Set a Size group's size, as a revision of its own (nothing is replaced)."""
        return dict(self._call("scale", group_id, size, expect_revision, who))

    def promote(self, group_id: str, who: Caller | None = None) -> dict[str, Any]:
        """Let a rollout whose canaries are healthy roll the rest."""
        return dict(self._call("promote", group_id, who))

    def suspend(
        self, group_id: str, processes: list[str], suspend: bool = True, who: Caller | None = None
    ) -> dict[str, Any]:
        """Suspend (or resume) the group's processes: heal, launch, terminate, rollout."""
        return dict(self._call("suspend", group_id, processes, suspend, who))

    def standby(
        self, group_id: str, logical_id: str, standby: bool = True, who: Caller | None = None
    ) -> dict[str, Any]:
        """Put a logical instance in standby (or take it out)."""
        return dict(self._call("standby", group_id, logical_id, standby, who))

    def describe(self, group_id: str) -> dict[str, Any]:
        """`{"Instances": [...], "Converged": bool, "Conditions": [...]}` for the group, as
        its last look saw it; `Conditions` says what keeps it from acting, if anything.
        Each instance's `LogicalID` is its slot in a Size group (docs/spec.md)."""
        record = self._record(group_id, leading=True)
        view = self.views.group(group_id)
        members = view.members if view is not None else ()
        instances = [
            {**member.to_json(), "LogicalID": logical_id_or_slot(member)} for member in members
        ]
        # A flavor that knows its software may say more about each member (e.g. ZooKeeper's
        # leader / follower); an operator sees it as "Status".
        flavor = self.plugins.get(plugin_name(record.spec.properties.flavor.plugin))
        if isinstance(flavor, FlavorPlugin) and isinstance(flavor, Reportable):
            props = record.spec.properties.flavor.properties
            for member, out in zip(members, instances, strict=True):
                try:
                    status = flavor.member_status(props, member)
                except Exception as error:
                    status = {"Error": str(error)}
                if status:
                    out["Status"] = status
        return {
            "Instances": instances,
            "Converged": view is not None and view.converged,
            "Conditions": self._conditions(record, view),
        }

    def info(self, group_id: str) -> dict[str, Any]:
        """The group's summary for operators: phases, update progress, circuit, conditions."""
        return self._info(self._record(group_id))

    def _info(self, record: GroupRecord) -> dict[str, Any]:
        group_id = record.spec.id
        view = self.views.group(group_id) or GroupView(record.spec, destroying=record.destroying)
        return {
            **view.summary(),
            "Conditions": self._conditions(record, view),
            "Revision": record.revision,
            # Whether the group has taken the committed spec: until then, its view is the
            # previous spec's (a client following a commit waits for this).
            "SpecSeen": view.spec is record.spec or view.spec == record.spec,
        }

    def inspect(self) -> list[dict[str, Any]]:
        """Every committed group spec (in shared mode, every manager's: from the store)."""
        self._require_leading()
        if self._ownership is not None and self._store is not None:
            stored = self._store.load()
            return [
                entry["Properties"]
                for _id, entry in sorted(stored.items())
                if isinstance(entry.get("Properties"), dict) and not entry.get("Removed")
            ]
        return [record.spec.to_json() for record in self.views.records().values()]

    def free(self, group_id: str) -> None:
        """Stop watching a group; its instances keep running."""
        self._call("free", group_id)

    def start_destroy(self, group_id: str) -> None:
        """Begin destroying a group and return; `destroy` waits for the end."""
        self._call("destroy", group_id)

    def destroy(self, group_id: str, timeout: float = 120.0) -> None:
        """Drain and destroy every instance of a group, then forget it.

        Raises TimeoutError if instances remain after `timeout`; the destroy goes on (and
        survives a restart) until none is left.
        """
        self._call("destroy", group_id)
        deadline = time.monotonic() + timeout
        while self.is_managed(group_id):
            if time.monotonic() > deadline:
                view = self.views.group(group_id)
                left = len(view.members) if view is not None else "some"
                raise TimeoutError(
                    f"destroy of group {group_id!r} still in progress after {timeout:g}s:"
                    f" {left} instances remain; it keeps retrying"
                )
            time.sleep(0.05)

    def is_managed(self, group_id: str) -> bool:
        """Whether the manager holds the group (a destroyed group is forgotten at the end)."""
        return group_id in self.views.records()

    def is_leader(self) -> bool:
        # Not the cached manager ref: one that crashed as the runtime started has none yet.
        return self._root is not None and self.views.leading

    def leader_location(self) -> str | None:
        """Where the leading runtime can be reached (its first listen endpoint)."""
        return self._election.leader_location() if self._election is not None else None

    def status(self) -> dict[str, Any]:
        """This runtime's view: leadership, since when, where, its plugins and each group."""
        records = self.views.records()
        result: dict[str, Any] = {
            "Location": self.location,
            "Home": str(self.home),
            "Leader": self.is_leader(),
            "LeaderSince": self.views.leading_since,
            "LeaderLocation": self.leader_location(),
            # From one reading of the records: a group handed on meanwhile is not an error.
            "Groups": [self._info(records[group_id]) for group_id in sorted(records)],
        }
        if self._ownership is not None:
            # Nobody leads: each live member runs a share (the groups in `Owners`).
            result = {
                "Location": result.pop("Location"),
                "Home": result.pop("Home"),
                "Mode": "shared",
                "Member": result.pop("Leader"),
                "MemberSince": result.pop("LeaderSince"),
                **{k: v for k, v in result.items() if k != "LeaderLocation"},
            }
            try:
                result["Owners"] = dict(sorted(self._ownership.owners().items()))
            except Exception as error:  # etcd away: say so rather than fail the whole status
                result["OwnersError"] = str(error)
        plugins = self.views.plugins()
        if plugins:
            result["Plugins"] = [
                {"Name": name, "Up": state.up, "Reason": state.reason, "Since": state.since}
                for name, state in sorted(plugins.items())
            ]
        candidates = getattr(self._election, "candidates", None)
        if callable(candidates):
            result["Managers"] = candidates()  # every manager the election can see
        try:
            result["ManagerList"] = self.managers()
        except Exception as error:  # etcd away: say so rather than fail the whole status
            result["ManagerList"] = []
            result["ManagerListError"] = str(error)
        return result

    def recent_events(
        self, since: float, group_id: str | None = None, after: int = 0
    ) -> dict[str, Any]:
        """The leader's events of the last `since` seconds (of `group_id` only, if given)
        numbered above `after`, oldest first, as `Events.Recent` answers (docs/protocol.md).
        In shared mode a group's events are its owner's: asked here, the call goes there."""
        self._require_leading()
        if group_id is not None and self._ownership is not None:
            with contextlib.suppress(GroupNotFoundError):  # a group gone has its last events
                self._record(group_id)  # run elsewhere: refused with where (the wire forwards)
        return self.event_log.recent(since, group_id, after).to_json()

    def group_activity(self, group_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        """What the runtime did to the group and why, oldest first (the last `limit` entries
        if given), as `Group.Activity` answers (docs/protocol.md); a destroyed group's too."""
        self._require_leading()
        activity = self.activity
        entries = activity.history(group_id, limit) if activity is not None else []
        if not entries:
            self._record(group_id)  # none, or not a group: say which
        return entries

    def wait_converged(self, group_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until a look begun after this call finds the group converged; returns its
        description. Raises TimeoutError if that does not happen within `timeout` seconds."""
        since = time.monotonic()
        deadline = since + timeout
        self._record(group_id)
        self._tell("look", group_id)
        while True:
            view = self.views.group(group_id)
            if view is not None and view.converged and (view.looked_at or 0.0) >= since:
                return self.describe(group_id)
            if time.monotonic() > deadline:
                info = self.info(group_id)
                raise TimeoutError(f"group {group_id!r} did not converge in {timeout:g}s: {info}")
            time.sleep(0.05)

    # -- helpers ---------------------------------------------------------------------------

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._manager_ref().proxy(), method)(*args).get(timeout=CALL_TIMEOUT)
        except StoreFenced as error:
            # It lost the leadership, or the group, between its own check and its write; the
            # store refused the write (nothing changed): a refusal, not a failure.
            if self._ownership is None:
                raise not_leader(self.leader_location()) from None
            raise GroupCannotRunError(
                f"{error}: the group is moving to another manager; try again in a few seconds"
            ) from None

    def _manager_ref(self) -> pykka.ActorRef[Any]:
        manager = self._manager
        if manager is None or not manager.is_alive():  # the root has restarted it since
            manager = self._manager = self._current_manager()
        return manager

    def _current_manager(self) -> pykka.ActorRef[Any]:
        root = self._root
        if root is None:
            raise RuntimeError("the runtime is not running; call start() first")
        try:
            manager: pykka.ActorRef[Any] | None = (
                root.proxy().child("manager").get(timeout=CALL_TIMEOUT)
            )
        except pykka.ActorDeadError:
            manager = None
        if manager is None:
            raise RuntimeError("the runtime cannot act now: its manager is not running")
        return manager

    def _child_exited(self, name: str, error: BaseException | None) -> None:
        self._last_exit = (name, error)

    def _tell(self, method: str, *args: Any) -> None:
        """Ask the manager to do something, without waiting for it."""
        getattr(self._manager_ref().proxy(), method)(*args)

    def _require_leading(self) -> None:
        if self._root is None:
            raise RuntimeError("the runtime is not running; call start() first")
        if not self.views.leading:
            raise not_leader(self.leader_location())

    def _record(self, group_id: str, leading: bool = False) -> GroupRecord:
        if leading:
            self._require_leading()
        record = self.views.records().get(group_id)
        if record is None and self._ownership is not None and self._store is not None:
            location = route(group_id, self._ownership, lambda: False)  # never claims
            if location is None and self._store.load_one(group_id) is not None:
                location = ""  # stored, and nobody runs it: its owner just died
            if location is not None:
                raise elsewhere(group_id, location)
        if record is None:
            raise GroupNotFoundError(f"Group '{group_id}' is not being watched")
        return record

    def _conditions(self, record: GroupRecord, view: GroupView | None) -> list[str]:
        """What keeps a group from acting: its record's problem, its last look's conditions,
        and any of its plugins that does not answer."""
        found = [record.problem] if record.problem else []
        if view is not None:
            found.extend(view.all_conditions())
        elif not record.problem:
            found.append("not looked at yet")
        plugins = self.views.plugins()
        props = record.spec.properties
        for kind, ref in (("instance", props.instance), ("flavor", props.flavor)):
            reference = ref.plugin
            state = plugins.get(plugin_name(reference))
            if state is not None and not state.up:
                since = time.strftime("%H:%M:%S", time.localtime(state.since))
                found.append(
                    f"{kind} plugin {reference!r} does not answer (since {since}): {state.reason}"
                )
        return found

    def _make_metrics(self) -> Any:
        """The metrics (infrakit/metrics.py) if the cluster file asks for them (imported only
        then), fed by the looks the groups publish; else None."""
        if self.config.manager.metrics is None:
            return None
        from infrakit.metrics import Metrics

        metrics = Metrics(self.views, lambda: self._pool)
        self.views.on_look = metrics.on_look
        return metrics

    def _observe(self, store: Store) -> None:
        """Feed the events to the activity history and the metrics."""
        self.activity = ActivityLog(store, lambda: self.views.leading)
        self._unobserve.append(self.event_log.subscribe(lambda _seq, e: self._note(e)))
        if self.metrics is not None:
            self._unobserve.append(self.event_log.subscribe(self.metrics.on_event))

    def _note(self, event: Event) -> None:
        activity = self.activity
        if activity is not None:
            activity.record(event)

    def _stop_observing(self) -> None:
        for unsubscribe in self._unobserve:
            unsubscribe()
        self._unobserve.clear()
        if self.metrics is not None:
            self.metrics.stop()

    def _make_plugins(self) -> dict[str, InstancePlugin | FlavorPlugin]:
        plugins: dict[str, InstancePlugin | FlavorPlugin] = {}
        named = {p.name for p in self.config.plugins}
        for name, kind in DEFAULT_PLUGINS:
            if name not in named:
                plugins[name] = self._local_plugin(name, kind, {})
        for config in self.config.plugins:
            if config.kind is not None:
                plugins[config.name] = self._local_plugin(config.name, config.kind, config.options)
            else:
                endpoint = config.endpoint or plugin_endpoint(config.name, self.home)
                plugins[config.name] = connect_plugin(
                    config.name, endpoint, on_change=self._plugin_watcher(config.name, endpoint)
                )
        if self.metrics is not None:
            self.metrics.time_plugins(plugins)
        return plugins

    def _local_plugin(
        self, name: str, kind: str, options: Mapping[str, Any]
    ) -> InstancePlugin | FlavorPlugin:
        """A built-in plugin. A local instance plugin's state directory is its `Dir`, or by
        default in the home; with an etcd store, in a directory shared by the cluster's
        managers on this host (infrakit/manager/localstate.py), so that a new leader sees the
        instances the old one made."""
        if kind not in LOCAL_KINDS:
            return create_plugin(kind, options, self.home)
        given = next((v for k, v in options.items() if k.lower() == "dir"), None)
        if isinstance(given, str) and given:
            directory = Path(given).expanduser()
        else:
            stored = self.config.manager.store
            base = self.home
            if stored.kind == "etcd":
                base = shared_state_home(stored.prefix)
                for level in (base.parent.parent, base.parent, base):  # ours alone to read
                    level.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory = base / "instances" / kind
            options = {**options, "Dir": str(directory)}
        plugin = create_plugin(kind, options, self.home)
        self.local_dirs[name] = (kind, directory)
        return plugin

    def _refuse_what_cannot_run(self, store: Store) -> None:
        """Raise SpecError, before anything starts or changes, for a cluster file this runtime
        could not act on: another cluster's store, or a group its own plugins refuse (say, a
        Docker image that is not there). Groups on plugins in other processes are checked
        when committed, as those may not be up yet."""
        problems: list[tuple[str, str]] = []
        wanted = self.config.cluster.id
        stored = store.stored_cluster_id() if wanted is not None else None
        if stored is not None and stored != wanted:
            problems.append(
                (
                    "Cluster.ID",
                    f"the store belongs to cluster {stored!r}, not {wanted!r}: a cluster's ID"
                    f" cannot change (its instances carry it); set it to {stored!r}",
                )
            )
        for index, spec in enumerate(groups_of(self.config)):
            props = spec.properties
            names = (plugin_name(props.instance.plugin), plugin_name(props.flavor.plugin))
            if any(isinstance(self.plugins.get(name), RemotePlugin) for name in names):
                continue
            try:
                validate_with_plugins(spec, self.plugins)
            except SpecError as error:
                problems.extend(
                    (f"Groups[{index}].{path}", fault) for path, fault in error.problems
                )
        if problems:
            raise SpecError(problems)

    def _backends(self) -> tuple[Election, Store, Ownership | None]:
        """The election and store the cluster file asks for (`file` unless it says `etcd`),
        and in shared mode the groups' ownership (its keys under the election's lease)."""
        leader, stored = self.config.manager.leader, self.config.manager.store
        shared = self.config.manager.mode == "shared"
        election: Election
        if leader.kind == "etcd":
            from actors.election.etcd import EtcdElection

            election = EtcdElection(
                list(leader.endpoints),
                key=leader.key,
                location=self.location,
                ttl=leader.ttl,
                details=self._details(),
                lead=not shared,  # shared mode: nobody leads; each runs a share
            )
        else:
            election = FileElection(self.home / "leader.lock", location=self.location)
        if stored.kind != "etcd":
            return election, FileStore(self.home / "configs" / "global.config"), None
        from actors.election.etcd import EtcdElection
        from infrakit.manager.store.etcd import EtcdStore, leader_fence

        endpoints, prefix = list(stored.endpoints), stored.prefix
        if not isinstance(election, EtcdElection):
            return election, EtcdStore(endpoints, prefix=prefix), None
        if not shared:
            refusal = f"not the leader any more ({leader.key})"
            store = EtcdStore(endpoints, prefix, leader_fence(election), refusal=refusal)
            return election, store, None
        from actors.election.etcd_owners import EtcdOwnership

        ownership = EtcdOwnership(election)
        refusal = f"this manager does not own the group any more ({ownership.prefix})"
        return election, EtcdStore(endpoints, prefix, ownership.fence, refusal=refusal), ownership

    def _plugin_watcher(self, name: str, endpoint: str) -> Callable[[bool, str], None]:
        """Report a remote plugin's connection going down or coming back, as an event (its
        first connection "is up": nothing came back)."""
        seen_up = False

        def changed(up: bool, reason: str) -> None:
            nonlocal seen_up
            self.views.set_plugin(name, up, reason)
            state = ("is back" if seen_up else "is up") if up else "is down"
            seen_up = seen_up or up
            self.events.publish(
                Event("plugins", events.PLUGIN, f"plugin {name} at {endpoint} {state}: {reason}")
            )

        return changed

    def _launched_plugins(self) -> list[ChildSpec]:
        return [
            ChildSpec(
                config.name,
                LaunchedPlugin,
                args=(config.name, config.launch, self.home / "logs" / f"{config.name}.log"),
                kwargs={
                    "pid_file": self.plugins_dir / f"{config.name}.pid",
                    "launcher": self._launcher,
                    "env": {"INFRAKIT_HOME": str(self.home)},  # serve where we look for it
                },
            )
            for config in self.config.plugins
            if config.launch
        ]

    def _serve(self, endpoint: str) -> RpcServer:
        curve = None
        settings = self.config.manager.curve
        if endpoint.startswith("tcp://") and settings is not None:
            for problem in server_file_problems(settings.secret_key, settings.authorized_keys):
                log.warning("Manager.Curve: %s", problem)
            public, secret = load_keypair(settings.secret_key)
            if secret is None:
                raise ValueError(f"{settings.secret_key}: not a secret key file")
            curve = CurveServerConfig(public, secret, settings.authorized_keys)
        elif exposed(endpoint):  # allowed only by Manager.Insecure (spec.py)
            log.warning(
                "Manager.Insecure: the Group API at %s is served beyond this host without"
                " encryption or authentication: anyone who can reach it can commit groups that"
                " run commands on this host",
                endpoint,
            )
        handlers = group_handlers(self.group_plugin, self._forwarded)
        return RpcServer(endpoint, handlers, curve=curve, name="manager").start()

    def _stop_servers(self) -> None:
        for server in self._servers:
            server.stop()
        self._servers.clear()
        forward, self._forward = self._forward, None
        if forward is not None:
            forward.close()

    # -- the ipc:// sockets, and calls forwarded to the leader -------------------------------

    def _local_endpoints(self) -> list[str]:
        """The ipc:// endpoints this runtime serves the Group API at: its `Listen` ones and
        its home's socket."""
        wanted = [e for e in self.listen if e.startswith("ipc://")]
        return wanted if self.home_endpoint in wanted else [*wanted, self.home_endpoint]

    def _leader_elsewhere(self) -> str | None:
        """Where the leader is, unless this runtime leads (or is about to: its election won)."""
        election = self._election
        if self.is_leader() or (election is not None and election.is_leader()):
            return None
        return self.leader_location()

    def _forwarded(self, method: str, params: dict[str, Any], location: str | None = None) -> Any:
        """A follower's call sent on to the leader, or to `location` (a group's owner in shared
        mode), by the `Forwarder`, once there is one to send it with (the tcp:// servers start
        first)."""
        forward = self._forward
        if forward is None:
            raise RpcError(NOT_LEADER, self.waiting_for_leader(), {"Leader": None})
        return forward(method, params, location)

    def _forwarder(self) -> Forwarder:
        """What sends a follower's Group API calls on to the leader (infrakit/wire/forward.py),
        with this manager's own CURVE keys for a `tcp://` leader when `Manager.Curve` is set."""
        own = {self.location, *self.listen, self.home_endpoint}
        for server in self._servers:
            own.add(connectable(server.endpoint))
        return Forwarder(
            leader=lambda: None if self.is_leader() else self.leader_location(),
            waiting=self.waiting_for_leader,
            own=lambda: own,
            curve=self._curve_to,
            idempotent=GroupClient.IDEMPOTENT,
        )

    def _curve_to(self, location: str) -> CurveClientConfig | None:
        """The CURVE settings to reach the manager at `location`: our own key pair (its public
        key must be in the other's AuthorizedKeys), and the server key that manager published,
        else ours (one key pair shared by the cluster's managers)."""
        settings = self.config.manager.curve
        if settings is None or not location.startswith("tcp://"):
            return None
        public, secret = load_keypair(settings.secret_key)
        if secret is None:
            return None
        server = public
        with contextlib.suppress(Exception):
            for manager in self.managers():
                if manager.get("Location") == location and manager.get("CurveKey"):
                    server = str(manager["CurveKey"]).encode()
        return CurveClientConfig(public_key=public, secret_key=secret, server_key=server)

    # -- who leads, and who else there is ----------------------------------------------------

    def waiting_for_leader(self) -> str:
        """What a follower that knows no leader waits for, in words."""
        leader = self.config.manager.leader
        if leader.kind == "etcd" and self.config.manager.mode == "shared":
            return (
                f"this manager has not joined the managers sharing the groups on etcd at"
                f" {', '.join(leader.endpoints)} (key {leader.key}) yet"
            )
        if leader.kind == "etcd":
            endpoints = ", ".join(leader.endpoints)
            return (
                f"no leader elected yet on etcd at {endpoints} (key {leader.key}); this manager"
                " follows"
            )
        return f"no runtime leads on this home yet ({self.home / 'leader.lock'}); this one follows"

    def following(self) -> str:
        """Whom this runtime follows, in words (its log says it when it starts as a
        follower): another runtime on its home (file), or a leader elsewhere (etcd)."""
        election = self._election
        if isinstance(election, FileElection):
            pid = election.holder_pid()
            return f"another runtime leads on this home (pid {pid if pid else 'unknown'})"
        if self.config.manager.mode == "shared":
            return self.waiting_for_leader()
        leader = self.leader_location()
        if leader:
            return f"following the leader at {leader}"
        leader_config = self.config.manager.leader
        return (
            f"waiting for a leader on etcd at {', '.join(leader_config.endpoints)} (key"
            f" {leader_config.key})"
        )

    def managers(self) -> list[dict[str, Any]]:
        """Every manager this runtime knows of, as each published itself (`Location`, `Home`,
        `Host`, `PID`, `Since`...) with whether it leads: with etcd, every live one; with the
        file election, this one and the leader."""
        election = self._election
        listed = getattr(election, "managers", None)
        if callable(listed):
            found: list[dict[str, Any]] = listed()
            if self._ownership is not None:  # shared mode: how many groups each runs
                owners = list(self._ownership.owners().values())
                for manager in found:
                    manager["Owns"] = owners.count(str(manager.get("Location")))
            return found
        mine = {**self._details(), "Location": self.location, "Leader": self.is_leader()}
        leader = self.leader_location()
        if mine["Leader"] or not leader or leader == self.location:
            return [mine]
        return [mine, {"Location": leader, "Leader": True}]

    def _details(self) -> dict[str, Any]:
        """What this manager publishes of itself for the others (`managers()`)."""
        details: dict[str, Any] = {
            "Home": str(self.home),
            "Host": host_id(),
            "HostName": socket.gethostname(),
            "PID": os.getpid(),
            "Since": self.started_at,
            "Plugins": self._local_state(),
            "Mode": self.config.manager.mode,
        }
        settings = self.config.manager.curve
        if settings is not None:
            with contextlib.suppress(OSError, ValueError):
                details["CurveKey"] = load_keypair(settings.secret_key)[0].decode()
        return details

    def _local_state(self) -> list[dict[str, Any]]:
        """Where each local instance plugin keeps its instances, as the managers compare it."""
        return [describe_dir(name, kind, d) for name, (kind, d) in self.local_dirs.items()]

    def _refuse_unshared_state(self, election: Election) -> None:
        """Raise SpecError, before anything starts, when another live manager runs in another
        `Manager.Mode`, or a local plugin of ours cannot see the instances another live
        manager's plugin of that name made (localstate.py's rule): a new leader would make them
        again. Unchecked (a warning) while etcd does not answer."""
        listed = getattr(election, "managers", None)
        if not callable(listed):
            return
        try:
            others = listed()
        except Exception as error:
            log.warning(
                "cannot check that the other managers share this one's mode and local plugins'"
                " state directories: %s",
                error,
            )
            return
        mode = self.config.manager.mode
        faults = [
            (
                "Manager.Mode",
                f"the manager at {other.get('Location')} runs in {other['Mode']!r} mode on this"
                f" etcd key; every manager of a cluster runs in one mode (this one: {mode!r})",
            )
            for other in others
            if other.get("Location") != self.location and other.get("Mode", mode) != mode
        ]
        problems = unshared(self._local_state(), host_id(), others, self.location)
        paths = {c.name: f"Plugins[{i}].Options.Dir" for i, c in enumerate(self.config.plugins)}
        faults.extend(
            (paths.get(name, f"Plugins: {name} (a default plugin)"), why) for name, why in problems
        )
        if faults:
            raise SpecError(faults)

    def _on_event(self, event: Event) -> None:
        if event.kind != events.LEADERSHIP:
            return
        if event.message.startswith("gained"):
            if self.activity is not None:
                self.activity.forget_cache()  # another leader may have written since
            self._start_leader_servers()
        else:
            self._stop_leader_servers()

    def _start_leader_servers(self) -> None:
        self._stop_leader_servers()  # a manager that crashed while leading never said "lost"
        self._home_sockets.claim()  # a socket a follower on this home gave up for us
        if self.http_path is not None:
            handlers = go_group_handlers(self.group_plugin)
            try:
                self._http_server = HttpRpcServer(self.http_path, handlers, name="manager-http")
                self._http_server.start()
            except OSError as error:
                log.error("cannot serve the Group API over HTTP at %s: %s", self.http_path, error)
                self._http_server = None
        self.served.start()
        try:
            self._publisher = EventPublisher(self.events_endpoint).start()
        except Exception as error:
            log.error("cannot publish events at %s: %s", self.events_endpoint, error)
            self._publisher = None
        else:
            publish = self._publisher.publish
            self._unpublish = self.event_log.subscribe(lambda seq, event: publish(event, seq))

    def _stop_leader_servers(self) -> None:
        http, self._http_server = self._http_server, None
        if http is not None:
            http.stop()
        self.served.stop()
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            self._unpublish()
            publisher.stop()


class _GroupPlugin(GroupPlugin, RecentEvents, ActivityHistory, Revisions, Maintenance):
    """A runtime's Group API under the contract's names (spi/group.py); each method is the
    runtime's own, and `destroy_group` only begins the destroy, as InfraKit's did."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def commit_group(self, spec: Mapping[str, Any], pretend: bool = False) -> str:
        return self._runtime.commit(spec, pretend)

    def commit_revision(
        self,
        spec: Mapping[str, Any],
        pretend: bool = False,
        expect_revision: int | None = None,
        who: Caller | None = None,
    ) -> dict[str, Any]:
        return self._runtime.commit_revision(spec, pretend, expect_revision, who)

    def group_history(self, group_id: GroupID) -> dict[str, Any]:
        return self._runtime.history(group_id)

    def rollback_group(
        self,
        group_id: GroupID,
        to: int | None = None,
        expect_revision: int | None = None,
        who: Caller | None = None,
    ) -> dict[str, Any]:
        return self._runtime.rollback(group_id, to, expect_revision, who)

    def pause_group(self, group_id: GroupID, who: Caller | None = None) -> dict[str, Any]:
        return self._runtime.pause(group_id, who)

    def resume_group(self, group_id: GroupID, who: Caller | None = None) -> dict[str, Any]:
        return self._runtime.resume(group_id, who)

    def scale_group(
        self,
        group_id: GroupID,
        size: int,
        expect_revision: int | None = None,
        who: Caller | None = None,
    ) -> dict[str, Any]:
        return self._runtime.scale(group_id, size, expect_revision, who)

    def promote_group(self, group_id: GroupID, who: Caller | None = None) -> dict[str, Any]:
        return self._runtime.promote(group_id, who)

    def suspend_group(
        self, group_id: GroupID, processes: list[str], suspend: bool, who: Caller | None = None
    ) -> dict[str, Any]:
        return self._runtime.suspend(group_id, processes, suspend, who)

    def standby_instance(
        self, group_id: GroupID, logical_id: str, standby: bool, who: Caller | None = None
    ) -> dict[str, Any]:
        return self._runtime.standby(group_id, logical_id, standby, who)

    def free_group(self, group_id: GroupID) -> None:
        self._runtime.free(group_id)

    def describe_group(self, group_id: GroupID) -> dict[str, Any]:
        return self._runtime.describe(group_id)

    def destroy_group(self, group_id: GroupID) -> None:
        self._runtime.start_destroy(group_id)

    def inspect_groups(self) -> list[dict[str, Any]]:
        return self._runtime.inspect()

    def is_leader(self) -> bool:
        return self._runtime.is_leader()

    def leader_location(self) -> str | None:
        return self._runtime.leader_location()

    def status(self) -> dict[str, Any]:
        return self._runtime.status()

    def recent_events(
        self, since: float, group: GroupID | None = None, after: int = 0
    ) -> dict[str, Any]:
        return self._runtime.recent_events(since, group, after)

    def group_activity(self, group_id: GroupID, limit: int | None = None) -> list[dict[str, Any]]:
        return self._runtime.group_activity(group_id, limit)
