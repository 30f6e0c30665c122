"""Prometheus metrics for a runtime (`Manager.Metrics`): per-group gauges read from the views at
scrape time, counters of replacements and provisioning failures made from the event stream,
and histograms of plugin calls and looks. The names and labels are listed in docs/spec.md.

Each runtime has a registry of its own (two runtimes in one process do not clash) and serves it
with prometheus-client's HTTP server. A scrape reads only published, immutable state: it never
waits on an actor. Imported only when metrics are asked for, so the CLI never pays for it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from actors.pooled import ActorPool
from infrakit import events
from infrakit.events import Event
from infrakit.group.plan import PROCESSES, REASON_UNHEALTHY, REASON_UPDATE, Phase
from infrakit.views import GroupRecord, Views

CONTROLLER = "group"
"""The `controller` label of the controller-runtime metrics: a group's reconciler."""

# The plugin methods timed: the instance and flavor contracts' (spi/), as Go InfraKit names them.
TIMED_METHODS = {
    "describe_instances": "DescribeInstances",
    "provision": "Provision",
    "destroy": "Destroy",
    "label": "Label",
    "validate": "Validate",
    "sweep": "Sweep",
    "prepare": "Prepare",
    "healthy": "Healthy",
    "drain": "Drain",
    "member_status": "MemberStatus",
}

# A replacement's cause label, by the reason an instance actor is given (group/plan.py).
_REPLACEMENT_CAUSES = {REASON_UNHEALTHY: "unhealthy", REASON_UPDATE: "update"}


def revision_of(record: GroupRecord) -> int | None:
    """The group's latest revision; None for a group with none yet (one read from a store
    written before revisions), and `infrakit_group_revision` is then left out for it."""
    return record.revision


class Metrics:
    """A runtime's metrics: `on_event` (an EventLog listener), `on_look` (the views' look
    listener) and `time_plugin` feed it; `serve` starts the HTTP endpoint, `stop` ends it."""

    def __init__(self, views: Views, pool: Callable[[], ActorPool | None]) -> None:
        self.registry = CollectorRegistry()
        self._server: Any = None
        self._thread: Any = None
        self.replacements = Counter(
            "infrakit_replacements",
            "Instances replaced, by group and cause (unhealthy, gone, update, ...).",
            ("group", "cause"),
            registry=self.registry,
        )
        self.provision_failures = Counter(
            "infrakit_provision_failures",
            "Provision attempts that failed, by group and cause (the error's type).",
            ("group", "cause"),
            registry=self.registry,
        )
        self.plugin_calls = Histogram(
            "infrakit_plugin_call_duration_seconds",
            "How long plugin calls take, by plugin and method.",
            ("plugin", "method"),
            registry=self.registry,
        )
        self.looks = Histogram(
            "infrakit_group_look_duration_seconds",
            "How long a group's look takes: list its instances, plan, tell its actors.",
            ("group",),
            registry=self.registry,
        )
        self.reconciles = Counter(
            "controller_runtime_reconcile",
            "Looks of every group (controller-runtime's name), by result: success or error.",
            ("controller", "result"),
            registry=self.registry,
        )
        self.reconcile_time = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "How long looks take, all groups together (controller-runtime's name).",
            ("controller",),
            registry=self.registry,
        )
        self.registry.register(_GroupCollector(views, pool))

    # -- feeds ---------------------------------------------------------------------------

    def on_event(self, _seq: int, event: Event) -> None:
        """Count the replacements and provisioning failures `event` reports (cheap: an
        EventLog listener runs under its lock)."""
        if event.kind == events.REPLACING:
            reason = str(event.data.get("Reason", ""))
            cause = _REPLACEMENT_CAUSES.get(reason, reason or "other")
            self.replacements.labels(event.group, cause).inc()
        elif event.kind == events.GONE:
            self.replacements.labels(event.group, "gone").inc()
        elif event.kind == events.DUPLICATE:
            self.replacements.labels(event.group, "duplicate").inc()
        elif event.kind == events.PROVISION_FAILED:
            cause = str(event.data.get("Error", "")) or "error"
            self.provision_failures.labels(event.group, cause).inc()

    def on_look(self, group_id: str, seconds: float | None) -> None:
        """A group finished a look in `seconds`, or failed one (None)."""
        if seconds is None:
            self.reconciles.labels(CONTROLLER, "error").inc()
            return
        self.reconciles.labels(CONTROLLER, "success").inc()
        self.reconcile_time.labels(CONTROLLER).observe(seconds)
        self.looks.labels(group_id).observe(seconds)

    def time_plugin(self, name: str, plugin: Any) -> None:
        """Time every contract method `plugin` has, in place: its type and identity stay the
        same, so the runtime's isinstance questions get the same answers."""
        for attribute, method in TIMED_METHODS.items():
            call = getattr(plugin, attribute, None)
            if callable(call):
                setattr(plugin, attribute, _timed(call, self.plugin_calls.labels(name, method)))

    def time_plugins(self, plugins: Mapping[str, Any]) -> None:
        for name, plugin in plugins.items():
            self.time_plugin(name, plugin)

    # -- the endpoint --------------------------------------------------------------------

    def serve(self, address: str) -> None:
        """Serve the metrics over HTTP at `address` (HOST:PORT); raise OSError, saying where,
        if it cannot (the port is busy...)."""
        host, _, port = address.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        try:
            self._server, self._thread = start_http_server(int(port), host, self.registry)
        except OSError as error:
            raise OSError(
                error.errno, f"Manager.Metrics: cannot serve metrics at {address}: {error.strerror}"
            ) from None

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            self._thread.join(timeout=10)


