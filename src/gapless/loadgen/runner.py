"""Open-loop load: requests start on a fixed schedule, whatever the server does.

Request ``i`` is due at ``start + i / rps``. The scheduler starts every due request as its own task
and never waits for responses, so a slow server cannot slow the arrival rate down and hide its own
latency (the "coordinated omission" of closed-loop generators). When the event loop wakes late, every
request that fell due meanwhile is started at once and its lateness shows in ``scheduled_latency``.

Outstanding requests are capped (``max_in_flight``). A request that falls due while the cap is
reached is not queued and not dropped: it is counted as sent and failed with kind ``overload``. So
``sent == ok + failed`` holds for every run, stopped early or not.

All times come from one monotonic clock, ``time.perf_counter``: due times, start and end of every
request, and the sleeps of the scheduler, which are computed from it and passed to ``asyncio.sleep``
as relative delays. The loop's own ``loop.time()`` is not used because uvloop's is cached per loop
iteration at millisecond granularity, too coarse for sub-millisecond latencies. The scheduler sleeps
at least ``MIN_SLEEP`` and then starts everything that fell due, so at high rates it wakes about once
a millisecond instead of spinning (which would steal CPU from the servers under test on the same
machine); the up-to-a-millisecond lateness this adds is visible in ``scheduled_latency``.

The run is structured: the scheduler, every request
and the progress reporter are tasks of task groups owned by :func:`run_load`, which returns only
after the last request has ended.
"""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections.abc import Callable

from gapless.loadgen.http1 import ConnectionPool, Response, build_request
from gapless.loadgen.outcome import OVERLOAD, failure_kind, is_ok_status, status_kind
from gapless.loadgen.report import LatencySummary, LoadReport, LoadSnapshot
from gapless.loadgen.settings import LoadSettings
from gapless.loadgen.target import Target, resolve_target

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "PROGRESS_INTERVAL", "run_load"]

DEFAULT_MAX_IN_FLIGHT = 1000
"""Default cap on outstanding requests (and so on open connections)."""

PROGRESS_INTERVAL = 0.5
"""Seconds between two calls of ``on_progress``."""

MIN_SLEEP = 0.001
"""The shortest sleep of the scheduler, in seconds; requests due sooner are started in a batch."""

UNKNOWN_VERSION = "unknown"


async def run_load(
    url: str,
    *,
    rps: float,
    duration: float,
    timeout: float = 5.0,
    version_header: str = "X-Version",
    method: str = "GET",
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    on_progress: Callable[[LoadSnapshot], None] | None = None,
    stop: asyncio.Event | None = None,
) -> LoadReport:
    """Send ``rps`` requests per second to ``url`` for ``duration`` seconds and report every outcome.

    ``url`` must be ``http://`` on a loopback host (``localhost``, ``127.0.0.0/8``, ``::1``); names are
    resolved and every address checked before anything is sent. Bad inputs raise
    :class:`~gapless.loadgen.settings.LoadInputError` (a ``ValueError``) whose ``option`` names the
    argument. ``timeout`` bounds each request from its start to its complete response.

    ``on_progress`` is called with a :class:`LoadSnapshot` about every 0.5 s and once more at the end.
    Setting ``stop`` ends scheduling early; requests already started still run to their outcome. An
    exception raised by ``on_progress`` aborts the run and propagates.
    """
    settings = LoadSettings.create(
        rps=rps,
        duration=duration,
        timeout=timeout,
        version_header=version_header,
        method=method,
        max_in_flight=max_in_flight,
    )
    target = await resolve_target(url)
    return await _LoadRun(settings, target, on_progress, stop).run()


class _Tally:
    """Exact running counts; only the event loop's thread touches them, so no locks."""

    __slots__ = (
        "failed",
        "failures",
        "in_flight",
        "latencies",
        "ok",
        "scheduled_latencies",
        "sent",
        "status_codes",
        "version_latencies",
        "versions",
    )

    def __init__(self) -> None:
        self.sent = 0
        self.ok = 0
        self.failed = 0
        self.in_flight = 0
        self.failures: dict[str, int] = {}
        self.status_codes: dict[int, int] = {}
        self.versions: dict[str, int] = {}
        # array("d") holds 8 bytes a sample, a third of a list of floats.
        self.latencies = array("d")
        self.scheduled_latencies = array("d")
        self.version_latencies: dict[str, array[float]] = {}

    def record_response(self, response: Response, due: float, started: float, ended: float) -> None:
        status = response.status
        self.status_codes[status] = self.status_codes.get(status, 0) + 1
        latency = ended - started
        self.latencies.append(latency)
        self.scheduled_latencies.append(ended - due)
        if not is_ok_status(status):
            self.record_failure(status_kind(status))
            return
        self.ok += 1
        version = response.header_value or UNKNOWN_VERSION
        self.versions[version] = self.versions.get(version, 0) + 1
        samples = self.version_latencies.get(version)
        if samples is None:
            samples = self.version_latencies[version] = array("d")
        samples.append(latency)

    def record_failure(self, kind: str) -> None:
        self.failed += 1
        self.failures[kind] = self.failures.get(kind, 0) + 1


