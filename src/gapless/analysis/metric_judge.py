"""Judging one metric of an analysis run, measurement after measurement (pure: no I/O, no clock).

A :class:`MetricJudge` is built once from a metric of an AnalysisTemplate (arguments already
substituted). Each time the runner has taken a measurement it calls :meth:`MetricJudge.judge` with
the canary's and the baseline's windows, or :meth:`MetricJudge.judge_value` with a Prometheus query
result. The judge keeps what must carry over between windows: the sequential test's state, and the
resource samples since the run began (a memory trend needs the whole run, not one interval).

A metric may have a built-in judge and conditions; both are applied and the worse verdict counts
(failed, then error, then inconclusive, then running, then successful).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from gapless.analysis.errors import ExpressionError
from gapless.analysis.expr import evaluate_condition
from gapless.analysis.from_spec import conditions_config, judge_config
from gapless.analysis.judges import (
    CompareToBaseline,
    Conditions,
    MemoryLeak,
    Threshold,
    compare_to_baseline,
    conditions,
    memory_leak,
    threshold,
)
from gapless.analysis.measurements import Measurement
from gapless.analysis.outlook import outlook
from gapless.analysis.sequential import (
    SequentialConfig,
    SequentialState,
    state_from_json,
    state_to_json,
    update,
    verdict,
)
from gapless.analysis.verdict import Phase, Verdict
from gapless.spec.analysis import Metric

__all__ = ["MetricJudge", "summary", "worse"]

_RANK: dict[Phase, int] = {"failed": 4, "error": 3, "inconclusive": 2, "running": 1, "successful": 0}


def worse(a: Verdict, b: Verdict) -> Verdict:
    """The verdict that weighs more; messages of both are kept when both are not successful.

    The values of both are kept; where both name the same value, the heavier verdict's is shown.
    """
    first, second = (a, b) if _RANK[a.phase] >= _RANK[b.phase] else (b, a)
    value = dict(second.value) | dict(first.value)
    if second.phase == "successful" or not second.message:
        return Verdict(first.phase, value, first.message)
    return Verdict(first.phase, value, f"{first.message}; {second.message}")


def summary(m: Measurement) -> dict[str, Any]:
    """What a measurement showed, compactly, for the record behind a verdict."""
    out: dict[str, Any] = {"requests": m.requests, "errors": m.errors}
    rate = m.error_rate
    if rate is not None:
        out["error_rate"] = round(rate, 6)
    for name, q in (("p50", m.p50), ("p95", m.p95), ("p99", m.p99)):
        if q is not None:
            out[name] = round(q, 6)
    if m.counters:
        out["counters"] = {k: round(v, 6) for k, v in m.counters.items()}
    if m.resources:
        out["rss_bytes"] = m.resources[-1].rss_bytes
        if m.resources[-1].open_files is not None:
            out["open_files"] = m.resources[-1].open_files
        cpu = m.cpu_cores
        if cpu is not None:
            out["cpu_cores"] = round(cpu, 4)
        trend = m.rss_trend()
        if trend is not None:
            out["rss_slope_bytes_per_second"] = round(trend.slope, 3)
    return out


class MetricJudge:
    """The compiled judge and conditions of one metric, and the state they carry between windows."""

    def __init__(self, metric: Metric, args: Mapping[str, str]) -> None:
        self.metric = metric
        self._config: Threshold | CompareToBaseline | MemoryLeak | SequentialConfig | None = None
        if metric.judge is not None:
            self._config = judge_config(metric.judge)
        self._conditions: Conditions | None = conditions_config(metric, args)
        self._sequential: SequentialState | None = None
        if isinstance(self._config, SequentialConfig):
            self._sequential = SequentialState.start(self._config)
        self._canary_so_far: Measurement | None = None
        self._baseline_so_far: Measurement | None = None

    def snapshot(self) -> dict[str, Any] | None:
        """The state to persist with the metric's progress (None when the judge keeps none)."""
        return None if self._sequential is None else state_to_json(self._sequential)

    def restore(self, data: Mapping[str, Any] | None) -> None:
        """Continue from a :meth:`snapshot` taken before a restart."""
        if data is not None and isinstance(self._config, SequentialConfig):
            self._sequential = state_from_json(self._config, data)

    @property
    def concludes(self) -> bool:
        """Whether the judge may end the metric early (the sequential test)."""
        return self._sequential is not None

    def judge(self, canary: Measurement, baseline: Measurement) -> Verdict:
        """Judge one window of the canary against the baseline's same window."""
        self._canary_so_far = canary if self._canary_so_far is None else self._canary_so_far.merge(canary)
        self._baseline_so_far = (
            baseline if self._baseline_so_far is None else self._baseline_so_far.merge(baseline)
        )
        result: Verdict | None = None
        config = self._config
        if isinstance(config, Threshold):
            result = threshold(config, canary, baseline)
        elif isinstance(config, CompareToBaseline):
            result = compare_to_baseline(config, canary, baseline)
        elif isinstance(config, MemoryLeak):
            result = memory_leak(config, self._canary_so_far, self._baseline_so_far)
        elif self._sequential is not None:
            self._sequential = update(self._sequential, canary, baseline)
            result = verdict(self._sequential)
            span = canary.end - canary.start
            rate = canary.requests / span if span > 0 else None  # this window's: today's weights
            ahead = outlook(self._sequential, rate).to_json()
            result = Verdict(result.phase, dict(result.value) | {"outlook": ahead}, result.message)
        if self._conditions is not None:
            cond = conditions(self._conditions, canary, baseline)
            result = cond if result is None else worse(result, cond)
        if result is None:  # the spec requires a judge or a condition; keep the runner total anyway
            result = Verdict("error", {}, "the metric has neither a judge nor a condition")
        shown = {"canary": summary(canary), "baseline": summary(baseline)}
        return Verdict(result.phase, dict(result.value) | shown, result.message)

    def judge_value(self, value: float | list[float]) -> Verdict:
        """Judge a query result (Prometheus) with the metric's conditions: ``result`` is the value."""
        shown: dict[str, Any] = {"result": _plain(value)}
        if self.metric.unit is not None:
            shown["unit"] = self.metric.unit
        c = self._conditions
        if c is None:
            return Verdict("error", shown, "a query metric needs a successCondition or failureCondition")
        env = {"result": value, "args": dict(c.args)}
        try:
            if c.failure is not None and evaluate_condition(c.failure, env):
                return Verdict("failed", shown, f"failure condition is true: {c.failure.source}")
            if c.success is not None and evaluate_condition(c.success, env):
                return Verdict("successful", shown, f"success condition is true: {c.success.source}")
        except ExpressionError as exc:
            return Verdict("error", shown, str(exc))
        if c.success is not None and c.failure is not None:
            return Verdict("inconclusive", shown, "neither the success nor the failure condition is true")
        if c.success is not None:
            return Verdict("failed", shown, f"success condition is false: {c.success.source}")
        return Verdict("successful", shown, "failure condition is false")


def _plain(value: float | list[float]) -> Any:
    """JSON has no NaN or infinity: show them as strings."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value if math.isfinite(value) else str(value)
