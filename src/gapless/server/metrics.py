"""What the control plane reports on ``GET /metrics``: one Prometheus exposition of the whole installation.

A scrape has two halves. ``MetricsSource.scrape()`` does the reading: the stored rollout statuses, a
``/stats`` snapshot of every known router (asked concurrently, each under a short timeout) and the
resource usage of every running instance (a few fast psutil reads each). It returns plain data, a
``Scrape``. ``render_metrics(scrape)`` is then a pure function from that data to the text format: no
store, no clock, no I/O, which keeps it table-testable.

All of it goes through ONE private registry per scrape, so every family appears once with one HELP and
one TYPE: the routers' families (``router_families``, the same ones each router serves on its own admin
socket) are merged across rollouts, the ``rollout`` label telling them apart. A router that does not
answer in time is left out and counted in ``gapless_scrape_errors`` instead of failing the scrape, as
Prometheus' own ``up`` does for a target. The private registry also keeps out the process-global default
one (and its Python process metrics).

Revisions are labelled as each source knows them: the control plane's families and the instance gauges
by revision number, the router's families by revision hash (the router knows nothing else);
``gapless_revision_info`` maps one to the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gapless.controller.instances import instance_handle
from gapless.controller.traffic import Routing, Traffic
from gapless.core.errors import GaplessError
from gapless.platform.base import Platform, ResourceUsage
from gapless.router.config import RouterConfig
from gapless.router.metrics import router_families
from gapless.router.stats import RouterStats
from gapless.store.sqlite import Store

__all__ = [
    "CONTENT_TYPE",
    "ROUTER_TIMEOUT",
    "InstanceReading",
    "MetricsSource",
    "Scrape",
    "control_plane_families",
    "render_control_plane_metrics",
    "render_metrics",
    "scrape_families",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The exposition format ``generate_latest`` writes."""

ROUTER_TIMEOUT = 2.0
"""Seconds a router gets to answer ``/stats`` during a scrape; well below Prometheus' 10 s default."""

_REPLICA_KINDS = (
    ("desired", "replicas"),
    ("updated", "updatedReplicas"),
    ("ready", "readyReplicas"),
    ("available", "availableReplicas"),
)


def _label(value: Any) -> str:
    return "" if value is None else str(value)


def control_plane_families(statuses: Sequence[dict[str, Any]]) -> Iterator[Metric]:
    """The metric families of every rollout; each status needs at least ``name``."""
    info = GaugeMetricFamily(
        "gapless_rollout_info",
        "Always 1; the labels say the phase and strategy.",
        labels=["rollout", "phase", "strategy"],
    )
    replicas = GaugeMetricFamily(
        "gapless_rollout_replicas",
        "Instances by kind: desired, updated (of the target revision), ready, available.",
        labels=["rollout", "kind"],
    )
    step = GaugeMetricFamily(
        "gapless_rollout_step",
        "Index of the current canary step (absent for other strategies).",
        labels=["rollout"],
    )
    weight = GaugeMetricFamily(
        "gapless_rollout_weight",
        "Traffic weight in force per revision number (absent when traffic splits evenly).",
        labels=["rollout", "revision"],
    )
    revision_info = GaugeMetricFamily(
        "gapless_revision_info",
        "Always 1; maps a revision number to the hash the router labels it with, and gives its phase.",
        labels=["rollout", "revision", "hash", "phase"],
    )
    ready = GaugeMetricFamily(
        "gapless_instance_ready",
        "1 when the instance passes its readiness check.",
        labels=["rollout", "revision", "instance"],
    )
    restarts = CounterMetricFamily(
        "gapless_instance_restarts",
        "Times the instance's process was restarted.",
        labels=["rollout", "revision", "instance"],
    )
    sampling = GaugeMetricFamily(
        "gapless_router_request_log_sampling",
        "HAProxy router: one request in this many is logged (at random) for the latency histograms.",
        labels=["rollout"],
    )
    log_lines = CounterMetricFamily(
        "gapless_router_request_log_lines",
        "HAProxy router: request log lines read (outcome=read) and lost because the reader's queue was "
        "full (outcome=dropped); the latency histograms hold only the lines read.",
        labels=["rollout", "outcome"],
    )
    for status in sorted(statuses, key=lambda s: str(s.get("name", ""))):
        rollout = str(status["name"])
        request_log = (status.get("router") or {}).get("requestLog")
        if isinstance(request_log, dict):
            if isinstance(request_log.get("sampling"), int):
                sampling.add_metric([rollout], request_log["sampling"])
            for outcome, key in (("read", "linesRead"), ("dropped", "linesDropped")):
                if isinstance(request_log.get(key), int):
                    log_lines.add_metric([rollout, outcome], request_log[key])
        strategy = status.get("strategy") or {}
        info.add_metric([rollout, _label(status.get("phase")), _label(strategy.get("type"))], 1)
        for kind, key in _REPLICA_KINDS:
            if isinstance(status.get(key), int):
                replicas.add_metric([rollout, kind], status[key])
        if isinstance(strategy.get("stepIndex"), int):
            step.add_metric([rollout], strategy["stepIndex"])
        for revision, w in sorted((strategy.get("weights") or {}).items()):
            weight.add_metric([rollout, str(revision)], w)
        for rev in status.get("revisions") or []:
            labels = [rollout, _label(rev.get("number")), _label(rev.get("hash")), _label(rev.get("phase"))]
            revision_info.add_metric(labels, 1)
        for instance in status.get("instances") or []:
            labels = [rollout, _label(instance.get("revision")), str(instance["id"])]
            ready.add_metric(labels, 1 if instance.get("ready") else 0)
            restarts.add_metric(labels, instance.get("restarts", 0))
    yield from (info, replicas, step, weight, revision_info, ready, restarts, sampling, log_lines)


