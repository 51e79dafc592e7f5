"""Plain counters the data path increments, and their snapshot into the ``stats`` models.

These are slotted objects holding ints so that counting a request costs a few attribute increments and a
``bisect`` into the latency bounds, with no locks: everything runs on one event loop thread.
"""

from __future__ import annotations

from bisect import bisect_left

from gapless.router.stats import LATENCY_BOUNDS, RESPONSE_CLASSES, RevisionStats

__all__ = ["RevisionCounters"]

_BOUNDS = LATENCY_BOUNDS


class RevisionCounters:
    """Counters of one revision; see ``RevisionStats`` for their meaning."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "connection_errors",
        "in_flight",
        "latency_count",
        "latency_counts",
        "latency_sum",
        "name",
        "requests",
        "responses",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests = 0
        self.responses = [0, 0, 0, 0, 0]
        self.connection_errors = 0
        self.in_flight = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.latency_counts = [0] * (len(_BOUNDS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0

    def record(self, status: int, elapsed: float) -> None:
        """Count one response with ``status`` that took ``elapsed`` seconds."""
        klass = status // 100 - 1
        if 0 <= klass < 5:
            self.responses[klass] += 1
        self.latency_counts[bisect_left(_BOUNDS, elapsed)] += 1
        self.latency_sum += elapsed
        self.latency_count += 1

    def snapshot(self) -> RevisionStats:
        return RevisionStats(
            requests=self.requests,
            responses=dict(zip(RESPONSE_CLASSES, self.responses, strict=True)),
            connection_errors=self.connection_errors,
            in_flight=self.in_flight,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            latency_bounds=list(_BOUNDS),
            latency_counts=list(self.latency_counts),
            latency_sum=self.latency_sum,
            latency_count=self.latency_count,
        )
