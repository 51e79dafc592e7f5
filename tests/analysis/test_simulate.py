"""The traffic simulator's samplers draw from the distributions they claim to."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from gapless.analysis.simulate import Traffic, binomial, poisson, simulate_batch


@pytest.mark.parametrize("mean", [0.0, 0.3, 4.0, 25.0, 1900.0])
def test_poisson_mean_and_variance(mean: float) -> None:
    """Poisson draws have mean and variance equal to the mean, within sampling error."""
    rng = random.Random(11)  # noqa: S311 - a seeded simulation
    draws = [poisson(rng, mean) for _ in range(20_000)]
    tolerance = 4 * math.sqrt(mean / len(draws)) + 1e-9
    assert statistics.fmean(draws) == pytest.approx(mean, abs=tolerance)
    assert statistics.pvariance(draws) == pytest.approx(mean, rel=0.05, abs=1e-9)


@pytest.mark.parametrize(
    ("n", "p"), [(0, 0.5), (10, 0.0), (10, 1.0), (100, 0.01), (1900, 0.01), (50, 0.9), (10_000, 0.3)]
)
def test_binomial_mean_and_variance(n: int, p: float) -> None:
    """Binomial draws stay within [0, n] with mean n p and variance n p (1 - p)."""
    rng = random.Random(12)  # noqa: S311 - a seeded simulation
    draws = [binomial(rng, n, p) for _ in range(20_000)]
    assert all(0 <= d <= n for d in draws)
    variance = n * p * (1 - p)
    assert statistics.fmean(draws) == pytest.approx(n * p, abs=4 * math.sqrt(variance / len(draws)) + 1e-9)
    assert statistics.pvariance(draws) == pytest.approx(variance, rel=0.05, abs=1e-9)


def test_batches_follow_the_traffic() -> None:
    """A batch has about rps x seconds requests, the error rate, and slower canary latency when asked."""
    rng = random.Random(13)  # noqa: S311 - a seeded simulation
    traffic = Traffic(canary_rps=100, baseline_rps=100, canary_error_rate=0.2, canary_latency_factor=2.0)
    canary, baseline = simulate_batch(rng, traffic, start=30.0, seconds=100.0)
    assert (canary.start, canary.end) == (30.0, 130.0)
    assert canary.requests == pytest.approx(10_000, rel=0.05)
    assert canary.error_rate == pytest.approx(0.2, abs=0.02)
    assert baseline.error_rate == pytest.approx(0.01, abs=0.005)
    assert canary.p50 is not None
    assert baseline.p50 is not None
    assert canary.p50 > 1.5 * baseline.p50
