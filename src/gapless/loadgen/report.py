"""The results of a load run as frozen data, and their stable JSON form.

A report is built once, after every request has ended, from counts that were kept exactly: nothing is
sampled, so ``sent == ok + failed`` holds and percentiles are order statistics of every latency
recorded (nearest rank, no interpolation: each one is a latency some request really had).

Two latencies are kept per response. ``latency`` runs from when the request was actually started to
its response; ``scheduled_latency`` runs from when the open-loop schedule said it was due. They differ
only when the generator itself fell behind (a busy event loop), and the second one is what a user
arriving at that moment would have waited: keeping it stops a slow client from hiding slow responses
(coordinated omission).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["JSON_SCHEMA", "LatencySummary", "LoadReport", "LoadSnapshot", "percentile"]

JSON_SCHEMA = "gapless.load/v1"
"""The value of ``schema`` in :meth:`LoadReport.to_json`; changes only when a key changes meaning."""


def percentile(sorted_samples: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of a non-empty, ascending list."""
    if not sorted_samples:
        raise ValueError("percentile of no samples")
    if not 0 < q <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {q}")
    rank = math.ceil(q / 100 * len(sorted_samples))
    return sorted_samples[max(rank, 1) - 1]


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Order statistics of a set of latencies, in seconds; all ``None`` when there were no samples."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, samples: Iterable[float]) -> LatencySummary:
        """Summarize ``samples`` exactly (they are sorted here)."""
        ordered = sorted(samples)
        if not ordered:
            return cls(count=0, p50=None, p95=None, p99=None, max=None)
        return cls(
            count=len(ordered),
            p50=percentile(ordered, 50),
            p95=percentile(ordered, 95),
            p99=percentile(ordered, 99),
            max=ordered[-1],
        )

    def to_json(self) -> dict[str, Any]:
        """``{"count", "p50", "p95", "p99", "max"}``; the percentiles are ``null`` when count is 0."""
        return {"count": self.count, "p50": self.p50, "p95": self.p95, "p99": self.p99, "max": self.max}


@dataclass(frozen=True, slots=True)
class LoadSnapshot:
    """Running counts of a load run in progress, handed to ``on_progress`` about every 0.5 s.

    ``sent == ok + failed + in_flight`` holds in every snapshot.
    """

    elapsed: float
    """Seconds since the run started."""
    sent: int
    ok: int
    failed: int
    in_flight: int
    current_rps: float
    """Requests that ended (ok or failed) per second over the last progress interval."""
    failures: dict[str, int]
    versions: dict[str, int]


@dataclass(frozen=True, slots=True)
class LoadReport:
    """Everything a load run observed. ``sent == ok + failed`` always holds.

    ``sent`` counts every request the schedule made due, including ``overload`` ones that the cap on
    outstanding requests kept off the wire: they are failures, not omissions.
    """

    url: str
    method: str
    target_rps: float
    duration: float
    """The requested duration, in seconds."""
    elapsed: float
    """Seconds from start until the last request ended (the send window plus draining)."""
    send_window: float
    """Seconds during which requests were scheduled: ``duration``, or less when stopped early."""
    stopped_early: bool
    timeout: float
    max_in_flight: int
    version_header: str
    sent: int
    ok: int
    failed: int
    failures: dict[str, int]
    """Failed requests by kind (see :mod:`gapless.loadgen.outcome`), every kind with a count > 0."""
    status_codes: dict[int, int]
    """Responses by exact status code, ok and failed alike."""
    latency: LatencySummary
    """Start-to-response latency of every request that got a response (any status)."""
    scheduled_latency: LatencySummary
    """Due-time-to-response latency of the same requests."""
    versions: dict[str, int]
    """Ok responses by the value of ``version_header``; ``"unknown"`` when it was missing or empty."""
    version_latency: dict[str, LatencySummary]
    """Start-to-response latency of the ok responses of each version."""

    @property
    def p50(self) -> float | None:
        """Shorthand for ``latency.p50``."""
        return self.latency.p50

    @property
    def p95(self) -> float | None:
        """Shorthand for ``latency.p95``."""
        return self.latency.p95

    @property
    def p99(self) -> float | None:
        """Shorthand for ``latency.p99``."""
        return self.latency.p99

    @property
    def max_latency(self) -> float | None:
        """Shorthand for ``latency.max``."""
        return self.latency.max

    @property
    def achieved_rps(self) -> float:
        """Requests actually started (``sent`` minus ``overload``) per second of the send window."""
        started = self.sent - self.failures.get("overload", 0)
        return started / self.send_window if self.send_window > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict whose keys are stable across releases (``schema`` names the layout).

        Keys, in order (times in seconds, rates per second)::

            schema              "gapless.load/v1"
            url, method         the target and HTTP method
            target_rps          the requested rate
            achieved_rps        requests started per second of the send window
            duration            the requested duration
            send_window         seconds requests were scheduled for (< duration when stopped early)
            elapsed             seconds until the last request ended
            stopped_early       true when the stop event ended the run before duration
            timeout             per-request timeout
            max_in_flight       cap on outstanding requests
            version_header      header whose value is counted in versions
            sent, ok, failed    counts; sent == ok + failed
            failures            {kind: count}, kinds sorted, e.g. "status_503", "timeout", "overload"
            status_codes        {"<code>": count}, codes as strings, sorted
            latency             {count, p50, p95, p99, max} from start of each request
            scheduled_latency   {count, p50, p95, p99, max} from when each request was due
            versions            {version: ok count}, sorted
            version_latency     {version: {count, p50, p95, p99, max}}, sorted

        Percentiles are ``null`` when their count is 0.
        """
        return {
            "schema": JSON_SCHEMA,
            "url": self.url,
            "method": self.method,
            "target_rps": self.target_rps,
            "achieved_rps": self.achieved_rps,
            "duration": self.duration,
            "send_window": self.send_window,
            "elapsed": self.elapsed,
            "stopped_early": self.stopped_early,
            "timeout": self.timeout,
            "max_in_flight": self.max_in_flight,
            "version_header": self.version_header,
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "failures": dict(sorted(self.failures.items())),
            "status_codes": {str(code): n for code, n in sorted(self.status_codes.items())},
            "latency": self.latency.to_json(),
            "scheduled_latency": self.scheduled_latency.to_json(),
            "versions": dict(sorted(self.versions.items())),
            "version_latency": {v: s.to_json() for v, s in sorted(self.version_latency.items())},
        }
