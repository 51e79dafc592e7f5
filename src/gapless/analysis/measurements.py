"""Measurements: what one revision did in one window, as frozen data that judges read and never fetch.

Providers (the router's counters, Prometheus, process resources, business metrics) turn their
numbers into a :class:`Measurement`; judges are pure functions of two of them. Keeping the window as
data rather than a query means a verdict can be recomputed, logged and tested from a table.

Latency comes as a Prometheus-style :class:`LatencyHistogram` (bucket upper bounds and per-bucket
counts, the shape the router and ``histogram_quantile`` use), as raw samples, or as percentiles a
provider computed itself; quantiles are taken from whichever is present, in that order of preference
after explicitly reported percentiles. Times are seconds, memory is bytes.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gapless.analysis.errors import AnalysisError

__all__ = ["LatencyHistogram", "Measurement", "ResourceSample", "Trend", "least_squares"]


@dataclass(frozen=True)
class LatencyHistogram:
    """``counts[i]`` requests took at most ``bounds[i]`` seconds (and more than ``bounds[i-1]``).

    ``counts`` has one more entry than ``bounds``: the last one counts requests slower than every bound
    (Prometheus' ``+Inf`` bucket). Counts are per bucket, not cumulative.
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.bounds) + 1:
            raise AnalysisError(
                f"a histogram with {len(self.bounds)} bounds needs {len(self.bounds) + 1} counts, "
                f"got {len(self.counts)}"
            )
        if any(not math.isfinite(b) or b < 0 for b in self.bounds):
            raise AnalysisError("histogram bounds must be finite and not negative")
        if any(b >= c for b, c in zip(self.bounds, self.bounds[1:], strict=False)):
            raise AnalysisError("histogram bounds must increase")
        if any(c < 0 for c in self.counts):
            raise AnalysisError("histogram counts must not be negative")

    @classmethod
    def from_samples(
        cls, bounds: tuple[float, ...], samples: tuple[float, ...] | list[float]
    ) -> LatencyHistogram:
        """Bucket raw latencies the way a Prometheus histogram with these bounds would."""
        counts = [0] * (len(bounds) + 1)
        for sample in samples:
            counts[bisect.bisect_left(bounds, sample)] += 1
        return cls(tuple(bounds), tuple(counts))

    @property
    def total(self) -> int:
        """Requests counted in the histogram."""
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        """The ``q``-quantile interpolated inside its bucket, as Prometheus' ``histogram_quantile``.

        A quantile that falls in the ``+Inf`` bucket is reported as the highest finite bound.
        """
        _check_quantile(q)
        total = self.total
        if total == 0:
            return None
        rank = q * total
        below = 0
        for i, count in enumerate(self.counts):
            if count and below + count >= rank:
                if i == len(self.bounds):
                    return self.bounds[-1] if self.bounds else None
                lower = self.bounds[i - 1] if i > 0 else 0.0
                upper = self.bounds[i]
                return lower + (upper - lower) * (rank - below) / count
            below += count
        return self.bounds[-1] if self.bounds else None  # pragma: no cover - rank <= total always lands

    def count_above(self, seconds: float) -> int:
        """Requests slower than ``seconds``, which must be one of the bounds (counts are exact only there)."""
        i = bisect.bisect_left(self.bounds, seconds)
        if i == len(self.bounds) or self.bounds[i] != seconds:
            raise AnalysisError(f"{seconds} s is not a bucket bound of this histogram {self.bounds}")
        return sum(self.counts[i + 1 :])

    def bound_at_or_above(self, seconds: float) -> float:
        """The smallest bucket bound that is at least ``seconds`` (the last bound if none is)."""
        i = bisect.bisect_left(self.bounds, seconds)
        return self.bounds[min(i, len(self.bounds) - 1)]

    def plus(self, other: LatencyHistogram) -> LatencyHistogram:
        """Both windows together; the bounds must match."""
        if other.bounds != self.bounds:
            raise AnalysisError("cannot add histograms with different bucket bounds")
        return LatencyHistogram(
            self.bounds, tuple(a + b for a, b in zip(self.counts, other.counts, strict=True))
        )


@dataclass(frozen=True)
class ResourceSample:
    """A process-resource reading at time ``at`` (seconds): resident memory, cumulative CPU time and
    open file descriptors (a leak of connections or files shows there before memory)."""

    at: float
    rss_bytes: int
    cpu_seconds: float | None = None
    open_files: float | None = None


@dataclass(frozen=True)
class Trend:
    """A least-squares line through ``(t, y)`` points: slope per second and its standard error."""

    slope: float
    stderr: float
    samples: int
    duration: float


def least_squares(points: list[tuple[float, float]]) -> Trend | None:
    """Fit ``y = a + slope * t``; ``None`` with fewer than 3 points or no spread in time.

    The standard error is the usual ``sqrt(residual variance / sum((t - mean t)^2))``; it is what lets
    the memory judge tell a leak from garbage-collector noise.
    """
    n = len(points)
    if n < 3:
        return None
    mean_t = math.fsum(t for t, _ in points) / n
    mean_y = math.fsum(y for _, y in points) / n
    sxx = math.fsum((t - mean_t) ** 2 for t, _ in points)
    if sxx <= 0:
        return None
    sxy = math.fsum((t - mean_t) * (y - mean_y) for t, y in points)
    slope = sxy / sxx
    intercept = mean_y - slope * mean_t
    residual = math.fsum((y - intercept - slope * t) ** 2 for t, y in points)
    stderr = math.sqrt(residual / (n - 2) / sxx)
    duration = max(t for t, _ in points) - min(t for t, _ in points)
    return Trend(slope, stderr, n, duration)


def _check_quantile(q: float) -> None:
    if not 0 <= q <= 1:
        raise AnalysisError(f"a quantile is between 0 and 1, got {q}")


