"""Fixed-window judges: ``(config, canary, baseline) -> Verdict``, pure and table-testable.

These are the checks Argo Rollouts and Flagger users know, kept deliberately simple:

- :func:`threshold`: absolute limits on one window of the canary (error rate, latency percentiles,
  memory, CPU), inconclusive below a minimum number of requests.
- :func:`compare_to_baseline`: canary against the stable revision in the *same* window, so a slow
  database or a traffic spike that hits both does not fail the canary. Error rates are compared as a
  ratio with an absolute floor under the baseline (0.2% against 0% is not an infinite regression).
- :func:`memory_leak`: least-squares RSS growth of canary and baseline; a leak is reported only when
  the canary grows faster than the baseline by more than a tolerance *and* more than ``noise_z``
  standard errors, so garbage-collector sawtooth does not fail a rollout.
- :func:`conditions`: Argo-style ``successCondition`` / ``failureCondition`` expressions.

A fixed-window judge says nothing about how often it may be repeated: checked every minute, its
false alarms add up. :mod:`gapless.analysis.sequential` is the judge that may be looked at as often
as wanted with a bounded false-alarm probability.

A missing metric the configuration asks for is an ``error`` (the analysis is misconfigured or the
provider is broken), never a silent pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gapless.analysis.errors import AnalysisError, ExpressionError
from gapless.analysis.expr import Expr, compile_expr, evaluate_condition
from gapless.analysis.measurements import Measurement
from gapless.analysis.verdict import Verdict

__all__ = [
    "CompareToBaseline",
    "Conditions",
    "MemoryLeak",
    "Threshold",
    "compare_to_baseline",
    "conditions",
    "memory_leak",
    "threshold",
]


@dataclass(frozen=True)
class Threshold:
    """Absolute limits; a limit of ``None`` is not checked. Request-based limits need ``min_requests``."""

    min_requests: int = 100
    max_error_rate: float | None = None
    max_p50_seconds: float | None = None
    max_p95_seconds: float | None = None
    max_p99_seconds: float | None = None
    max_rss_bytes: int | None = None
    max_cpu_cores: float | None = None


@dataclass(frozen=True)
class CompareToBaseline:
    """Canary against baseline in the same window; ``None`` switches a comparison off.

    - errors: canary rate must not exceed ``max_error_rate_ratio`` x max(baseline rate, floor);
    - latency: canary ``latency_quantile`` must not exceed the baseline's by more than
      ``max_latency_increase_seconds``;
    - business: for each ``counter: r`` in ``min_counter_ratios``, the canary's counter per request
      must be at least ``r`` x the baseline's (orders per request, sign-ups per visit).
    """

    min_requests: int = 100
    max_error_rate_ratio: float | None = 2.0
    error_rate_floor: float = 0.001
    latency_quantile: float = 0.99
    max_latency_increase_seconds: float | None = None
    min_counter_ratios: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class MemoryLeak:
    """RSS growth of the canary beyond the baseline's, in bytes per second."""

    tolerance_bytes_per_second: float = 1024.0
    noise_z: float = 2.0
    min_samples: int = 10
    min_duration_seconds: float = 300.0


@dataclass(frozen=True)
class Conditions:
    """Argo-style conditions over ``result`` (canary), ``baseline`` and ``args``.

    With both: failure true fails, else success true succeeds, else inconclusive. With only one, the
    other outcome follows from it being false.
    """

    success: Expr | None = None
    failure: Expr | None = None
    args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.success is None and self.failure is None:
            raise AnalysisError("conditions need a success condition, a failure condition or both")

    @classmethod
    def parse(
        cls, success: str | None = None, failure: str | None = None, args: Mapping[str, Any] | None = None
    ) -> Conditions:
        """Compile the condition texts once; raises :class:`ExpressionError` for a bad one."""
        return cls(
            success=compile_expr(success) if success is not None else None,
            failure=compile_expr(failure) if failure is not None else None,
            args=dict(args or {}),
        )


