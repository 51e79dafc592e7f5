"""What the router reports on ``GET /stats``: counters per revision and per backend.

The data path only increments plain integers (see ``counters.py``); these pydantic models are built from
them when someone asks, so the per-request cost stays a few attribute increments and one ``bisect``.
Latency is a fixed histogram of log-spaced buckets (16 per doubling, from 0.25 ms to 60 s): a bucket
is 4.4 % wide, so quantiles interpolated from it are within about 3 % of the true value, and the
histograms of two polls can be subtracted to get the latency of just the requests in between.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "LATENCY_BOUNDS",
    "RESPONSE_CLASSES",
    "BackendStats",
    "ConnectionStats",
    "RevisionStats",
    "RouterStats",
    "quantile",
]


def _log_bounds(low: float, high: float, per_doubling: int) -> tuple[float, ...]:
    ratio = 2.0 ** (1.0 / per_doubling)
    bounds: list[float] = []
    x = low
    while x < high:
        bounds.append(float(f"{x:.6g}"))
        x *= ratio
    bounds.append(high)
    return tuple(bounds)


LATENCY_BOUNDS: tuple[float, ...] = _log_bounds(0.00025, 60.0, 16)
"""Upper bounds in seconds of the latency buckets; one extra last bucket counts everything slower."""

RESPONSE_CLASSES: tuple[str, ...] = ("1xx", "2xx", "3xx", "4xx", "5xx")


def quantile(q: float, bounds: list[float] | tuple[float, ...], counts: list[int]) -> float | None:
    """Estimate the ``q`` quantile (0..1) in seconds from a histogram; None when it is empty.

    Within a bucket the value is interpolated geometrically, which suits log-spaced buckets; the first
    bucket interpolates linearly from 0, and the overflow bucket reports the last bound.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError("q must be within 0..1")
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if n == 0:
            continue
        if seen + n >= rank:
            if i >= len(bounds):
                return bounds[-1]
            frac = max(0.0, min(1.0, (rank - seen) / n))
            upper = bounds[i]
            if i == 0:
                return upper * frac
            lower = bounds[i - 1]
            return float(lower * (upper / lower) ** frac)
        seen += n
    return bounds[-1]


class RevisionStats(BaseModel):
    """Counters of one revision since the router started (or since it first routed to the revision).

    ``responses`` counts every response a client got for this revision, including the router's own 502
    after all attempts failed; ``connection_errors`` counts those 502s alone. Bytes are body bytes.
    """

    model_config = ConfigDict(extra="forbid")

    requests: int = 0
    responses: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(RESPONSE_CLASSES, 0))
    connection_errors: int = 0
    in_flight: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    latency_bounds: list[float] = Field(default_factory=lambda: list(LATENCY_BOUNDS))
    latency_counts: list[int] = Field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    latency_sum: float = 0.0
    latency_count: int = 0

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile of response latency in seconds (e.g. ``0.99``), None without responses."""
        return quantile(q, self.latency_bounds, self.latency_counts)

    def latency_percentiles(self) -> dict[Literal["p50", "p95", "p99"], float | None]:
        """P50, P95 and P99 latency in seconds."""
        return {"p50": self.quantile(0.5), "p95": self.quantile(0.95), "p99": self.quantile(0.99)}

    def error_rate(self) -> float:
        """Share of responses that were 5xx (0.0 without responses)."""
        total = sum(self.responses.values())
        return self.responses.get("5xx", 0) / total if total else 0.0


class BackendStats(BaseModel):
    """Counters of one backend; ``removed`` is true while it drains after leaving the config.

    ``timeouts`` counts responses that did not start within the backend timeout; ``ejected`` says the
    balancer passes the backend over right now, ``ejections`` how many times in a row it was ejected.
    """

    model_config = ConfigDict(extra="forbid")

    revision: str
    in_flight: int = 0
    requests: int = 0
    connection_errors: int = 0
    timeouts: int = 0
    ejected: bool = False
    ejections: int = 0
    removed: bool = False


class ConnectionStats(BaseModel):
    """The client side: connections open now, and those the router closed or refused to defend itself.

    ``evicted``: closed at the connection limit to make room (the one that sent no complete request head
    for the longest time); ``refused``: turned away at the limit because every connection was busy;
    ``header_timeouts`` / ``idle_timeouts``: closed by those timeouts; ``oversized_heads``: heads over the
    size limit.
    """

    model_config = ConfigDict(extra="forbid")

    open: int = 0
    limit: int = 0
    evicted: int = 0
    refused: int = 0
    header_timeouts: int = 0
    idle_timeouts: int = 0
    oversized_heads: int = 0


class RouterStats(BaseModel):
    """The whole ``GET /stats`` answer; ``restarts`` counts workers the supervisor had to start again."""

    model_config = ConfigDict(extra="forbid")

    name: str
    config_version: int
    restarts: int = 0
    revisions: dict[str, RevisionStats] = Field(default_factory=dict)
    backends: dict[str, BackendStats] = Field(default_factory=dict)
    connections: ConnectionStats = Field(default_factory=ConnectionStats)
