"""The web dashboard: per-revision time series, a live event stream and the TCP face that serves the page.

Charts need rates and quantiles over time, but a router only keeps counters since it started. The
``SeriesSampler`` asks every router for its ``/stats`` once a second and keeps, per rollout and
revision, a bounded ring of points computed from the difference to the previous snapshot: request rate
from the response counters, the share of 5xx, and P50/P95/P99 from the difference of the latency
histograms (so a point describes only the requests of that second). A counter that went down (the
router restarted) starts a fresh baseline instead of a negative rate. It also reads the CPU and memory
of every running instance, CPU as a share of one core from the difference of CPU seconds. Every point is
also written to the store (``series_points``, one transaction per router and second, pruned to the
window once a minute), and a control plane that starts again loads them: charts survive a restart or
a crash of the control plane, with a gap for the time it was down.

``stream_events`` is the server-sent-events body behind ``GET /api/v1/stream``: every second the
status (of one rollout, or all of them) and the events stored since the last push; on the stream of all
rollouts also the backfill progress reported since the last push. EventSource cannot set headers, so
that endpoint also takes the token as ``?token=``.

``MigrationProgress`` keeps the latest backfill progress that ``gapless migrate start`` reports (``PUT
/api/v1/migrations/{database}/progress``), per database, migration and table, in memory only: progress is
no deployment event (nothing is stored, nothing goes to Grafana); the final numbers arrive with the
``BackfillDone`` event.

``analysis_readings`` adds to each run of ``GET /api/v1/rollouts/{name}/analysis`` its ``readings``:
per metric the verdict, the value with its unit against the limit or the baseline, and the recent
values (:mod:`gapless.analysis.readings`), which the page shows instead of the recorded raw values.

``build_dashboard_app`` serves the static page (no token: it holds no data) and, under the same server,
the very API app of the unix socket, so every JSON endpoint checks the token exactly as there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from gapless.analysis.readings import reading
from gapless.controller.instances import instance_handle
from gapless.controller.traffic import Traffic
from gapless.core.errors import Problem, SpecError
from gapless.platform.base import Platform
from gapless.router.stats import RevisionStats, RouterStats, quantile
from gapless.spec.analysis import Metric
from gapless.store.records import AnalysisRunRecord
from gapless.store.sqlite import Store

__all__ = [
    "POINTS",
    "STATIC_DIR",
    "MigrationProgress",
    "SeriesSampler",
    "analysis_readings",
    "build_dashboard_app",
    "point_between",
    "progress_body",
    "stream_events",
]

log = logging.getLogger("gapless.dashboard")

STATIC_DIR = Path(__file__).parent / "static"
POINTS = 600
"""Points kept per revision: ten minutes at one a second."""
INTERVAL = 1.0
PRUNE_EVERY = 60.0
"""Seconds between deletions of stored points older than the window."""
STREAM_SECONDS = 300.0
"""A stream ends after this long; EventSource reconnects by itself, and a shutdown never waits on it."""


def point_between(before: RevisionStats, after: RevisionStats, seconds: float) -> dict[str, Any] | None:
    """Rate, 5xx share and latency quantiles of the requests answered between two snapshots.

    None when a counter went down (the router restarted): there is no honest difference then.
    """
    answered = sum(after.responses.values()) - sum(before.responses.values())
    errors = after.responses.get("5xx", 0) - before.responses.get("5xx", 0)
    counts = [a - b for a, b in zip(after.latency_counts, before.latency_counts, strict=False)]
    if answered < 0 or errors < 0 or any(c < 0 for c in counts) or seconds <= 0:
        return None
    bounds = after.latency_bounds
    return {
        "rps": answered / seconds,
        "errorRate": errors / answered if answered else None,
        "p50": quantile(0.5, bounds, counts),
        "p95": quantile(0.95, bounds, counts),
        "p99": quantile(0.99, bounds, counts),
    }


@dataclass
class _Rollout:
    last: RouterStats | None = None
    last_at: float = 0.0
    series: dict[str, deque[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class _Usage:
    cpu_seconds: float
    at: float
    reading: dict[str, Any]


class SeriesSampler:
    """Samples every rollout's router once a second into per-revision rings. Inert until ``run()``."""

    def __init__(self, store: Store, traffic: Traffic, platform: Platform, points: int = POINTS) -> None:
        self._store = store
        self._traffic = traffic
        self._platform = platform
        self._points = points
        self._rollouts: dict[str, _Rollout] = {}
        self._usage: dict[str, _Usage] = {}
        self._pruned_at = 0.0

    @property
    def window(self) -> float:
        """Seconds of points kept."""
        return self._points * INTERVAL

    def load(self) -> int:
        """Fill the rings with the points the store kept from the window before now; how many."""
        points = self._store.series_points(time.time() - self.window)
        for rollout, rev, t, values in points:
            state = self._rollouts.setdefault(rollout, _Rollout())
            ring = state.series.setdefault(rev, deque(maxlen=self._points))
            ring.append({"t": t, **values})
        return len(points)

    async def run(self) -> None:
        try:
            loaded = self.load()
        except Exception:
            log.exception("could not load the kept chart points; charts start empty")
        else:
            if loaded:
                log.info("loaded %d chart points kept from before", loaded)
        while True:
            started = time.monotonic()
            try:
                await self.sample()
            except Exception:
                log.exception("dashboard sampling failed; trying again in a second")
            await asyncio.sleep(max(0.05, INTERVAL - (time.monotonic() - started)))

    async def sample(self) -> None:
        """One round: every known router's stats and every running instance's usage."""
        names = {r.name for r in self._store.rollouts()}
        for gone in set(self._rollouts) - names:
            del self._rollouts[gone]
        await asyncio.gather(*(self._sample_router(n) for n in sorted(names)))
        self._sample_usage()
        now = time.time()
        if now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            self._store.prune_series(now - self.window, keep=names)
            events, audit = self._store.prune_history()
            if events or audit:
                log.info("pruned %d old events and %d old audit entries", events, audit)

    async def _sample_router(self, name: str) -> None:
        try:
            async with asyncio.timeout(2.0):
                stats = await self._traffic.stats(name)
        except TimeoutError:
            stats = None
        if stats is None:
            return
        now = time.time()
        state = self._rollouts.setdefault(name, _Rollout())
        before, seconds = state.last, now - state.last_at
        state.last, state.last_at = stats, now
        if before is None:
            return
        kept: list[tuple[str, float, dict[str, Any]]] = []
        for rev, after in stats.revisions.items():
            prior = before.revisions.get(rev, RevisionStats())
            point = point_between(prior, after, seconds)
            if point is None:
                continue
            ring = state.series.setdefault(rev, deque(maxlen=self._points))
            ring.append({"t": now, **point})
            kept.append((rev, now, point))
        self._store.add_series_points(name, kept)

    def _sample_usage(self) -> None:
        now = time.time()
        seen: set[str] = set()
        for rec in self._store.instances():
            if rec.state != "running" or rec.pid is None:
                continue
            try:
                usage = self._platform.resources(instance_handle(rec))
            except (ValueError, psutil.Error):
                continue
            seen.add(rec.id)
            prior = self._usage.get(rec.id)
            cpu = None
            if prior is not None and now > prior.at and usage.cpu_seconds >= prior.cpu_seconds:
                cpu = (usage.cpu_seconds - prior.cpu_seconds) / (now - prior.at)
            reading = {
                "rssBytes": usage.rss_bytes,
                "cpu": cpu,
                "cpuSeconds": usage.cpu_seconds,
                "openFiles": usage.open_files,
                "processes": usage.num_processes,
            }
            self._usage[rec.id] = _Usage(usage.cpu_seconds, now, reading)
        for gone in set(self._usage) - seen:
            del self._usage[gone]

    def series(self, name: str) -> dict[str, Any]:
        """The ``GET /api/v1/rollouts/{name}/series`` body: points per revision (by number) and usage."""
        numbers = {r.hash: r.number for r in self._store.revisions(name)}
        state = self._rollouts.get(name, _Rollout())
        revisions = {
            str(numbers.get(h, h)): {"hash": h, "points": list(ring)} for h, ring in state.series.items()
        }
        instances = {
            i.id: self._usage[i.id].reading for i in self._store.instances(name) if i.id in self._usage
        }
        return {"name": name, "interval": INTERVAL, "revisions": revisions, "instances": instances}