def _limit_check(
    name: str, observed: float | None, limit: float | None, unit: Callable[[float], str]
) -> tuple[str | None, str | None]:
    """``(failure, missing)`` messages for one ``observed <= limit`` check."""
    if limit is None:
        return None, None
    if observed is None:
        return None, f"no {name} in the measurement"
    if observed > limit:
        return f"{name} {unit(observed)} > {unit(limit)}", None
    return None, None


def _percent(x: float) -> str:
    return f"{x:.2%}"


def _seconds(x: float) -> str:
    return f"{x * 1000:.0f} ms" if x < 10 else f"{x:.1f} s"


def _mib(x: float) -> str:
    return f"{x / 2**20:.1f} MiB"


def _cores(x: float) -> str:
    return f"{x:.2f} cores"


def _conclude(value: dict[str, Any], failures: list[str], missing: list[str], ok: str) -> Verdict:
    if missing:
        return Verdict("error", value, "; ".join(missing))
    if failures:
        return Verdict("failed", value | {"failed_checks": failures}, "; ".join(failures))
    return Verdict("successful", value, ok)


def threshold(config: Threshold, canary: Measurement, baseline: Measurement | None = None) -> Verdict:
    """Absolute limits on the canary's window; the baseline is not used."""
    del baseline  # the same signature as every judge
    request_limits = (
        config.max_error_rate,
        config.max_p50_seconds,
        config.max_p95_seconds,
        config.max_p99_seconds,
    )
    value: dict[str, Any] = {"requests": canary.requests}
    if any(limit is not None for limit in request_limits) and canary.requests < config.min_requests:
        return Verdict(
            "inconclusive", value, f"{canary.requests} requests; at least {config.min_requests} are needed"
        )
    checks = [
        ("error rate", canary.error_rate, config.max_error_rate, _percent),
        ("p50", canary.p50, config.max_p50_seconds, _seconds),
        ("p95", canary.p95, config.max_p95_seconds, _seconds),
        ("p99", canary.p99, config.max_p99_seconds, _seconds),
        ("peak RSS", canary.peak_rss_bytes, config.max_rss_bytes, _mib),
        ("CPU", canary.cpu_cores, config.max_cpu_cores, _cores),
    ]
    failures: list[str] = []
    missing: list[str] = []
    for name, observed, limit, unit in checks:
        if limit is None:
            continue
        value[name.replace(" ", "_").lower()] = observed
        failure, absent = _limit_check(name, observed, limit, unit)
        failures += [failure] if failure else []
        missing += [absent] if absent else []
    return _conclude(value, failures, missing, "within every limit")


def compare_to_baseline(config: CompareToBaseline, canary: Measurement, baseline: Measurement) -> Verdict:
    """Canary against the baseline of the same window."""
    value: dict[str, Any] = {"canary_requests": canary.requests, "baseline_requests": baseline.requests}
    fewest = min(canary.requests, baseline.requests)
    if fewest < config.min_requests:
        return Verdict(
            "inconclusive",
            value,
            f"{fewest} requests in one revision; at least {config.min_requests} each are needed",
        )
    failures: list[str] = []
    missing: list[str] = []
    if config.max_error_rate_ratio is not None:
        canary_rate, baseline_rate = canary.error_rate or 0.0, baseline.error_rate or 0.0
        allowed = config.max_error_rate_ratio * max(baseline_rate, config.error_rate_floor)
        value |= {
            "canary_error_rate": canary_rate,
            "baseline_error_rate": baseline_rate,
            "allowed_error_rate": allowed,
        }
        if canary_rate > allowed:
            failures.append(
                f"error rate {canary_rate:.2%} > {config.max_error_rate_ratio:g} x "
                f"max(baseline {baseline_rate:.2%}, floor {config.error_rate_floor:.2%})"
            )
    if config.max_latency_increase_seconds is not None:
        q = config.latency_quantile
        canary_q, baseline_q = canary.quantile(q), baseline.quantile(q)
        value |= {"canary_latency": canary_q, "baseline_latency": baseline_q}
        if canary_q is None or baseline_q is None:
            missing.append(f"no p{q * 100:g} latency for {'canary' if canary_q is None else 'baseline'}")
        elif canary_q > baseline_q + config.max_latency_increase_seconds:
            failures.append(
                f"p{q * 100:g} {_seconds(canary_q)} > baseline {_seconds(baseline_q)} + "
                f"{_seconds(config.max_latency_increase_seconds)}"
            )
    for counter, fraction in sorted(config.min_counter_ratios.items()):
        if counter not in canary.counters or counter not in baseline.counters:
            missing.append(
                f"no counter {counter!r} in the {'canary' if counter not in canary.counters else 'baseline'}"
            )
            continue
        canary_ratio = canary.counters[counter] / canary.requests
        baseline_ratio = baseline.counters[counter] / baseline.requests
        value[f"{counter}_per_request"] = {"canary": canary_ratio, "baseline": baseline_ratio}
        if canary_ratio < fraction * baseline_ratio:
            failures.append(
                f"{counter} per request {canary_ratio:.4g} < {fraction:g} x baseline {baseline_ratio:.4g}"
            )
    return _conclude(value, failures, missing, "no worse than the baseline")


