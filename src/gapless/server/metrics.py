"""What the control plane reports on ``GET /metrics``: the stored rollout statuses as Prometheus gauges.

The status documents (see ``controller/status.py``) already hold everything worth graphing, so this is
a pure function from those documents to the text exposition format: no store, no clock, no I/O, which
keeps it table-testable. A fresh private registry per call avoids the process-global default one (and
its Python process metrics). A status that has not been written yet (a rollout applied but not
reconciled) yields only the fields it has.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "control_plane_families", "render_control_plane_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The exposition format ``generate_latest`` writes."""

_REPLICA_KINDS = (
    ("desired", "replicas"),
    ("updated", "updatedReplicas"),
    ("ready", "readyReplicas"),
    ("available", "availableReplicas"),
)


def _label(value: Any) -> str:
    return "" if value is None else str(value)


def control_plane_families(statuses: list[dict[str, Any]]) -> Iterator[Metric]:
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
    for status in sorted(statuses, key=lambda s: str(s.get("name", ""))):
        rollout = str(status["name"])
        strategy = status.get("strategy") or {}
        info.add_metric([rollout, _label(status.get("phase")), _label(strategy.get("type"))], 1)
        for kind, key in _REPLICA_KINDS:
            if isinstance(status.get(key), int):
                replicas.add_metric([rollout, kind], status[key])
        if isinstance(strategy.get("stepIndex"), int):
            step.add_metric([rollout], strategy["stepIndex"])
        for revision, w in sorted((strategy.get("weights") or {}).items()):
            weight.add_metric([rollout, str(revision)], w)
        for instance in status.get("instances") or []:
            labels = [rollout, _label(instance.get("revision")), str(instance["id"])]
            ready.add_metric(labels, 1 if instance.get("ready") else 0)
            restarts.add_metric(labels, instance.get("restarts", 0))
    yield from (info, replicas, step, weight, ready, restarts)


class _StatusCollector(Collector):
    def __init__(self, statuses: list[dict[str, Any]]) -> None:
        self._statuses = statuses

    def collect(self) -> Iterator[Metric]:
        return control_plane_families(self._statuses)


def render_control_plane_metrics(statuses: list[dict[str, Any]]) -> bytes:
    """The ``GET /metrics`` body for these rollout statuses."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatusCollector(statuses))
    return generate_latest(registry)
