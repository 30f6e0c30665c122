"""The embedding API: build the actor tree from a cluster config and talk to it.

    from infrakit import Runtime

    with Runtime.from_file("cluster.json") as runtime:
        print(runtime.commit(spec))          # "Managing 3 instances"
        runtime.wait_converged("workers")

`infrakit run` is this, in the foreground, until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import pykka

from actors import ChildSpec, Supervisor
from actors.election.file import FileElection
from infrakit.events import EventBus
from infrakit.manager.actor import CALL_TIMEOUT, ManagerActor
from infrakit.manager.store.file import FileStore
from infrakit.plugins import create_plugin
from infrakit.spec import (
    DEFAULT_PLUGINS,
    ClusterConfig,
    GroupSpec,
    groups_of,
    load_json,
    parse_cluster,
)
from infrakit.spi import FlavorPlugin, InstancePlugin

# Each instance is an actor with a thread: small stacks keep 10,000 of them cheap in virtual
# memory (Python frames live on the heap; 256 KiB is ample for the actors' call depth).
ACTOR_STACK_SIZE = 256 * 1024


def default_home() -> Path:
    """`$INFRAKIT_HOME`, else `~/.infrakit`: where the runtime keeps everything it writes."""
    return Path(os.environ.get("INFRAKIT_HOME") or Path.home() / ".infrakit").expanduser()


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
        self.location = location or f"pid {os.getpid()}"
        self.events = EventBus()
        self.plugins = {**self._make_plugins(), **extra}
        self._root: pykka.ActorRef[Any] | None = None
        self._manager: pykka.ActorRef[Any] | None = None

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
        threading.stack_size(ACTOR_STACK_SIZE)
        election = FileElection(self.home / "leader.lock", location=self.location)
        store = FileStore(self.home / "configs" / "global.config")
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
        self._root = Supervisor.start(children=[manager], max_restarts=10, within=60.0)
        self._manager = self._root.proxy().child("manager").get(timeout=CALL_TIMEOUT)
        deadline = time.monotonic() + wait_for_leadership
        while time.monotonic() < deadline and not self.is_leader():
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 120.0) -> None:
        """Stop every actor, in reverse start order. Instances keep running."""
        root, self._root, self._manager = self._root, None, None
        if root is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                root.stop(block=True, timeout=timeout)
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

    def wait_converged(self, group_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until a look begun after this call finds the group converged; returns its
        description. Raises TimeoutError if that does not happen within `timeout` seconds."""
        since = time.monotonic()
        deadline = since + timeout
        self._call("look", group_id)
        while True:
            info = self.info(group_id)
            if info["Converged"] and info["LookedAt"] >= since:
                return self.describe(group_id)
            if time.monotonic() > deadline:
                raise TimeoutError(f"group {group_id!r} did not converge in {timeout:g}s: {info}")
            time.sleep(0.05)

    # -- helpers ---------------------------------------------------------------------------

    def _call(self, method: str, *args: Any) -> Any:
        if self._manager is None:
            raise RuntimeError("the runtime is not running; call start() first")
        return getattr(self._manager.proxy(), method)(*args).get(timeout=CALL_TIMEOUT)

    def _make_plugins(self) -> dict[str, InstancePlugin | FlavorPlugin]:
        configured = {(p.name, p.kind): p.options for p in self.config.plugins}
        named = {name for name, _ in configured}
        plugins: dict[str, InstancePlugin | FlavorPlugin] = {}
        for name, kind in DEFAULT_PLUGINS:
            if name not in named:
                configured[(name, kind)] = {}
        for (name, kind), options in configured.items():
            plugins[name] = create_plugin(kind, options, self.home)
        return plugins