@dataclass(frozen=True)
class InstanceReading:
    """Resources of one running instance; ``revision`` is its number as text ("" if unknown)."""

    rollout: str
    revision: str
    instance: str
    usage: ResourceUsage


@dataclass(frozen=True)
class Scrape:
    """Everything one ``/metrics`` body shows, read at one moment.

    ``routers`` holds a ``/stats`` snapshot and the config in force of each router that answered;
    ``errors`` counts what could not be read, by ``(rollout, source)`` with source ``router`` or
    ``resources``, and holds a 0 for every part that was read fine.
    """

    statuses: Sequence[dict[str, Any]] = ()
    routers: Sequence[tuple[RouterStats, RouterConfig]] = ()
    instances: Sequence[InstanceReading] = ()
    errors: Mapping[tuple[str, str], int] = field(default_factory=dict)


def _merged(groups: Iterable[Iterable[Metric]]) -> Iterator[Metric]:
    """Families of the same name from several sources as one family each, first-seen order kept."""
    by_name: dict[str, Metric] = {}
    for families in groups:
        for family in families:
            into = by_name.setdefault(family.name, family)
            if into is not family:
                into.samples.extend(family.samples)
    yield from by_name.values()


def _instance_families(readings: Sequence[InstanceReading]) -> Iterator[Metric]:
    labels = ["rollout", "revision", "instance"]
    rss = GaugeMetricFamily(
        "gapless_instance_rss_bytes", "Resident memory of the instance's process group.", labels=labels
    )
    cpu = CounterMetricFamily(
        "gapless_instance_cpu_seconds",
        "User and system CPU time of the instance's live processes (drops when one of them exits).",
        labels=labels,
    )
    files = GaugeMetricFamily(
        "gapless_instance_open_files",
        "File descriptors (files, sockets, pipes) open in the instance's process group.",
        labels=labels,
    )
    processes = GaugeMetricFamily(
        "gapless_instance_processes", "Live processes in the instance's process group.", labels=labels
    )
    for r in sorted(readings, key=lambda r: (r.rollout, r.instance)):
        values = [r.rollout, r.revision, r.instance]
        rss.add_metric(values, r.usage.rss_bytes)
        cpu.add_metric(values, r.usage.cpu_seconds)
        files.add_metric(values, r.usage.open_files)
        processes.add_metric(values, r.usage.num_processes)
    yield from (rss, cpu, files, processes)