@dataclass(frozen=True)
class Measurement:
    """One revision over one window ``[start, end)`` (seconds on the controller's clock)."""

    revision: str
    start: float
    end: float
    requests: int = 0
    errors: int = 0
    latency: LatencyHistogram | None = None
    latency_samples: tuple[float, ...] = ()
    percentiles: Mapping[float, float] = field(default_factory=dict)
    counters: Mapping[str, float] = field(default_factory=dict)
    resources: tuple[ResourceSample, ...] = ()
    bytes_in: int = 0
    """Request body bytes received from clients in the window."""
    bytes_out: int = 0
    """Response body bytes sent to clients in the window."""

    def __post_init__(self) -> None:
        if self.requests < 0 or self.errors < 0:
            raise AnalysisError(f"{self.revision}: requests and errors must not be negative")
        if self.bytes_in < 0 or self.bytes_out < 0:
            raise AnalysisError(f"{self.revision}: byte counts must not be negative")
        if self.errors > self.requests:
            raise AnalysisError(f"{self.revision}: {self.errors} errors out of {self.requests} requests")
        if self.end < self.start:
            raise AnalysisError(f"{self.revision}: the window ends before it starts")
        for q in self.percentiles:
            _check_quantile(q)

    @property
    def error_rate(self) -> float | None:
        """Errors per request; ``None`` without requests (0 of 0 is no evidence of health)."""
        return self.errors / self.requests if self.requests else None

    @property
    def has_latency(self) -> bool:
        """Whether latency comes as a histogram or samples (which count requests, unlike percentiles)."""
        return self.latency is not None or bool(self.latency_samples)

    @property
    def timed_requests(self) -> int:
        """Requests with a recorded latency (histogram or samples)."""
        return self.latency.total if self.latency is not None else len(self.latency_samples)

    def quantile(self, q: float) -> float | None:
        """A latency quantile: reported percentile, else histogram, else samples; ``None`` without data."""
        _check_quantile(q)
        if q in self.percentiles:
            return self.percentiles[q]
        if self.latency is not None:
            return self.latency.quantile(q)
        if self.latency_samples:
            return _sample_quantile(sorted(self.latency_samples), q)
        return None

    @property
    def p50(self) -> float | None:
        """Median latency in seconds."""
        return self.quantile(0.5)

    @property
    def p95(self) -> float | None:
        """95th-percentile latency in seconds."""
        return self.quantile(0.95)

    @property
    def p99(self) -> float | None:
        """99th-percentile latency in seconds."""
        return self.quantile(0.99)

    def count_slower_than(self, seconds: float) -> tuple[int, int]:
        """``(slow, observed)``: requests slower than ``seconds`` out of those with a latency."""
        if self.latency is not None:
            return self.latency.count_above(seconds), self.latency.total
        return sum(1 for s in self.latency_samples if s > seconds), self.timed_requests

    @property
    def peak_rss_bytes(self) -> int | None:
        """The highest resident memory seen in the window."""
        return max((r.rss_bytes for r in self.resources), default=None)

    def rss_trend(self) -> Trend | None:
        """Least-squares growth of resident memory, in bytes per second."""
        return least_squares([(r.at, float(r.rss_bytes)) for r in self.resources])

    @property
    def cpu_cores(self) -> float | None:
        """Average CPU use in cores between the first and last sample that carry CPU time."""
        samples = sorted((r.at, r.cpu_seconds) for r in self.resources if r.cpu_seconds is not None)
        if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
            return None
        (first_at, first_cpu), (last_at, last_cpu) = samples[0], samples[-1]
        return (last_cpu - first_cpu) / (last_at - first_at)

    def merge(self, later: Measurement) -> Measurement:
        """This window followed by ``later``: counts add up; reported percentiles cannot and are dropped."""
        histograms = self.latency is not None or later.latency is not None
        if histograms and (self.latency_samples or later.latency_samples):
            raise AnalysisError("cannot merge a histogram window with a samples window")
        latency = self.latency
        if later.latency is not None:
            latency = later.latency if latency is None else latency.plus(later.latency)
        counters = dict(self.counters)
        for name, value in later.counters.items():
            counters[name] = counters.get(name, 0.0) + value
        return Measurement(
            revision=self.revision,
            start=min(self.start, later.start),
            end=max(self.end, later.end),
            requests=self.requests + later.requests,
            errors=self.errors + later.errors,
            latency=latency,
            latency_samples=self.latency_samples + later.latency_samples,
            counters=counters,
            resources=tuple(sorted(self.resources + later.resources, key=lambda r: r.at)),
            bytes_in=self.bytes_in + later.bytes_in,
            bytes_out=self.bytes_out + later.bytes_out,
        )

    def env(self) -> dict[str, Any]:
        """The measurement as plain data for conditions: ``result.error_rate``, ``result.counters.orders``."""
        trend = self.rss_trend()
        return {
            "revision": self.revision,
            "start": self.start,
            "end": self.end,
            "duration": self.end - self.start,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "p50": self.p50,
            "p95": self.p95,
            "p99": self.p99,
            "counters": dict(self.counters),
            "rss_bytes": self.resources[-1].rss_bytes if self.resources else None,
            "peak_rss_bytes": self.peak_rss_bytes,
            "rss_slope": trend.slope if trend else None,
            "cpu_cores": self.cpu_cores,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "open_files": next(
                (r.open_files for r in reversed(self.resources) if r.open_files is not None), None
            ),
            "peak_open_files": max(
                (r.open_files for r in self.resources if r.open_files is not None), default=None
            ),
        }


def _sample_quantile(ordered: list[float], q: float) -> float:
    """Linear interpolation between order statistics (the common "type 7" definition)."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