def memory_leak(config: MemoryLeak, canary: Measurement, baseline: Measurement) -> Verdict:
    """Least-squares RSS slope of the canary against the baseline's."""
    canary_trend, baseline_trend = canary.rss_trend(), baseline.rss_trend()
    for name, trend in (("canary", canary_trend), ("baseline", baseline_trend)):
        if (
            trend is None
            or trend.samples < config.min_samples
            or trend.duration < config.min_duration_seconds
        ):
            have = f"{trend.samples} samples over {trend.duration:.0f} s" if trend else "too few samples"
            return Verdict(
                "inconclusive",
                {},
                f"{name} RSS: {have}; {config.min_samples} samples over "
                f"{config.min_duration_seconds:g} s are needed",
            )
    if canary_trend is None or baseline_trend is None:  # pragma: no cover - returned above; narrows types
        return Verdict("inconclusive", {}, "too few RSS samples")
    # A shrinking baseline (memory returned after warm-up) must not make a flat canary look leaky.
    excess = canary_trend.slope - max(baseline_trend.slope, 0.0)
    stderr = math.hypot(canary_trend.stderr, baseline_trend.stderr)
    value = {
        "canary_slope": canary_trend.slope,
        "baseline_slope": baseline_trend.slope,
        "excess_slope": excess,
        "stderr": stderr,
    }
    if excess - config.noise_z * stderr > config.tolerance_bytes_per_second:
        return Verdict(
            "failed",
            value,
            f"canary RSS grows {excess:.0f} B/s faster than the baseline "
            f"(± {stderr:.0f}); tolerance {config.tolerance_bytes_per_second:g} B/s",
        )
    return Verdict("successful", value, f"RSS growth {excess:.0f} B/s over the baseline is within tolerance")


def conditions(config: Conditions, canary: Measurement, baseline: Measurement | None = None) -> Verdict:
    """Evaluate success/failure conditions with Argo Rollouts' rules; evaluation errors are ``error``."""
    env: dict[str, Any] = {"result": canary.env(), "args": dict(config.args)}
    if baseline is not None:
        env["baseline"] = baseline.env()
    value = {"result": env["result"]}
    success, failure = config.success, config.failure
    try:
        if failure is not None and evaluate_condition(failure, env):
            return Verdict("failed", value, f"failure condition is true: {failure.source}")
        if success is not None and evaluate_condition(success, env):
            return Verdict("successful", value, f"success condition is true: {success.source}")
    except ExpressionError as exc:
        return Verdict("error", {}, str(exc))
    if success is not None and failure is not None:
        return Verdict("inconclusive", value, "neither the success nor the failure condition is true")
    if success is not None:
        return Verdict("failed", value, f"success condition is false: {success.source}")
    return Verdict("successful", value, "failure condition is false")
