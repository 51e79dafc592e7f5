"""Counters and latency histograms: what the router counts and how quantiles come out of buckets."""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable

import pytest

from gapless.router.counters import RevisionCounters
from gapless.router.stats import LATENCY_BOUNDS, RouterStats, quantile
from tests.router.backends import TestBackend
from tests.router.conftest import RouterHarness

MakeBackend = Callable[..., Awaitable[TestBackend]]


def _exact(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


@pytest.mark.parametrize(
    "draw",
    [
        lambda rnd: rnd.uniform(0.001, 0.1),
        lambda rnd: rnd.lognormvariate(math.log(0.02), 1.0),
        lambda rnd: rnd.expovariate(1 / 0.3),
        lambda rnd: 0.0004 + rnd.random() * 0.0002,
    ],
    ids=["uniform", "lognormal", "exponential", "sub-ms"],
)
def test_quantiles_are_within_a_few_percent(draw: Callable[[random.Random], float]) -> None:
    """P50, P95 and P99 from the histogram are within 3 % of the exact sample quantiles."""
    rnd = random.Random(7)  # noqa: S311 - seeded so that the samples are the same on every run
    samples = [draw(rnd) for _ in range(20_000)]
    counters = RevisionCounters("a")
    for s in samples:
        counters.record(200, s)
    stats = counters.snapshot()
    for q in (0.5, 0.95, 0.99):
        estimate = stats.quantile(q)
        assert estimate is not None
        assert estimate == pytest.approx(_exact(samples, q), rel=0.03), q


def test_quantile_edges() -> None:
    """An empty histogram has no quantile, the overflow bucket reports the last bound, and q is checked."""
    counts = [0] * (len(LATENCY_BOUNDS) + 1)
    assert quantile(0.5, LATENCY_BOUNDS, counts) is None
    counts[-1] = 3
    assert quantile(0.99, LATENCY_BOUNDS, counts) == LATENCY_BOUNDS[-1]
    with pytest.raises(ValueError, match="q must be"):
        quantile(1.5, LATENCY_BOUNDS, counts)


async def test_stats_count_requests_responses_and_latency(
    harness: RouterHarness, backends: MakeBackend
) -> None:
    """Requests, response classes, bytes, in-flight and latency are counted per revision and backend."""
    a1, b1 = await backends("a1"), await backends("b1")
    await harness.route([(a1, "a"), (b1, "b")], weights={"a": 1, "b": 1})
    for status in (200, 200, 404, 404, 500, 500, 302, 302):
        assert (await harness.http.get("/", params={"status": status})).status_code == status
    for _ in range(10):
        await harness.http.get("/slow", params={"s": 0.05})
    await harness.http.post("/upload", content=b"u" * 1000)
    await harness.http.post("/upload", content=b"u" * 1000)
    stats = RouterStats.model_validate_json((await harness.admin_client.stats()).model_dump_json())
    a, b = stats.revisions["a"], stats.revisions["b"]
    for rev in (a, b):
        assert rev.requests == 10
        assert rev.responses == {"1xx": 0, "2xx": 7, "3xx": 1, "4xx": 1, "5xx": 1}
        assert rev.in_flight == 0
        assert rev.connection_errors == 0
        assert rev.bytes_in == 1000
        assert rev.bytes_out > 0
        assert rev.latency_count == 10
        assert sum(rev.latency_counts) == 10
        assert rev.latency_sum >= 0.25
        p95 = rev.quantile(0.95)
        assert p95 is not None
        assert 0.045 < p95 < 0.2
        assert rev.error_rate() == pytest.approx(0.1)
    assert stats.backends["a1"].requests == 10
    assert stats.backends["b1"].revision == "b"
    assert stats.config_version == 1
    assert set(a.latency_percentiles()) == {"p50", "p95", "p99"}
