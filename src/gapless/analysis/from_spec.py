"""From an AnalysisTemplate's YAML models to the judges' configurations, and the checks that need them.

The spec layer validates shapes and ranges; this module builds the frozen dataclasses the judges take
(:mod:`gapless.analysis.judges`, :mod:`gapless.analysis.sequential`) and compiles the conditions, so a
template whose condition does not parse is refused when it is applied, not when a run reaches it.

Conditions holding ``{{args.NAME}}`` placeholders are checked for syntax before the args are known:
each placeholder is replaced by a name (``a``, valid wherever a number or a key is) padded with spaces
to the placeholder's length, so an error keeps its column in the text the user wrote. An error
located on a placeholder (or right after one) is not reported, because it may depend on the value;
the controller compiles the condition again after :func:`gapless.spec.analysis.substitute` and
reports it then. The stand-in is only parsed, never evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gapless.analysis.errors import AnalysisError, ExpressionError
from gapless.analysis.expr import compile_expr
from gapless.analysis.judges import CompareToBaseline, Conditions, MemoryLeak, Threshold
from gapless.analysis.sequential import SequentialConfig
from gapless.core.errors import Problem
from gapless.spec.analysis import AnalysisTemplate, Judge, Metric, placeholders

__all__ = ["JudgeConfig", "conditions_config", "judge_config", "template_problems"]

JudgeConfig = Threshold | CompareToBaseline | MemoryLeak | SequentialConfig


def judge_config(judge: Judge) -> JudgeConfig:
    """The judge's dataclass; raises :class:`AnalysisError` for a combination the judge refuses."""
    if (t := judge.threshold) is not None:
        return Threshold(
            min_requests=t.min_requests,
            max_error_rate=t.max_error_rate,
            max_p50_seconds=t.max_p50_seconds,
            max_p95_seconds=t.max_p95_seconds,
            max_p99_seconds=t.max_p99_seconds,
            max_rss_bytes=t.max_rss_bytes,
            max_cpu_cores=t.max_cpu_cores,
        )
    if (c := judge.compare_to_baseline) is not None:
        return CompareToBaseline(
            min_requests=c.min_requests,
            max_error_rate_ratio=c.max_error_rate_ratio,
            error_rate_floor=c.error_rate_floor,
            latency_quantile=c.latency_quantile,
            max_latency_increase_seconds=c.max_latency_increase_seconds,
            min_counter_ratios=dict(c.min_counter_ratios),
        )
    if (m := judge.memory_leak) is not None:
        return MemoryLeak(
            tolerance_bytes_per_second=m.tolerance_bytes_per_second,
            noise_z=m.noise_z,
            min_samples=m.min_samples,
            min_duration_seconds=m.min_duration_seconds,
        )
    s = judge.sequential
    if s is None:  # pragma: no cover - Judge validates that exactly one is given
        raise AnalysisError("a judge needs one of threshold, compareToBaseline, memoryLeak, sequential")
    return SequentialConfig(
        alpha=s.alpha,
        beta=s.beta,
        tolerance=s.tolerance,
        margin=s.margin,
        errors=s.errors,
        latency=s.latency,
        slow_quantile=s.slow_quantile,
        slow_seconds=s.slow_seconds,
        min_baseline_for_slow=s.min_baseline_for_slow,
        error_rate_floor=s.error_rate_floor,
        max_canary_requests=s.max_canary_requests,
    )


def conditions_config(metric: Metric, args: Mapping[str, Any] | None = None) -> Conditions | None:
    """The metric's compiled conditions (``None`` without any); raises :class:`ExpressionError`.

    Call it on a substituted template; ``args`` become the conditions' ``args`` value.
    """
    if metric.success_condition is None and metric.failure_condition is None:
        return None
    return Conditions.parse(metric.success_condition, metric.failure_condition, args)


def template_problems(template: AnalysisTemplate) -> list[Problem]:
    """Every condition that does not compile and every judge the analysis layer refuses, by field path."""
    problems: list[Problem] = []
    for i, metric in enumerate(template.spec.metrics):
        where = f"spec.metrics.{i}"
        for key, text in (
            ("successCondition", metric.success_condition),
            ("failureCondition", metric.failure_condition),
        ):
            if text is not None and (message := _condition_problem(text)):
                problems.append(Problem(f"{where}.{key}", message))
        if metric.judge is not None:
            try:
                judge_config(metric.judge)
            except AnalysisError as e:
                problems.append(Problem(f"{where}.judge.{metric.judge.kind}", str(e)))
    return problems


def _condition_problem(text: str) -> str | None:
    """Why ``text`` does not compile, with the column in ``text`` itself, or ``None``."""
    spans = [m.span() for m in placeholders(text)]
    checked = text
    for start, end in reversed(spans):
        checked = checked[:start] + "a".ljust(end - start) + checked[end:]
    try:
        compile_expr(checked)
    except ExpressionError as e:
        if any(start <= e.position <= end for start, end in spans):
            return None
        return _render(e, text)
    return None


def _render(error: ExpressionError, text: str) -> str:
    """The error's message and column, and a caret under the original text when it fits on one line."""
    message = f"{error.message} (at column {error.position + 1})"
    if len(text) <= 200 and "\n" not in text:
        message += f"\n  {text}\n  {' ' * error.position}^"
    return message
