"""The Kubernetes operator's own HTTP endpoints: ``/healthz`` and ``/metrics``.

``/healthz`` answers 200 once the operator's caches are filled from the apiserver (its watches run),
503 before. ``/metrics`` (Prometheus text) counts the operator's API requests, reconcile passes, status
conflicts and watch restarts, and the Rollouts and pods it caches: enough to see that an idle operator
makes no requests, and what a rollout step costs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from gapless.controller.kube_operator import Operator

__all__ = ["operator_app", "operator_server"]


class _Collector:
    def __init__(self, op: Operator) -> None:
        self.op = op

    def collect(self) -> Iterator[Metric]:
        op = self.op
        counters = (
            (
                "gapless_operator_api_requests",
                "Requests the operator sent to the Kubernetes API.",
                op.api.requests,
            ),
            ("gapless_operator_reconcile_passes", "Reconcile passes of Rollouts.", op.passes),
            (
                "gapless_operator_status_conflicts",
                "Status writes refused with 409 (then read again).",
                op.conflicts,
            ),
            (
                "gapless_operator_watch_restarts",
                "Watches that ended and were listed again.",
                sum(i.relists for i in op.informers),
            ),
        )
        for name, doc, value in counters:
            c = CounterMetricFamily(name, doc)
            c.add_metric([], value)
            yield c
        cached = GaugeMetricFamily(
            "gapless_operator_cached_objects", "Objects in the watch caches.", labels=["kind"]
        )
        informers = (
            ("Rollout", op.rollouts),
            ("ReplicaSet", op.replica_sets),
            ("Pod", op.pods),
            ("Service", op.services),
            ("Job", op.jobs),
            ("AnalysisTemplate", op.templates),
        )
        for kind, informer in informers:
            cached.add_metric([kind], len(informer.items))
        yield cached
        resync = GaugeMetricFamily(
            "gapless_operator_first_resync_seconds",
            "From the start of the first lists to one pass over every Rollout they held (0: not yet).",
        )
        resync.add_metric([], op.first_resync_seconds or 0.0)
        yield resync
        last = GaugeMetricFamily("gapless_operator_last_pass_seconds", "Duration of the last reconcile pass.")
        last.add_metric([], op.last_pass_seconds)
        yield last
        measured = CounterMetricFamily(
            "gapless_operator_analysis_queries", "Prometheus queries of analysis measurements."
        )
        measured.add_metric([], op.measurements)
        yield measured


def operator_app(op: Operator) -> Starlette:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(op))

    async def healthz(request: Request) -> Response:
        if op.ready.is_set():
            return PlainTextResponse("ok\n")
        return PlainTextResponse("caches not filled yet\n", status_code=503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    return Starlette(routes=[Route("/healthz", healthz), Route("/metrics", metrics)])


class _Server(uvicorn.Server):
    """Leaves the signals to the operator's own handlers; stops when ``should_exit`` is set."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def operator_server(op: Operator, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        operator_app(op),
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        access_log=False,
        log_config=None,
    )
    return _Server(config)


def quiet_server(app: ASGIApp) -> uvicorn.Server:
    """A uvicorn server for ``app`` that logs only warnings and leaves the signals to its caller (served
    on sockets the caller binds: ``serve(sockets=[...])``)."""
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, log_config=None)
    return _Server(config)
