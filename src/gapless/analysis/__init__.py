"""Deployment analysis: measurements as data, judged by pure functions (expressions, thresholds, sequential tests).

Providers turn metrics into :class:`Measurement` values; judges are pure functions
``(config, canary, baseline) -> Verdict``; the sequential judge keeps a small frozen state that is
updated with each new batch. Nothing here does I/O or reads a clock: times arrive inside measurements.
"""

from gapless.analysis.errors import AnalysisError, ExpressionError, MissingValueError
from gapless.analysis.expr import Expr, compile_expr, evaluate_condition
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
from gapless.analysis.measurements import LatencyHistogram, Measurement, ResourceSample, Trend
from gapless.analysis.sequential import SequentialConfig, SequentialState, sequential
from gapless.analysis.verdict import Phase, Verdict

__all__ = [
    "AnalysisError",
    "CompareToBaseline",
    "Conditions",
    "Expr",
    "ExpressionError",
    "LatencyHistogram",
    "Measurement",
    "MemoryLeak",
    "MissingValueError",
    "Phase",
    "ResourceSample",
    "SequentialConfig",
    "SequentialState",
    "Threshold",
    "Trend",
    "Verdict",
    "compare_to_baseline",
    "compile_expr",
    "conditions",
    "evaluate_condition",
    "memory_leak",
    "sequential",
    "threshold",
]