class _LoadRun:
    """One run against one resolved target. Inert until :meth:`run`."""

    def __init__(
        self,
        settings: LoadSettings,
        target: Target,
        on_progress: Callable[[LoadSnapshot], None] | None,
        stop: asyncio.Event | None,
    ) -> None:
        self._settings = settings
        self._target = target
        self._on_progress = on_progress
        self._stop = stop
        self._tally = _Tally()
        parsed = target.parsed
        self._payload = build_request(settings.method, parsed.target, parsed.host_header)
        self._head_only = settings.method == "HEAD"
        self._pool = ConnectionPool(target.addresses, parsed.port, settings.version_header)
        self._start = 0.0
        self._send_end = 0.0
        self._stopped_early = False
        self._progress_at = 0.0
        self._progress_done = 0

    async def run(self) -> LoadReport:
        self._start = self._progress_at = time.perf_counter()
        try:
            async with asyncio.TaskGroup() as group:
                progress = group.create_task(self._report_progress()) if self._on_progress else None
                async with asyncio.TaskGroup() as requests:
                    scheduler = requests.create_task(self._schedule(requests))
                    if self._stop is not None:
                        watcher = requests.create_task(_cancel_when_set(self._stop, scheduler))
                        scheduler.add_done_callback(lambda _: watcher.cancel())
                if progress is not None:
                    progress.cancel()
        except BaseExceptionGroup as errors:
            if len(errors.exceptions) == 1:
                raise errors.exceptions[0] from None
            raise
        finally:
            await self._pool.aclose()
        ended = time.perf_counter()
        if self._on_progress is not None:
            self._on_progress(self._snapshot(ended))
        return self._report(ended)

    async def _schedule(self, requests: asyncio.TaskGroup) -> None:
        clock = time.perf_counter
        start = self._start
        rps = self._settings.rps
        planned = self._settings.planned_requests
        stop = self._stop
        index = 0
        try:
            while index < planned:
                if stop is not None and stop.is_set():
                    return
                # Every request with index / rps <= now is due; the epsilon absorbs float rounding.
                due_count = min(planned, math.floor((clock() - start) * rps + 1e-9) + 1)
                while index < due_count:
                    self._launch(requests, start + index / rps)
                    index += 1
                if index < planned:
                    await asyncio.sleep(max(start + index / rps - clock(), MIN_SLEEP))
            # The schedule covers the whole duration, even after its last request.
            await asyncio.sleep(start + self._settings.duration - clock())
        finally:
            self._send_end = clock()
            self._stopped_early = index < planned

    def _launch(self, requests: asyncio.TaskGroup, due: float) -> None:
        tally = self._tally
        tally.sent += 1
        if tally.in_flight >= self._settings.max_in_flight:
            tally.record_failure(OVERLOAD)
            return
        tally.in_flight += 1
        requests.create_task(self._request(due))

    async def _request(self, due: float) -> None:
        clock = time.perf_counter
        tally = self._tally
        started = clock()
        try:
            async with asyncio.timeout(self._settings.timeout):
                response = await self._pool.request(self._payload, head_only=self._head_only)
        except Exception as exc:  # every failure becomes a counted kind; none propagates or vanishes
            tally.record_failure(failure_kind(exc))
        else:
            tally.record_response(response, due, started, clock())
        finally:
            tally.in_flight -= 1

    async def _report_progress(self) -> None:
        clock = time.perf_counter
        on_progress = self._on_progress
        if on_progress is None:
            return
        tick = 1
        while True:
            await asyncio.sleep(self._start + tick * PROGRESS_INTERVAL - clock())
            tick += 1
            on_progress(self._snapshot(clock()))

    def _snapshot(self, now: float) -> LoadSnapshot:
        tally = self._tally
        done = tally.ok + tally.failed
        interval = now - self._progress_at
        rate = (done - self._progress_done) / interval if interval > 0 else 0.0
        self._progress_at, self._progress_done = now, done
        return LoadSnapshot(
            elapsed=now - self._start,
            sent=tally.sent,
            ok=tally.ok,
            failed=tally.failed,
            in_flight=tally.in_flight,
            current_rps=rate,
            failures=dict(tally.failures),
            versions=dict(tally.versions),
        )

    def _report(self, ended: float) -> LoadReport:
        settings = self._settings
        tally = self._tally
        send_window = self._send_end - self._start if self._stopped_early else settings.duration
        return LoadReport(
            url=self._target.parsed.url,
            method=settings.method,
            target_rps=settings.rps,
            duration=settings.duration,
            elapsed=ended - self._start,
            send_window=send_window,
            stopped_early=self._stopped_early,
            timeout=settings.timeout,
            max_in_flight=settings.max_in_flight,
            version_header=settings.version_header,
            sent=tally.sent,
            ok=tally.ok,
            failed=tally.failed,
            failures=dict(sorted(tally.failures.items())),
            status_codes=dict(sorted(tally.status_codes.items())),
            latency=LatencySummary.of(tally.latencies),
            scheduled_latency=LatencySummary.of(tally.scheduled_latencies),
            versions=dict(sorted(tally.versions.items())),
            version_latency={v: LatencySummary.of(s) for v, s in sorted(tally.version_latencies.items())},
        )


async def _cancel_when_set(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    await stop.wait()
    task.cancel()
