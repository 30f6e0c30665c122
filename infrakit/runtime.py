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
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import pykka

from actors import Backoff, ChildSpec, Supervisor
from actors.election import Election
from actors.election.file import FileElection
from actors.remote import CurveServerConfig, RpcServer, load_keypair
from infrakit import events
from infrakit.events import Event, EventBus
from infrakit.launcher import LaunchedPlugin
from infrakit.manager.actor import CALL_TIMEOUT, ManagerActor
from infrakit.manager.store import Store
from infrakit.manager.store.file import FileStore
from infrakit.paths import default_home, plugin_endpoint, plugins_dir
from infrakit.plugins import create_plugin
from infrakit.publisher import EventPublisher
from infrakit.rpc import connect_plugin, group_handlers
from infrakit.spec import (
    DEFAULT_PLUGINS,
    ClusterConfig,
    GroupSpec,
    groups_of,
    load_json,
    parse_cluster,
)
from infrakit.spi import FlavorPlugin, InstancePlugin

log = logging.getLogger(__name__)

# Each instance is an actor with a thread: small stacks keep 10,000 of them cheap in virtual
# memory (Python frames live on the heap; 256 KiB is ample for the actors' call depth).
ACTOR_STACK_SIZE = 256 * 1024


class Runtime:
    """A running InfraKit: a root supervisor over the manager, its leader and its groups."""

    def __init__(
        self,
        config: ClusterConfig | Mapping[str, Any] | None = None,
        home: str | os.PathLike[str] | None = None,
        location: str = "",
        plugins: Mapping[str, InstancePlugin | FlavorPlugin] | None = None,
    ) -> None:
        """`plugins` adds plugin objects of your own, by name, beside the cluster's."""
        extra = dict(plugins or {})
        if config is None:
            config = ClusterConfig()
        elif not isinstance(config, ClusterConfig):
            config = parse_cluster(config, extra_plugins=extra)
        self.config = config
        self.home = Path(home) if home is not None else default_home()
        self.plugins_dir = plugins_dir(self.home)
        self.listen = config.manager.listen or (f"ipc://{self.plugins_dir / 'group'}",)
        self.location = location or self.listen[0]
        self.events_endpoint = f"ipc://{self.home / 'events'}"
        self.events = EventBus()
        self.plugins = {**self._make_plugins(), **extra}
        self._root: pykka.ActorRef[Any] | None = None
        self._manager: pykka.ActorRef[Any] | None = None
        # Servers on this home's ipc:// paths run only while leading (a follower on the same
        # home must not take the leader's sockets); tcp:// ones run all the time.
        self._servers: list[RpcServer] = []
        self._leader_servers: list[RpcServer] = []
        self._publisher: EventPublisher | None = None
        self._unsubscribe: Any = None
        self._unpublish: Any = None

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
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.plugins_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        threading.stack_size(ACTOR_STACK_SIZE)
        self._unsubscribe = self.events.subscribe(self._on_event)
        election, store = self._backends()
        manager = ChildSpec(
            "manager",
            ManagerActor,
            args=(election, store, self.plugins, self.events.publish),
            kwargs={
                "initial_groups": groups_of(self.config),
                "leader_poll": self.config.manager.poll,
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
        self._root = Supervisor.start(children=children, max_restarts=10, within=60.0)
        self._manager = self._root.proxy().child("manager").get(timeout=CALL_TIMEOUT)
        for endpoint in self.listen:
            if endpoint.startswith("tcp://"):
                self._servers.append(self._serve(endpoint))
        deadline = time.monotonic() + wait_for_leadership
        while time.monotonic() < deadline and not self.is_leader():
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 120.0) -> None:
        """Stop every actor, in reverse start order. Instances keep running."""
        root, self._root, self._manager = self._root, None, None
        for server in self._servers:
            server.stop()
        self._servers.clear()
        if root is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                root.stop(block=True, timeout=timeout)
        self._stop_leader_servers()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
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

    # -- the Group API ---------------------------------------------------------------------

    def commit(self, spec: Mapping[str, Any] | GroupSpec, pretend: bool = False) -> str:
        """Commit a group spec; returns InfraKit's sentence (`Managing 3 instances`, ...)."""
        return str(self._call("commit", spec, pretend))

    def describe(self, group_id: str) -> dict[str, Any]:
        """`{"Instances": [...], "Converged": bool}` for the group."""
        result: dict[str, Any] = self._call("describe", group_id)
        return result

    def info(self, group_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("info", group_id)
        return result

    def inspect(self) -> list[dict[str, Any]]:
        """Every committed group spec."""
        result: list[dict[str, Any]] = self._call("inspect")
        return result

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
        while self._call("is_managed", group_id):
            if time.monotonic() > deadline:
                left = len(self.describe(group_id)["Instances"])
                raise TimeoutError(
                    f"destroy of group {group_id!r} still in progress after {timeout:g}s:"
                    f" {left} instances remain; it keeps retrying"
                )
            time.sleep(0.05)

    def is_leader(self) -> bool:
        return self._manager is not None and bool(self._call("is_leader"))

    def leader_location(self) -> str | None:
        """Where the leading runtime can be reached (its first listen endpoint)."""
        location: str | None = self._call("leader_location")
        return location

    def status(self) -> dict[str, Any]:
        """This runtime's view: leadership, since when, where, and each group's summary."""
        result: dict[str, Any] = self._call("status")
        return {"Location": self.location, "Home": str(self.home), **result}

    def wait_converged(self, group_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until a look begun after this call finds the group converged; returns its
        description. Raises TimeoutError if that does not happen within `timeout` seconds."""
        since = time.monotonic()
        deadline = since + timeout
        self._call("look", group_id)
        while True:
            if self._call("converged_since", group_id, since):
                return self.describe(group_id)
            if time.monotonic() > deadline:
                info = self.info(group_id)
                raise TimeoutError(f"group {group_id!r} did not converge in {timeout:g}s: {info}")
            time.sleep(0.05)

    # -- helpers ---------------------------------------------------------------------------

    def _call(self, method: str, *args: Any) -> Any:
        if self._manager is None:
            raise RuntimeError("the runtime is not running; call start() first")
        return getattr(self._manager.proxy(), method)(*args).get(timeout=CALL_TIMEOUT)

    def _make_plugins(self) -> dict[str, InstancePlugin | FlavorPlugin]:
        plugins: dict[str, InstancePlugin | FlavorPlugin] = {}
        named = {p.name for p in self.config.plugins}
        for name, kind in DEFAULT_PLUGINS:
            if name not in named:
                plugins[name] = create_plugin(kind, {}, self.home)
        for config in self.config.plugins:
            if config.kind is not None:
                plugins[config.name] = create_plugin(config.kind, config.options, self.home)
            else:
                endpoint = config.endpoint or plugin_endpoint(config.name, self.home)
                plugins[config.name] = connect_plugin(
                    config.name, endpoint, on_change=self._plugin_watcher(config.name, endpoint)
                )
        return plugins

    def _backends(self) -> tuple[Election, Store]:
        """The election and store the cluster file asks for (`file` unless it says `etcd`)."""
        leader, stored = self.config.manager.leader, self.config.manager.store
        election: Election
        if leader.kind == "etcd":
            from actors.election.etcd import EtcdElection

            election = EtcdElection(
                list(leader.endpoints), key=leader.key, location=self.location, ttl=leader.ttl
            )
        else:
            election = FileElection(self.home / "leader.lock", location=self.location)
        if stored.kind == "etcd":
            from actors.election.etcd import EtcdElection
            from infrakit.manager.store.etcd import EtcdStore

            fence = election if isinstance(election, EtcdElection) else None
            return election, EtcdStore(list(stored.endpoints), prefix=stored.prefix, election=fence)
        return election, FileStore(self.home / "configs" / "global.config")

    def _plugin_watcher(self, name: str, endpoint: str) -> Callable[[bool, str], None]:
        """Report a remote plugin's connection going down or coming back, as an event."""

        def changed(up: bool, reason: str) -> None:
            state = "is back" if up else "is down"
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
            )
            for config in self.config.plugins
            if config.launch
        ]

    def _serve(self, endpoint: str) -> RpcServer:
        curve = None
        settings = self.config.manager.curve
        if endpoint.startswith("tcp://") and settings is not None:
            public, secret = load_keypair(settings.secret_key)
            if secret is None:
                raise ValueError(f"{settings.secret_key}: not a secret key file")
            curve = CurveServerConfig(public, secret, settings.authorized_keys)
        return RpcServer(endpoint, group_handlers(self), curve=curve, name="manager").start()

    def _on_event(self, event: Event) -> None:
        if event.kind != events.LEADERSHIP:
            return
        if event.message.startswith("gained"):
            self._start_leader_servers()
        else:
            self._stop_leader_servers()

    def _start_leader_servers(self) -> None:
        for endpoint in self.listen:
            if endpoint.startswith("ipc://"):
                try:
                    self._leader_servers.append(self._serve(endpoint))
                except OSError as error:
                    log.error("cannot serve the Group API at %s: %s", endpoint, error)
        try:
            self._publisher = EventPublisher(self.events_endpoint).start()
        except Exception as error:
            log.error("cannot publish events at %s: %s", self.events_endpoint, error)
            self._publisher = None
        else:
            self._unpublish = self.events.subscribe(self._publisher.publish)

    def _stop_leader_servers(self) -> None:
        for server in self._leader_servers:
            server.stop()
        self._leader_servers.clear()
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            self._unpublish()
            publisher.stop()
