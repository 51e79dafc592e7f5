"""Synthetic canary traffic: how long an analysis needs to catch a regression of a given size.

The judges' guarantees are about probabilities, so they are checked by simulation: the tests use it
to measure false alarms and power, ``bench/analysis.py`` to compare judges, and an operator can use
it to choose a canary weight and duration before a rollout. Everything is drawn from an explicit
``random.Random`` so a run is reproducible from its seed.

The model: requests of each revision arrive as a Poisson process; latency is log-normal (a median and
a shape ``sigma``), recorded into histogram buckets; each request fails independently with the
revision's error rate. Bucket counts are independent Poisson draws (a thinned Poisson process), which
is exact and needs a handful of draws per batch however large the traffic.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from dataclasses import dataclass

from gapless.analysis.measurements import LatencyHistogram, Measurement

__all__ = ["DEFAULT_BOUNDS", "Traffic", "binomial", "poisson", "simulate_batch"]

# Prometheus' default histogram buckets, in seconds.
DEFAULT_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


@dataclass(frozen=True)
class Traffic:
    """Request rates, error rates and latency of both revisions."""

    canary_rps: float = 10.0
    baseline_rps: float = 190.0
    canary_error_rate: float = 0.01
    baseline_error_rate: float = 0.01
    median_seconds: float = 0.05
    sigma: float = 0.5
    canary_latency_factor: float = 1.0
    bounds: tuple[float, ...] = DEFAULT_BOUNDS


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw: inversion for small means, Hörmann's PTRS rejection (as numpy) for large ones."""
    if mean <= 0:
        return 0
    if mean < 10:
        x, p = 0, math.exp(-mean)
        cumulative, u = p, rng.random()
        while u > cumulative and p > 0:
            x += 1
            p *= mean / x
            cumulative += p
        return x
    slam, loglam = math.sqrt(mean), math.log(mean)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2)
    while True:
        u = rng.random() - 0.5
        v = rng.random()
        us = 0.5 - abs(u)
        k = math.floor((2 * a / us + b) * u + mean + 0.43)
        if us >= 0.07 and v <= vr:
            return k
        if k < 0 or (us < 0.013 and v > us):
            continue
        if math.log(v) + math.log(inv_alpha) - math.log(
            a / (us * us) + b
        ) <= -mean + k * loglam - math.lgamma(k + 1):
            return k


def binomial(rng: random.Random, n: int, p: float) -> int:
    """A binomial draw: inversion when ``n p`` is small, else Devroye's recursion on a beta order statistic."""
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    if n * min(p, 1 - p) < 30:
        if p > 0.5:
            return n - binomial(rng, n, 1 - p)
        q = 1 - p
        x, prob = 0, q**n
        cumulative, u = prob, rng.random()
        while u > cumulative and x < n:
            x += 1
            prob *= (n - x + 1) / x * p / q
            cumulative += prob
        return x
    # The i-th smallest of n uniforms is Beta(i, n + 1 - i); split the trials around it and recurse.
    i = (n + 1) // 2
    y = rng.betavariate(i, n + 1 - i)
    if y <= p:
        return i + binomial(rng, n - i, (p - y) / (1 - y))
    return binomial(rng, i - 1, p / y)


@functools.lru_cache(maxsize=64)
def _bucket_probabilities(bounds: tuple[float, ...], median: float, sigma: float) -> tuple[float, ...]:
    """Probability of each bucket (the last one open) for a log-normal latency."""
    mu = math.log(median)
    cdf = [0.5 * math.erfc(-(math.log(b) - mu) / (sigma * math.sqrt(2))) for b in bounds]
    edges = [0.0, *cdf, 1.0]
    return tuple(hi - lo for lo, hi in itertools.pairwise(edges))


def _window(
    rng: random.Random,
    traffic: Traffic,
    revision: str,
    rps: float,
    error_rate: float,
    factor: float,
    start: float,
    seconds: float,
) -> Measurement:
    probabilities = _bucket_probabilities(traffic.bounds, traffic.median_seconds * factor, traffic.sigma)
    counts = tuple(poisson(rng, rps * seconds * p) for p in probabilities)
    requests = sum(counts)
    return Measurement(
        revision=revision,
        start=start,
        end=start + seconds,
        requests=requests,
        errors=binomial(rng, requests, error_rate),
        latency=LatencyHistogram(traffic.bounds, counts),
    )


def simulate_batch(
    rng: random.Random, traffic: Traffic, *, start: float, seconds: float
) -> tuple[Measurement, Measurement]:
    """``(canary, baseline)`` measurements of one window of ``seconds`` starting at ``start``."""
    canary = _window(
        rng,
        traffic,
        "canary",
        traffic.canary_rps,
        traffic.canary_error_rate,
        traffic.canary_latency_factor,
        start,
        seconds,
    )
    baseline = _window(
        rng, traffic, "baseline", traffic.baseline_rps, traffic.baseline_error_rate, 1.0, start, seconds
    )
    return canary, baseline