def _timed(call: Callable[..., Any], histogram: Any) -> Callable[..., Any]:
    observe = histogram.observe

    @functools.wraps(call)
    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            observe(time.perf_counter() - began)

    return timed


class _GroupCollector(Collector):
    """The per-group gauges, read at each scrape from what the groups last published."""

    def __init__(self, views: Views, pool: Callable[[], ActorPool | None]) -> None:
        self._views, self._pool = views, pool

    def collect(self) -> Iterator[Metric]:
        labels = ["group"]
        desired = GaugeMetricFamily(
            "infrakit_group_desired", "Instances the group's spec asks for.", labels=labels
        )
        running = GaugeMetricFamily(
            "infrakit_group_running", "Instances of the group that exist.", labels=labels
        )
        healthy = GaugeMetricFamily(
            "infrakit_group_healthy", "Instances of the group in service.", labels=labels
        )
        unhealthy = GaugeMetricFamily(
            "infrakit_group_unhealthy",
            "Instances of the group found unhealthy, waiting to be replaced.",
            labels=labels,
        )
        updating = GaugeMetricFamily(
            "infrakit_group_updating",
            "1 while a rolling update of the group is under way (paused included), else 0.",
            labels=labels,
        )
        revision = GaugeMetricFamily(
            "infrakit_group_revision", "The group's committed revision.", labels=labels
        )
        suspended = GaugeMetricFamily(
            "infrakit_group_suspended",
            "1 while an operator suspends the process of the group (heal, launch, terminate,"
            " rollout), else 0.",
            labels=["group", "process"],
        )
        standby = GaugeMetricFamily(
            "infrakit_group_standby",
            "Logical instances of the group an operator put in standby.",
            labels=labels,
        )
        for group_id, record in sorted(self._views.records().items()):
            view = self._views.group(group_id)
            desired.add_metric([group_id], len(record.spec.logical_ids()))
            for process in PROCESSES:
                suspended.add_metric([group_id, process], 1 if record.holds.blocks(process) else 0)
            standby.add_metric([group_id], len(record.holds.standby))
            number = revision_of(record)
            if number is not None:
                revision.add_metric([group_id], number)
            if view is None:
                continue
            running.add_metric([group_id], len(view.members))
            healthy.add_metric([group_id], view.phases.get(Phase.RUNNING.value, 0))
            unhealthy.add_metric([group_id], view.phases.get(Phase.UNHEALTHY.value, 0))
            under_way = view.update_total > 0 and view.update_done < view.update_total
            updating.add_metric([group_id], 1 if under_way else 0)
        yield from (desired, running, healthy, unhealthy, updating, revision, suspended, standby)
        leader = GaugeMetricFamily("infrakit_leader", "1 while this runtime leads, else 0.")
        leader.add_metric([], 1 if self._views.leading else 0)
        yield leader
        depth = GaugeMetricFamily(
            "workqueue_depth",
            "Work waiting (controller-runtime's name): name=instance-actors counts the"
            " instance actors with messages waiting for a worker of the actor pool.",
            labels=["name"],
        )
        pool = self._pool()
        depth.add_metric(["instance-actors"], pool.queued if pool is not None else 0)
        yield depth