_MAX_NAME = 200
_PROGRESS_FIELDS = frozenset(
    {"migration", "table", "rowsDone", "rowsEstimate", "rowsPerSecond", "throttled", "delay", "done"}
)


def progress_body(database: str, body: Any) -> dict[str, Any]:
    """The validated reading of ``PUT /api/v1/migrations/{database}/progress``, or a SpecError naming each bad field.

    ``{"migration", "table", "rowsDone", "rowsEstimate", "rowsPerSecond"?, "throttled"?, "delay"?, "done"?}``
    """
    if not isinstance(body, dict):
        raise SpecError("request", [Problem("", "must be a JSON object")])
    problems = [Problem(k, "unknown field") for k in sorted(set(body) - _PROGRESS_FIELDS)]
    if not database or len(database) > _MAX_NAME or not database.isprintable():
        problems.append(Problem("database", f"must be printable text of 1 to {_MAX_NAME} characters"))

    def name(key: str) -> str:
        value = body.get(key)
        if (
            not isinstance(value, str)
            or not value.strip()
            or len(value) > _MAX_NAME
            or not value.isprintable()
        ):
            problems.append(Problem(key, f"must be printable text of 1 to {_MAX_NAME} characters"))
            return ""
        return value

    def count(key: str) -> int:
        value = body.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append(Problem(key, "must be an integer >= 0"))
            return 0
        return value

    def number(key: str) -> float | None:
        value = body.get(key)
        if value is None:
            return None
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or value < 0
        ):
            problems.append(Problem(key, "must be a number >= 0 (or null)"))
            return None
        return float(value)

    def flag(key: str) -> bool:
        value = body.get(key, False)
        if not isinstance(value, bool):
            problems.append(Problem(key, "must be true or false"))
            return False
        return value

    reading = {
        "database": database,
        "stream": f"migrations:{database}",
        "migration": name("migration"),
        "table": name("table"),
        "rowsDone": count("rowsDone"),
        "rowsEstimate": count("rowsEstimate"),
        "rowsPerSecond": number("rowsPerSecond"),
        "throttled": flag("throttled"),
        "delay": number("delay"),
        "done": flag("done"),
    }
    if problems:
        raise SpecError("request", problems)
    return reading


