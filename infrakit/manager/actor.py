"""ManagerActor: commits, frees and destroys groups; acts only while it leads.

It supervises a LeaderActor (its first child) and one GroupSupervisor per committed group. A
commit is validated whole, stored (so it survives a crash), then handed to the group. On gaining
leadership it loads the store, starts every group (they adopt their instances by tags) and
commits the cluster file's groups; on losing it, it stops every group before anything else.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pykka

from actors import Backoff, ChildSpec, LeaderActor, Restart, Supervisor
from actors.election import Election
from infrakit import events
from infrakit.confighash import config_hash
from infrakit.group.instance import WantLook
from infrakit.group.plan import describe_commit
from infrakit.group.supervisor import GroupRecord, GroupSupervisor
from infrakit.manager.store import Store
from infrakit.spec import GroupSpec, SpecError, parse_group, plugin_name
from infrakit.spi import FlavorPlugin, InstancePlugin, PluginError, ValidationError

log = logging.getLogger(__name__)

LEADER = "leader"
CALL_TIMEOUT = 30.0


class NotLeaderError(RuntimeError):
    """This manager does not lead; the message says where the leader is, if known."""


class GroupNotFoundError(KeyError):
    """No group of that ID is being watched (InfraKit's words)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class _Leadership:
    leader: bool


@dataclass(frozen=True)
class _RolledBack:
    spec: GroupSpec


@dataclass(frozen=True)
class _Destroyed:
    group_id: str


class ManagerActor(Supervisor):
    """The manager of a runtime: the store, leadership, and a supervisor per group."""

    def __init__(
        self,
        election: Election,
        store: Store,
        plugins: Mapping[str, InstancePlugin | FlavorPlugin],
        publish: Callable[[events.Event], None],
        initial_groups: Sequence[GroupSpec] = (),
        leader_poll: float = 1.0,
    ) -> None:
        super().__init__(
            children=[
                ChildSpec(LEADER, LeaderActor, args=(election,), kwargs={"interval": leader_poll})
            ],
            max_restarts=100,
            within=60.0,
            backoff=Backoff(initial=0.5, maximum=30.0),
        )
        self.election = election
        self.store = store
        self.plugins = dict(plugins)
        self.publish = publish
        self.initial_groups = tuple(initial_groups)
        self.leading = False
        self.leading_since: float | None = None
        self.records: dict[str, GroupRecord] = {}
        # Group ID -> hash of the cluster file's spec last applied (kept in the store).
        self.file_marks: dict[str, str] = {}

    # -- Pykka hooks ---------------------------------------------------------------------

    def on_start(self) -> None:
        super().on_start()
        self._subscribe()

    def on_child_restarted(self, name: str, ref: pykka.ActorRef[Any]) -> None:
        if name == LEADER:
            self._subscribe()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Leadership):
            self._leadership(message.leader)
        elif isinstance(message, _RolledBack):
            self._store(message.spec)
            self.records[message.spec.id].spec = message.spec
        elif isinstance(message, _Destroyed):
            self._finish_destroy(message.group_id)
        else:
            return super().on_receive(message)
        return None

    # -- public API (through a proxy) -----------------------------------------------------

    def is_leader(self) -> bool:
        return self.leading

    def leader_location(self) -> str | None:
        return self.election.leader_location()

    def commit(self, data: Mapping[str, Any] | GroupSpec, pretend: bool = False) -> str:
        """Validate, store and apply a group spec; return InfraKit's sentence for it.

        A pretend commit, or one that fails validation, changes nothing at all.
        """
        self._require_leader()
        spec = data if isinstance(data, GroupSpec) else parse_group(data)
        self._validate_plugins(spec)
        record = self.records.get(spec.id)
        group = self._group(spec.id)
        if group is not None:
            sentence: str = group.proxy().preview(spec).get(timeout=CALL_TIMEOUT)
        else:
            sentence = describe_commit(None, spec)
        if pretend:
            return sentence
        self._store(spec)
        if record is not None and group is not None:
            record.spec, record.destroying = spec, False
            group.proxy().update(spec).get(timeout=CALL_TIMEOUT)
        else:
            self._start_group(GroupRecord(spec))
        self.publish(events.Event(spec.id, events.COMMITTED, f"committed: {sentence}"))
        return sentence

    def free(self, group_id: str) -> None:
        """Stop supervising a group; its instances keep running, untouched."""
        self._require_leader()
        self._require_group(group_id)
        self.stop_child(group_id)
        self.records.pop(group_id, None)
        self.store.remove(group_id)
        self.publish(events.Event(group_id, events.FREED, "freed: no longer supervised"))

    def destroy(self, group_id: str) -> None:
        """Start destroying a group: drain and destroy every instance, retrying until done.

        The mark is stored first, so a crash or a new leader carries the destroy on. The group
        is forgotten only when nothing of it is left (`is_managed` turns False).
        """
        self._require_leader()
        record = self._require_group(group_id)
        record.destroying = True
        self._store(record.spec, Destroying=True)
        group = self._group(group_id)
        if group is not None:
            group.proxy().destroy_all().get(timeout=CALL_TIMEOUT)

    def describe(self, group_id: str) -> dict[str, Any]:
        """InfraKit's group Description: `{"Instances": [...], "Converged": bool}`."""
        self._require_leader()
        self._require_group(group_id)
        group = self._group(group_id)
        assert group is not None
        result: dict[str, Any] = group.proxy().describe().get(timeout=CALL_TIMEOUT)
        return result

    def info(self, group_id: str) -> dict[str, Any]:
        """The group supervisor's summary (phases, update progress, circuit)."""
        self._require_group(group_id)
        group = self._group(group_id)
        assert group is not None
        result: dict[str, Any] = group.proxy().info().get(timeout=CALL_TIMEOUT)
        return result

    def converged_since(self, group_id: str, since: float) -> bool:
        """Whether a look at the group begun at or after `since` (monotonic) found it
        converged."""
        self._require_group(group_id)
        group = self._group(group_id)
        assert group is not None
        result: bool = group.proxy().converged_since(since).get(timeout=CALL_TIMEOUT)
        return result

    def look(self, group_id: str) -> None:
        """Ask a group to look at its instances soon."""
        self._require_group(group_id)
        group = self._group(group_id)
        if group is not None:
            group.tell(WantLook())

    def inspect(self) -> list[dict[str, Any]]:
        """Every committed spec, as stored."""
        self._require_leader()
        return [record.spec.to_json() for record in self.records.values()]

    def status(self) -> dict[str, Any]:
        """This manager's view: leadership, since when, the leader's location, its groups."""
        groups = []
        for group_id in sorted(self.records):
            group = self._group(group_id)
            if group is None:
                continue
            try:
                groups.append(group.proxy().info().get(timeout=CALL_TIMEOUT))
            except pykka.ActorDeadError:
                continue
        result: dict[str, Any] = {
            "Leader": self.leading,
            "LeaderSince": self.leading_since,
            "LeaderLocation": self.election.leader_location(),
            "Groups": groups,
        }
        candidates = getattr(self.election, "candidates", None)
        if callable(candidates):
            result["Managers"] = candidates()  # every manager the election can see
        return result

    def is_managed(self, group_id: str) -> bool:
        return group_id in self.records

    # -- leadership ---------------------------------------------------------------------------

    def _subscribe(self) -> None:
        leader = self.child(LEADER)
        if leader is None:
            return
        me = self.actor_ref

        def changed(leading: bool) -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(_Leadership(leading))

        leader.proxy().subscribe(changed)

    def _leadership(self, leading: bool) -> None:
        if leading == self.leading:
            return
        self.leading = leading
        self.leading_since = time.time() if leading else None
        if not leading:
            for group_id in list(self.records):
                self.stop_child(group_id)
            self.records.clear()
            self.publish(events.Event("manager", events.LEADERSHIP, "lost leadership: following"))
            return
        self.publish(events.Event("manager", events.LEADERSHIP, "gained leadership: leading"))
        self._load()
        for spec in self.initial_groups:
            # The cluster file is applied when it is new or was edited since it was last
            # applied; otherwise the stored spec (perhaps committed later) stands.
            mark = config_hash(spec.to_json(), None)
            if self.file_marks.get(spec.id) == mark and spec.id in self.records:
                continue
            self.file_marks[spec.id] = mark
            try:
                self.commit(spec)
            except (SpecError, ValueError, NotLeaderError) as error:
                log.error("cannot commit group %r from the cluster file: %s", spec.id, error)

    def _load(self) -> None:
        try:
            stored = self.store.load()
        except ValueError as error:
            log.error("cannot read the store: %s; starting with no stored groups", error)
            return
        for group_id, entry in stored.items():
            if isinstance(entry.get("FileSpec"), str):
                self.file_marks[group_id] = entry["FileSpec"]
            try:
                spec = parse_group(entry.get("Properties"), source=f"stored group {group_id!r}")
                self._validate_plugins(spec)
            except (SpecError, ValueError) as error:
                log.error("not starting stored group %r: %s", group_id, error)
                continue
            self._start_group(GroupRecord(spec, destroying=bool(entry.get("Destroying"))))

    def _fence(self) -> bool:
        return self.election.is_leader()

    # -- helpers ---------------------------------------------------------------------------

    def _start_group(self, record: GroupRecord) -> None:
        spec = record.spec
        me = self.actor_ref

        def rolled_back(back: GroupSpec) -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(_RolledBack(back))

        def destroyed(group_id: str) -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(_Destroyed(group_id))

        self.records[spec.id] = record
        self.start_child(
            ChildSpec(
                name=spec.id,
                actor_class=GroupSupervisor,
                args=(
                    record,
                    self.plugins[plugin_name(spec.properties.instance.plugin)],
                    self.plugins[plugin_name(spec.properties.flavor.plugin)],
                    self.publish,
                ),
                kwargs={
                    "fence": self._fence,
                    "on_rollback": rolled_back,
                    "on_destroyed": destroyed,
                },
                restart=Restart.PERMANENT,
                shutdown_timeout=60.0,
            )
        )

    def _finish_destroy(self, group_id: str) -> None:
        record = self.records.get(group_id)
        if record is None or not record.destroying:
            return
        self.stop_child(group_id)
        self.records.pop(group_id, None)
        self.store.remove(group_id)
        self.publish(
            events.Event(group_id, events.GROUP_DESTROYED, "destroyed: every instance is gone")
        )

    def _store(self, spec: GroupSpec, **marks: Any) -> None:
        """Write the spec, keeping the mark of the cluster-file version it came from."""
        if spec.id in self.file_marks:
            marks["FileSpec"] = self.file_marks[spec.id]
        self.store.put(spec.id, spec.to_json(), **marks)

    def _group(self, group_id: str) -> pykka.ActorRef[Any] | None:
        return self.child(group_id) if group_id in self.records else None

    def _require_leader(self) -> None:
        if not self.leading:
            where = self.election.leader_location()
            raise NotLeaderError(
                "not the leader; the leader is at " + where if where else "not the leader"
            )

    def _require_group(self, group_id: str) -> GroupRecord:
        record = self.records.get(group_id)
        if record is None:
            raise GroupNotFoundError(f"Group '{group_id}' is not being watched")
        return record

    def _validate_plugins(self, spec: GroupSpec) -> None:
        props = spec.properties
        problems: list[tuple[str, str]] = []
        instance = self.plugins.get(plugin_name(props.instance.plugin))
        flavor = self.plugins.get(plugin_name(props.flavor.plugin))
        known = ", ".join(sorted(self.plugins))
        if not isinstance(instance, InstancePlugin):
            problems.append(
                (
                    "Properties.Instance.Plugin",
                    f"no instance plugin named {props.instance.plugin!r} (known: {known})",
                )
            )
        if not isinstance(flavor, FlavorPlugin):
            problems.append(
                (
                    "Properties.Flavor.Plugin",
                    f"no flavor plugin named {props.flavor.plugin!r} (known: {known})",
                )
            )
        if problems:
            raise SpecError(problems)
        assert isinstance(instance, InstancePlugin) and isinstance(flavor, FlavorPlugin)
        # A plugin in another process says in its handshake which interfaces it serves.
        for section, plugin in (("Instance", instance), ("Flavor", flavor)):
            require = getattr(plugin, "require", None)
            if callable(require):
                try:
                    require(section)
                except PluginError as error:
                    problems.append((f"Properties.{section}.Plugin", str(error)))
        if problems:
            raise SpecError(problems)
        try:
            instance.validate(props.instance.properties)
        except ValidationError as error:
            problems.append(_nested("Properties.Instance.Properties", error))
        try:
            flavor.validate(props.flavor.properties, props.allocation.method())
        except ValidationError as error:
            problems.append(_nested("Properties.Flavor.Properties", error))
        if problems:
            raise SpecError(problems)


def _nested(prefix: str, error: ValidationError) -> tuple[str, str]:
    if not error.path:
        return prefix, error.reason
    if error.path.split(".", 1)[0].split("[", 1)[0] == "Allocation":
        return "Properties." + error.path, error.reason  # a flavor judging the allocation
    joiner = "" if error.path.startswith("[") else "."
    return prefix + joiner + error.path, error.reason