def scrape_families(scrape: Scrape) -> Iterator[Metric]:
    """Every metric family of a scrape, each name exactly once."""
    yield from control_plane_families(scrape.statuses)
    yield from _merged(router_families(stats, config) for stats, config in scrape.routers)
    yield from _instance_families(scrape.instances)
    errors = GaugeMetricFamily(
        "gapless_scrape_errors",
        "Parts of this scrape that could not be read (source=router: the router did not answer, so "
        "its families are missing; source=resources: instances whose usage could not be read).",
        labels=["rollout", "source"],
    )
    for (rollout, source), count in sorted(scrape.errors.items()):
        errors.add_metric([rollout, source], count)
    yield errors


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def render_metrics(scrape: Scrape) -> bytes:
    """The ``GET /metrics`` body of a scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(scrape_families(scrape))))
    return generate_latest(registry)


def render_control_plane_metrics(statuses: Sequence[dict[str, Any]]) -> bytes:
    """The ``GET /metrics`` body for these rollout statuses alone (no router or instance was read)."""
    return render_metrics(Scrape(statuses=statuses))


class MetricsSource:
    """Reads a ``Scrape`` from the store, the routers and the platform. Inert until ``scrape()``."""

    def __init__(self, store: Store, traffic: Traffic, platform: Platform) -> None:
        self._store = store
        self._traffic = traffic
        self._platform = platform

    async def scrape(self) -> Scrape:
        """Read everything now; a router that does not answer within ``ROUTER_TIMEOUT`` is counted, not awaited."""
        records = self._store.rollouts()
        errors: dict[tuple[str, str], int] = {}
        answers = await asyncio.gather(*(self._router(name) for name in sorted(self._traffic.known())))
        routers = []
        for name, answer in answers:
            errors[name, "router"] = 0 if answer is not None else 1
            if answer is not None:
                routers.append(answer)
        instances = await self._instances(errors)
        return Scrape(
            statuses=[r.status | {"name": r.name} for r in records],
            routers=routers,
            instances=instances,
            errors=errors,
        )

    async def render(self) -> bytes:
        """The ``GET /metrics`` body."""
        return render_metrics(await self.scrape())

    async def _router(self, name: str) -> tuple[str, tuple[RouterStats, RouterConfig] | None]:
        try:
            async with asyncio.timeout(ROUTER_TIMEOUT):
                stats = await self._traffic.stats(name)
        except (TimeoutError, GaplessError):
            return name, None  # a slow router, or one that refused the request
        if stats is None:
            return name, None
        routing = self._traffic.routing(name) or Routing()
        config = RouterConfig(
            version=stats.config_version,
            weights=routing.weights,
            routes=routing.routes,
            stickiness=routing.stickiness,
        )
        return name, (stats, config)

    async def _instances(self, errors: dict[tuple[str, str], int]) -> list[InstanceReading]:
        """Usage of every running instance: a scan of the process table each, a millisecond or so.

        The loop yields to other tasks between instances, so a large installation never holds it long.
        """
        numbers: dict[tuple[str, str], str] = {}
        looked_up: set[str] = set()
        readings: list[InstanceReading] = []
        for rec in self._store.instances():
            if rec.state != "running" or rec.pid is None:
                continue
            await asyncio.sleep(0)
            if rec.rollout not in looked_up:
                looked_up.add(rec.rollout)
                numbers |= {(rec.rollout, r.hash): str(r.number) for r in self._store.revisions(rec.rollout)}
            failed = errors.setdefault((rec.rollout, "resources"), 0)
            try:
                usage = self._platform.resources(instance_handle(rec))
            except (ValueError, psutil.Error):
                errors[rec.rollout, "resources"] = failed + 1
                continue
            if usage.num_processes == 0:
                continue  # exited since the last reconcile; the next pass will notice
            number = numbers.get((rec.rollout, rec.revision), "")
            readings.append(InstanceReading(rec.rollout, number, rec.id, usage))
        return readings