class MigrationProgress:
    """The latest backfill progress per (database, migration, table), in memory; ``limit`` entries at most.

    Each accepted reading gets the next sequence number, so a stream sends only what is new to it.
    """

    def __init__(self, limit: int = 1000) -> None:
        self._limit = limit
        self._seq = 0
        self._items: dict[tuple[str, str, str], dict[str, Any]] = {}

    def put(self, reading: dict[str, Any]) -> dict[str, Any]:
        key = (reading["database"], reading["migration"], reading["table"])
        self._seq += 1
        item = reading | {"seq": self._seq, "updatedAt": time.time()}
        self._items.pop(key, None)
        self._items[key] = item  # the newest last
        while len(self._items) > self._limit:
            del self._items[next(iter(self._items))]
        return item

    def items(self, database: str | None = None) -> list[dict[str, Any]]:
        return [i for i in self._items.values() if database is None or i["database"] == database]

    def since(self, seq: int) -> list[dict[str, Any]]:
        """The readings accepted after ``seq``, oldest first."""
        return [i for i in self._items.values() if i["seq"] > seq]


def analysis_readings(run: AnalysisRunRecord) -> list[dict[str, Any]]:
    """Each metric of a run as read (verdict, value with unit against limit or baseline, recent values)."""
    specs: dict[str, Metric] = {}
    for m in run.spec.get("metrics", []):
        try:
            metric = Metric.model_validate(m)
        except ValidationError:
            log.warning("analysis run %s: a metric spec no longer validates; shown without checks", run.id)
            continue
        specs[metric.name] = metric
    return [reading(specs.get(str(p.get("name", ""))), p).to_json() for p in run.metrics]


def _status(store: Store, name: str | None) -> dict[str, Any]:
    if name is None:
        return {"items": [r.status | {"name": r.name, "generation": r.generation} for r in store.rollouts()]}
    rec = store.find_rollout(name)
    if rec is None:
        return {"name": name, "missing": True}
    return {"name": name, "spec": rec.spec, "status": rec.status | {"generation": rec.generation}}


async def stream_events(
    store: Store,
    name: str | None,
    since: int,
    is_disconnected: Callable[[], Any],
    seconds: float = STREAM_SECONDS,
    progress: MigrationProgress | None = None,
) -> AsyncIterator[str]:
    """Server-sent events: ``status`` and ``events`` (new since ``since``) every second.

    With ``progress``: ``progress`` too, ``{"items": [...]}`` with the backfill readings accepted since
    the last push (all of them first).
    """
    deadline = time.monotonic() + seconds
    seen = 0
    yield "retry: 1000\n\n"
    while time.monotonic() < deadline:
        if await is_disconnected():
            return
        yield f"event: status\ndata: {json.dumps(_status(store, name))}\n\n"
        events = store.events(name, since)
        if events:
            since = events[-1].id
            body = json.dumps({"items": [e.__dict__ for e in events]})
            yield f"event: events\nid: {since}\ndata: {body}\n\n"
        fresh = progress.since(seen) if progress is not None else []
        if fresh:
            seen = fresh[-1]["seq"]
            yield f"event: progress\ndata: {json.dumps({'items': fresh})}\n\n"
        await asyncio.sleep(INTERVAL)


def build_dashboard_app(api: ASGIApp) -> Starlette:
    """The page at ``/``, its files at ``/static``, and the API (token-checked as on the socket) below."""

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-store"})

    routes: list[BaseRoute] = [
        Route("/", index, methods=["GET"]),
        Route("/ui", index, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
        Mount("", app=api),
    ]
    return Starlette(routes=routes)
