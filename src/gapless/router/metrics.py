"""What the router reports on ``GET /metrics``: the ``/stats`` counters in Prometheus text format.

Nothing new is counted for this. A custom collector turns the same snapshot ``GET /stats`` answers with
(``Router.stats()``) and the config in force into metric families when someone scrapes, so the per-request
path stays exactly as lean as before. The registry is private to the admin server: the process-global
default registry would also export Python process metrics and couple every router in a test run.

The latency histogram keeps every 8th of the router's fixed bounds (two buckets per doubling, about 37
in all instead of about 290) so that a scrape stays small; cumulative counts at the kept bounds are
exact, because the router's buckets are ``bounds[i-1] < t <= bounds[i]``, the same ``le`` meaning as
Prometheus'.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from gapless.router.config import RouterConfig
from gapless.router.stats import LATENCY_BOUNDS, RevisionStats, RouterStats

__all__ = ["CONTENT_TYPE", "KEPT_BOUNDS", "RouterCollector", "RouterMetrics", "router_families"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The exposition format ``generate_latest`` writes."""

_EVERY = 8
_KEPT_INDEXES: tuple[int, ...] = tuple(
    sorted({*range(0, len(LATENCY_BOUNDS), _EVERY), len(LATENCY_BOUNDS) - 1})
)
KEPT_BOUNDS: tuple[float, ...] = tuple(LATENCY_BOUNDS[i] for i in _KEPT_INDEXES)
"""The ``le`` bounds of ``gapless_router_request_duration_seconds`` (plus ``+Inf``)."""


def _buckets(rev: RevisionStats) -> list[tuple[str, float]]:
    """Cumulative ``(le, count)`` pairs at the kept bounds, then ``+Inf``."""
    counts = rev.latency_counts
    out: list[tuple[str, float]] = []
    cumulative = 0
    done = 0
    for i in _KEPT_INDEXES:
        cumulative += sum(counts[done : i + 1])
        done = i + 1
        out.append((repr(rev.latency_bounds[i]), cumulative))
    out.append(("+Inf", sum(counts)))
    return out


def router_families(stats: RouterStats, config: RouterConfig) -> Iterator[Metric]:
    """The metric families of one router, from a stats snapshot and the config in force."""
    rollout = stats.name
    labels = ["rollout", "revision"]
    requests = CounterMetricFamily(
        "gapless_router_requests", "Requests the router received, by the revision picked.", labels=labels
    )
    responses = CounterMetricFamily(
        "gapless_router_responses",
        "Responses clients got, by status class; includes the router's own 502s.",
        labels=[*labels, "code_class"],
    )
    errors = CounterMetricFamily(
        "gapless_router_connection_errors",
        "Requests answered 502 by the router because every attempt to reach a backend failed.",
        labels=labels,
    )
    in_flight = GaugeMetricFamily(
        "gapless_router_in_flight", "Requests of the revision being served right now.", labels=labels
    )
    duration = HistogramMetricFamily(
        "gapless_router_request_duration_seconds",
        "Time from the request head to the end of the response, as seen by the router.",
        labels=labels,
    )
    body_bytes = CounterMetricFamily(
        "gapless_router_bytes",
        "Body bytes: direction=in from clients (requests), direction=out to clients (responses).",
        labels=[*labels, "direction"],
    )
    for name, rev in sorted(stats.revisions.items()):
        requests.add_metric([rollout, name], rev.requests)
        for klass, count in rev.responses.items():
            responses.add_metric([rollout, name, klass], count)
        errors.add_metric([rollout, name], rev.connection_errors)
        in_flight.add_metric([rollout, name], rev.in_flight)
        duration.add_metric([rollout, name], _buckets(rev), rev.latency_sum)
        body_bytes.add_metric([rollout, name, "in"], rev.bytes_in)
        body_bytes.add_metric([rollout, name, "out"], rev.bytes_out)
    yield from (requests, responses, errors, in_flight, duration, body_bytes)

    backend_in_flight = GaugeMetricFamily(
        "gapless_router_backend_in_flight",
        "Requests being served by the backend right now (draining backends included).",
        labels=["rollout", "backend", "revision"],
    )
    for backend_id, backend in sorted(stats.backends.items()):
        backend_in_flight.add_metric([rollout, backend_id, backend.revision], backend.in_flight)
    yield backend_in_flight

    version = GaugeMetricFamily(
        "gapless_router_config_version", "Version of the config in force.", labels=["rollout"]
    )
    version.add_metric([rollout], stats.config_version)
    yield version

    restarts = CounterMetricFamily(
        "gapless_router_restarts",
        "Router workers that died and were started again by the router's supervisor.",
        labels=["rollout"],
    )
    restarts.add_metric([rollout], stats.restarts)
    yield restarts
    yield from _defence_families(stats)

    if config.weights is not None:
        weight = GaugeMetricFamily(
            "gapless_router_weight",
            "Relative weight of the revision in the config in force (absent for an even split).",
            labels=["rollout", "revision"],
        )
        for name, w in sorted(config.weights.items()):
            weight.add_metric([rollout, name], w)
        yield weight


def _defence_families(stats: RouterStats) -> Iterator[Metric]:
    """Client connections and what the router did to defend itself; backend timeouts and ejections."""
    rollout = stats.name
    conns = stats.connections
    open_ = GaugeMetricFamily(
        "gapless_router_client_connections", "Client connections open now.", labels=["rollout"]
    )
    open_.add_metric([rollout], conns.open)
    limit = GaugeMetricFamily(
        "gapless_router_client_connection_limit", "Client connections allowed at once.", labels=["rollout"]
    )
    limit.add_metric([rollout], conns.limit)
    closed = CounterMetricFamily(
        "gapless_router_client_connections_closed",
        "Client connections the router closed or refused to defend itself, by reason.",
        labels=["rollout", "reason"],
    )
    for reason, count in (
        ("evicted", conns.evicted),
        ("refused", conns.refused),
        ("header_timeout", conns.header_timeouts),
        ("idle_timeout", conns.idle_timeouts),
        ("head_too_large", conns.oversized_heads),
    ):
        closed.add_metric([rollout, reason], count)
    timeouts = CounterMetricFamily(
        "gapless_router_backend_timeouts",
        "Requests whose backend did not start its response within the backend timeout.",
        labels=["rollout", "backend", "revision"],
    )
    ejected = GaugeMetricFamily(
        "gapless_router_backend_ejected",
        "1 while the balancer passes the backend over after failures in a row.",
        labels=["rollout", "backend", "revision"],
    )
    for backend_id, backend in sorted(stats.backends.items()):
        timeouts.add_metric([rollout, backend_id, backend.revision], backend.timeouts)
        ejected.add_metric([rollout, backend_id, backend.revision], 1 if backend.ejected else 0)
    yield from (open_, limit, closed, timeouts, ejected)


class RouterCollector(Collector):
    """Collects ``router_families`` from a fresh snapshot on every scrape."""

    def __init__(self, snapshot: Callable[[], tuple[RouterStats, RouterConfig]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        stats, config = self._snapshot()
        return router_families(stats, config)


class RouterMetrics:
    """A private registry holding one ``RouterCollector``; ``render()`` is the ``/metrics`` body."""

    def __init__(self, snapshot: Callable[[], tuple[RouterStats, RouterConfig]]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RouterCollector(snapshot))

    def render(self) -> bytes:
        return generate_latest(self.registry)
