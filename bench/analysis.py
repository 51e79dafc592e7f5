"""Benchmark: false alarms and detection delay of canary judges, by simulation (not a test).

Every simulated canary gets the same traffic for each judge (``gapless.analysis.simulate``: Poisson
arrivals, log-normal latency in Prometheus' default buckets, independent errors), so the rows compare
the judges on identical data. Scenarios, ``--runs`` each:

  healthy    canary = baseline (1% errors, median 50 ms, sigma 0.5)
  errors     canary error rate 1% -> 2%
  latency    canary latency x1.5 (every quantile of the log-normal 50% higher)

Judges, all looking at both errors and latency:

  threshold  Argo Rollouts / Flagger style: every 60 s window, canary error rate > X or histogram
             p95 > Y counts as a failed measurement; the analysis fails when failures exceed
             failureLimit (0 is Argo's default). A tight (1.5%, 200 ms) and a loose (3%, 220 ms) pair.
  peeking    a fixed-sample test re-run every 60 s on everything so far, naive about repeated looks:
             one-sided two-proportion z-test on errors and Mann-Whitney (bucket ties) on latency,
             each at 0.025.
  sequential gapless.analysis.sequential with its defaults (alpha 0.05, beta 0.05, tolerance 0.1,
             margin 0.5), and with tolerance 0, updated every 10 s batch; it can also end a healthy
             canary early with "successful".

Reported: the fraction of healthy canaries failed within ``--minutes`` (false alarms), and for the
regressed ones the fraction detected in time and the median / P95 canary requests before detection.

    .venv/bin/python bench/analysis.py [--runs 1000] [--minutes 30] [--canary-rps 10] [--baseline-rps 190]
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from gapless.analysis.measurements import Measurement
from gapless.analysis.sequential import SequentialConfig, SequentialState, update
from gapless.analysis.simulate import Traffic, simulate_batch

BATCH_SECONDS = 10.0
INTERVAL_BATCHES = 6  # fixed-window judges look every 60 s
Z_ONE_SIDED = 1.959964  # 0.025 one-sided, per metric


class Judge:
    """One judging method over one simulated canary: ``observe`` batches until it returns a phase."""

    def observe(self, canary: Measurement, baseline: Measurement, batch: int) -> str | None:
        raise NotImplementedError


class Threshold(Judge):
    def __init__(self, failure_limit: int, max_error_rate: float, max_p95: float) -> None:
        self.failure_limit = failure_limit
        self.max_error_rate = max_error_rate
        self.max_p95 = max_p95
        self.failures = 0
        self.window: Measurement | None = None

    def observe(self, canary: Measurement, baseline: Measurement, batch: int) -> str | None:
        self.window = canary if self.window is None else self.window.merge(canary)
        if (batch + 1) % INTERVAL_BATCHES:
            return None
        window, self.window = self.window, None
        bad = (window.error_rate or 0.0) > self.max_error_rate or (window.p95 or 0.0) > self.max_p95
        self.failures += bad
        return "failed" if self.failures > self.failure_limit else None


class Peeking(Judge):
    def __init__(self) -> None:
        self.canary: Measurement | None = None
        self.baseline: Measurement | None = None

    def observe(self, canary: Measurement, baseline: Measurement, batch: int) -> str | None:
        self.canary = canary if self.canary is None else self.canary.merge(canary)
        self.baseline = baseline if self.baseline is None else self.baseline.merge(baseline)
        if (batch + 1) % INTERVAL_BATCHES:
            return None
        if (
            z_errors(self.canary, self.baseline) > Z_ONE_SIDED
            or z_slower(self.canary, self.baseline) > Z_ONE_SIDED
        ):
            return "failed"
        return None


class Sequential(Judge):
    def __init__(self, config: SequentialConfig) -> None:
        self.state = SequentialState.start(config)

    def observe(self, canary: Measurement, baseline: Measurement, batch: int) -> str | None:
        self.state = update(self.state, canary, baseline)
        return self.state.decision


def z_errors(canary: Measurement, baseline: Measurement) -> float:
    """Pooled two-proportion z statistic, positive when the canary errs more."""
    n1, n2 = canary.requests, baseline.requests
    pooled = (canary.errors + baseline.errors) / (n1 + n2)
    if pooled in (0.0, 1.0):
        return 0.0
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return ((canary.errors / n1) - (baseline.errors / n2)) / se


def z_slower(canary: Measurement, baseline: Measurement) -> float:
    """Mann-Whitney z from two histograms (a bucket is a tie), positive when the canary is slower."""
    assert canary.latency is not None
    assert baseline.latency is not None
    n1, n2 = canary.latency.total, baseline.latency.total
    n = n1 + n2
    u, below, ties = 0.0, 0, 0
    for c, b in zip(canary.latency.counts, baseline.latency.counts, strict=True):
        u += c * (below + 0.5 * b)
        below += b
        ties += (c + b) ** 3 - (c + b)
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    return (u - n1 * n2 / 2) / math.sqrt(variance) if variance > 0 else 0.0


JUDGES: dict[str, Callable[[], Judge]] = {
    "threshold 1.5%/200ms, limit 0": lambda: Threshold(0, 0.015, 0.2),
    "threshold 1.5%/200ms, limit 2": lambda: Threshold(2, 0.015, 0.2),
    "threshold 3%/220ms, limit 2": lambda: Threshold(2, 0.03, 0.22),
    "peeking z / Mann-Whitney": Peeking,
    "sequential (defaults)": lambda: Sequential(SequentialConfig()),
    "sequential, tolerance 0": lambda: Sequential(SequentialConfig(tolerance=0.0)),
}


@dataclass
class Outcome:
    """Per judge and scenario: how many runs failed / passed, and after how many canary requests."""

    failed_at: list[int] = field(default_factory=list)
    passed_at: list[int] = field(default_factory=list)


def simulate(traffic: Traffic, runs: int, batches: int, rng: random.Random) -> dict[str, Outcome]:
    outcomes = {name: Outcome() for name in JUDGES}
    for _ in range(runs):
        judges = {name: make() for name, make in JUDGES.items()}
        canary_requests = 0
        for batch in range(batches):
            canary, baseline = simulate_batch(
                rng, traffic, start=batch * BATCH_SECONDS, seconds=BATCH_SECONDS
            )
            canary_requests += canary.requests
            for name, judge in list(judges.items()):
                phase = judge.observe(canary, baseline, batch)
                if phase is None:
                    continue
                if phase == "failed":
                    outcomes[name].failed_at.append(canary_requests)
                elif phase == "successful":
                    outcomes[name].passed_at.append(canary_requests)
                del judges[name]
            if not judges:
                break
    return outcomes


def quantile(values: list[int], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return str(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--canary-rps", type=float, default=10.0)
    p.add_argument("--baseline-rps", type=float, default=190.0)
    p.add_argument("--seed", type=int, default=20240601)
    args = p.parse_args()

    healthy = Traffic(canary_rps=args.canary_rps, baseline_rps=args.baseline_rps)
    scenarios = {
        "healthy": healthy,
        "errors 1%->2%": replace(healthy, canary_error_rate=0.02),
        "latency x1.5": replace(healthy, canary_latency_factor=1.5),
    }
    batches = int(args.minutes * 60 / BATCH_SECONDS)
    print(
        f"{args.runs} runs per scenario, {args.minutes:g} min max, canary {args.canary_rps:g} req/s, "
        f"baseline {args.baseline_rps:g} req/s, seed {args.seed}"
    )
    started = time.perf_counter()
    results = {
        name: simulate(traffic, args.runs, batches, random.Random(f"{args.seed}-{name}"))  # noqa: S311 - a seeded simulation
        for name, traffic in scenarios.items()
    }
    elapsed = time.perf_counter() - started

    header = (
        f"{'judge':30} | {'false alarms':>12} {'passed':>7} {'pass med':>8} | "
        f"{'errors: caught':>14} {'med req':>7} {'P95 req':>7} | {'latency: caught':>15} {'med req':>7} {'P95 req':>7}"
    )
    print(header)
    print("-" * len(header))
    for name in JUDGES:
        ok, err, lat = (results[s][name] for s in scenarios)
        print(
            f"{name:30} | {len(ok.failed_at) / args.runs:12.1%} {len(ok.passed_at) / args.runs:7.1%} "
            f"{quantile(ok.passed_at, 0.5):>8} | "
            f"{len(err.failed_at) / args.runs:14.1%} {quantile(err.failed_at, 0.5):>7} {quantile(err.failed_at, 0.95):>7} | "
            f"{len(lat.failed_at) / args.runs:15.1%} {quantile(lat.failed_at, 0.5):>7} {quantile(lat.failed_at, 0.95):>7}"
        )
    print(
        f"\n'caught' is the fraction detected within {args.minutes:g} min (1 - miss rate); 'med/P95 req' count canary "
        f"requests before detection among those caught; 'passed' is a sequential 'successful' verdict "
        f"('pass med': canary requests before it). Simulated in {elapsed:.1f} s."
    )


if __name__ == "__main__":
    main()
