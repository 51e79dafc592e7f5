"""Readings: an analysis metric as people read it, computed from what the run recorded (pure).

A run records, per metric, its phase and its last measurements as judged values (``Verdict.value``:
the judge's own numbers plus a summary of the canary's and the baseline's window). People read
something else: the verdict, the number that decided it with its unit, what it was held against (the
limit, or the baseline with the allowed difference) and how it moved. :func:`reading` turns the
metric's spec and its recorded progress into that: a :class:`Reading` with one :class:`Check` per
comparison the metric makes (``p99 2.1 ms vs 6.4 ms (limit +50 ms)``) and the recent values of each
check for a sparkline. The dashboard renders these; it never sees the raw values.

Which quantity a check shows follows from the judge (a threshold's limits, a baseline comparison's
error ratio, latency increase and counter ratios, the memory judge's slopes, the sequential test's
cumulative error rates), or from the metric's conditions (``result.p99 < 0.5``: the field and the
number). The unit follows from the quantity; for a Prometheus query it is inferred from the query
(``histogram_quantile`` or ``_seconds``: seconds, ``_bytes``: bytes, a quotient: a ratio, ``_total``:
a count). A unit the metric declares (``unit``) wins over the inference: :func:`metric_unit` is the one
place that decides. :func:`format_value` writes a number in its unit with a scale a person reads at a
glance (µs/ms/s, B/KiB/MiB, percent, thousands separators).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from gapless.core import units
from gapless.spec.analysis import Metric

__all__ = [
    "UNITS",
    "Check",
    "Reading",
    "Unit",
    "Verdict",
    "field_unit",
    "format_value",
    "metric_unit",
    "query_unit",
    "reading",
    "verdict_of",
]

Unit = Literal[
    "seconds",
    "ratio",
    "count",
    "bytes",
    "bytes/s",
    "cores",
    "factor",
    "number",
    "milliseconds",
    "percent",
    "perSecond",
]
UNITS: tuple[Unit, ...] = get_args(Unit)
_DECLARED: dict[str, Unit] = {"bytesPerSecond": "bytes/s"}
"""A unit a metric declares (``gapless.core.units``' names) that readings spell otherwise."""
Verdict = Literal["pass", "fail", "inconclusive", "running", "error"]
Against = Literal["limit", "baseline", "none"]

_VERDICTS: dict[str, Verdict] = {
    "successful": "pass",
    "failed": "fail",
    "inconclusive": "inconclusive",
    "running": "running",
    "error": "error",
}
MAX_SERIES = 30
"""Points per sparkline: as many measurements as a run keeps per metric."""


def verdict_of(phase: str) -> Verdict:
    """The verdict word for a metric or measurement phase (an unknown phase is an ``error``)."""
    return _VERDICTS.get(phase, "error")


# --- units -----------------------------------------------------------------------------------------

_FIELD_UNITS: dict[str, Unit] = {
    "error_rate": "ratio",
    "p50": "seconds",
    "p95": "seconds",
    "p99": "seconds",
    "duration": "seconds",
    "requests": "count",
    "errors": "count",
    "open_files": "count",
    "peak_open_files": "count",
    "rss_bytes": "bytes",
    "peak_rss_bytes": "bytes",
    "bytes_in": "bytes",
    "bytes_out": "bytes",
    "rss_slope": "bytes/s",
    "cpu_cores": "cores",
}


def field_unit(name: str) -> Unit:
    """The unit of a measurement field as conditions name it (``p99``, ``counters.orders``)."""
    if name.startswith("counters."):
        return "count"
    return _FIELD_UNITS.get(name, "number")


def query_unit(query: str) -> Unit:
    """The unit a PromQL query most likely answers in; ``number`` when nothing says."""
    q = query.lower()
    if "histogram_quantile" in q or re.search(r"_seconds\b|_seconds_(?:sum|count|bucket)", q):
        return "seconds"
    if re.search(r"_bytes\b|_bytes_(?:sum|total)", q):
        return "bytes"
    if "/" in q or "ratio" in q:
        return "ratio"
    if "_total" in q or "count(" in q:
        return "count"
    return "number"


def metric_unit(metric: Metric, field_name: str | None = None) -> Unit:
    """The unit of a metric's value: declared on the metric if it says, else inferred.

    ``field_name`` is the measurement field a condition reads (``p99``); a Prometheus metric's unit
    comes from its query.
    """
    declared = getattr(metric, "unit", None)
    if isinstance(declared, str) and declared in _DECLARED:
        return _DECLARED[declared]
    if isinstance(declared, str) and declared in UNITS:
        return declared
    if metric.provider.prometheus is not None:
        return query_unit(metric.provider.prometheus.query)
    return field_unit(field_name) if field_name else "number"


def _scaled(x: float) -> str:
    """A positive number scaled to [1, 1000) where it can be: one decimal below 10, none above."""
    if x < 0.995:  # below the smallest step (a fraction of a byte per second)
        return f"{x:.2g}"
    return f"{x:.1f}" if x < 9.95 else f"{x:.0f}"


def _with_prefix(value: float, steps: Sequence[tuple[float, str]]) -> str:
    """``value`` (> 0) in the largest step not above it; ``steps`` ascend by factor."""
    factor, name = steps[0]
    for f, n in steps:
        if value >= f * 0.9995:
            factor, name = f, n
    return f"{_scaled(value / factor)} {name}"


_TIME_STEPS = ((1e-9, "ns"), (1e-6, "µs"), (1e-3, "ms"), (1.0, "s"))
_BYTE_STEPS = ((1.0, "B"), (1024.0, "KiB"), (1024.0**2, "MiB"), (1024.0**3, "GiB"), (1024.0**4, "TiB"))


def _number(x: float) -> str:
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def format_value(value: float | None, unit: Unit) -> str:
    """``value`` in ``unit`` as a person reads it: ``2.1 ms``, ``0.12%``, ``12.3 MiB``, ``12,300``.

    ``None`` (or a value that is not a finite number) is ``n/a``.
    """
    if (
        value is None
        or isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
    ):
        return "n/a"
    x = float(value)
    if unit in ("milliseconds", "percent", "perSecond"):  # declared by a metric: the CLI's formatting
        return units.format_value(x, unit)
    sign = "-" if x < 0 else ""
    a = abs(x)
    if unit == "ratio":
        p = a * 100
        if p == 0:
            return "0%"
        text = f"{p:.2g}" if p < 0.01 else f"{p:.2f}" if p < 1 else f"{p:.1f}" if p < 9.95 else f"{p:.0f}"
        return f"{sign}{text}%"
    if unit == "factor":
        return f"{sign}{a:.2f}x" if a < 9.995 else f"{sign}{a:.0f}x"
    if unit == "cores":
        return f"{sign}{a:.2f} cores" if a < 9.995 else f"{sign}{a:.0f} cores"
    if unit in ("count", "number"):
        return _number(x)
    if a == 0:
        return {"seconds": "0 s", "bytes": "0 B", "bytes/s": "0 B/s"}[unit]
    if unit == "seconds":
        return sign + (_with_prefix(a, _TIME_STEPS) if a < 1000 else f"{a:,.0f} s")
    text = _with_prefix(a, _BYTE_STEPS)
    return sign + text + ("/s" if unit == "bytes/s" else "")


# --- checks -----------------------------------------------------------------------------------------

Getter = Callable[[Mapping[str, Any]], float | None]


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return None
    return float(x)


def _path(value: Mapping[str, Any], *keys: str) -> float | None:
    node: Any = value
    for k in keys:
        if not isinstance(node, Mapping):
            return None
        node = node.get(k)
    if isinstance(node, list):  # a query's vector: its first element
        node = node[0] if node else None
    return _num(node)


def _first(*getters: Getter) -> Getter:
    def get(value: Mapping[str, Any]) -> float | None:
        for g in getters:
            if (x := g(value)) is not None:
                return x
        return None

    return get


def _at(*keys: str) -> Getter:
    return lambda value: _path(value, *keys)


def _quotient(top: Getter, bottom: Getter) -> Getter:
    def get(value: Mapping[str, Any]) -> float | None:
        a, b = top(value), bottom(value)
        return None if a is None or not b else a / b

    return get


def _const(x: float | None) -> Getter:
    return lambda value: x


@dataclass(frozen=True)
class _Spec:
    """One comparison a metric makes: what it reads from a measurement and what it holds it against."""

    quantity: str
    unit: Unit
    value: Getter
    reference: Getter
    against: Against
    allowed: str


@dataclass(frozen=True)
class Check:
    """One comparison as read: ``p99 2.1 ms vs 6.4 ms (limit +50 ms)`` and the recent values."""

    quantity: str
    unit: Unit
    value: float | None
    against: Against
    reference: float | None
    allowed: str
    text: str
    series: tuple[tuple[float, float], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "quantity": self.quantity,
            "unit": self.unit,
            "value": self.value,
            "valueText": format_value(self.value, self.unit),
            "against": self.against,
            "reference": self.reference,
            "referenceText": None if self.reference is None else format_value(self.reference, self.unit),
            "allowed": self.allowed,
            "text": self.text,
            "series": [[t, v] for t, v in self.series],
        }


@dataclass(frozen=True)
class Reading:
    """A metric as read: its verdict, its checks, and the counts behind the verdict."""

    metric: str
    verdict: Verdict
    last_verdict: Verdict | None
    message: str
    measured: int
    checks: tuple[Check, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "verdict": self.verdict,
            "lastVerdict": self.last_verdict,
            "message": self.message,
            "measured": self.measured,
            "checks": [c.to_json() for c in self.checks],
        }


def _canary(key: str) -> Getter:
    return _at("canary", key)


def _baseline(key: str) -> Getter:
    return _at("baseline", key)


def _quantile_key(q: float) -> str | None:
    return {0.5: "p50", 0.95: "p95", 0.99: "p99"}.get(round(q, 6))


def _threshold_specs(metric: Metric) -> list[_Spec]:
    judge = metric.judge.threshold if metric.judge is not None else None
    if judge is None:
        return []
    out: list[_Spec] = []
    for quantity, key, shown, unit, limit in (
        ("error rate", "error_rate", "error_rate", "ratio", judge.max_error_rate),
        ("p50", "p50", "p50", "seconds", judge.max_p50_seconds),
        ("p95", "p95", "p95", "seconds", judge.max_p95_seconds),
        ("p99", "p99", "p99", "seconds", judge.max_p99_seconds),
        ("peak RSS", "peak_rss", "rss_bytes", "bytes", judge.max_rss_bytes),
        ("CPU", "cpu", "cpu_cores", "cores", judge.max_cpu_cores),
    ):
        if limit is None:
            continue
        u: Unit = unit  # type: ignore[assignment]  # the literals above are units
        out.append(
            _Spec(
                quantity,
                u,
                _first(_at(key), _canary(shown)),
                _const(limit),
                "limit",
                f"limit {format_value(limit, u)}",
            )
        )
    return out


def _baseline_specs(metric: Metric) -> list[_Spec]:
    judge = metric.judge.compare_to_baseline if metric.judge is not None else None
    if judge is None:
        return []
    out: list[_Spec] = []
    if judge.max_error_rate_ratio is not None:
        out.append(
            _Spec(
                "error rate",
                "ratio",
                _first(_at("canary_error_rate"), _canary("error_rate")),
                _first(_at("baseline_error_rate"), _baseline("error_rate")),
                "baseline",
                f"limit {judge.max_error_rate_ratio:g}x, floor {format_value(judge.error_rate_floor, 'ratio')}",
            )
        )
    if judge.max_latency_increase_seconds is not None:
        q = judge.latency_quantile
        key = _quantile_key(q)
        out.append(
            _Spec(
                f"p{q * 100:g}",
                "seconds",
                _first(_at("canary_latency"), _canary(key) if key else _const(None)),
                _first(_at("baseline_latency"), _baseline(key) if key else _const(None)),
                "baseline",
                f"limit +{format_value(judge.max_latency_increase_seconds, 'seconds')}",
            )
        )
    for counter, fraction in sorted(judge.min_counter_ratios.items()):
        out.append(
            _Spec(
                f"{counter} per request",
                "number",
                _first(
                    _at(f"{counter}_per_request", "canary"),
                    _quotient(_at("canary", "counters", counter), _canary("requests")),
                ),
                _first(
                    _at(f"{counter}_per_request", "baseline"),
                    _quotient(_at("baseline", "counters", counter), _baseline("requests")),
                ),
                "baseline",
                f"at least {fraction:g}x",
            )
        )
    return out


def _memory_specs(metric: Metric) -> list[_Spec]:
    judge = metric.judge.memory_leak if metric.judge is not None else None
    if judge is None:
        return []
    return [
        _Spec(
            "RSS growth",
            "bytes/s",
            _first(_at("canary_slope"), _canary("rss_slope_bytes_per_second")),
            _first(_at("baseline_slope"), _baseline("rss_slope_bytes_per_second")),
            "baseline",
            f"limit +{format_value(judge.tolerance_bytes_per_second, 'bytes/s')}",
        )
    ]


def _sequential_specs(metric: Metric) -> list[_Spec]:
    judge = metric.judge.sequential if metric.judge is not None else None
    if judge is None:
        return []
    out: list[_Spec] = []
    tolerance = f"sequential, tolerance +{judge.tolerance:.0%}"
    if judge.errors:
        out.append(
            _Spec(
                "error rate",
                "ratio",
                _first(_quotient(_at("canary_errors"), _at("canary_requests")), _canary("error_rate")),
                _first(_quotient(_at("baseline_errors"), _at("baseline_requests")), _baseline("error_rate")),
                "baseline",
                tolerance,
            )
        )
    if judge.latency:
        key = _quantile_key(judge.slow_quantile) or "p95"
        out.append(_Spec(key, "seconds", _canary(key), _baseline(key), "baseline", tolerance))
    return out


_CONDITION_RE = re.compile(
    r"result((?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?:\[0\])?\s*(<=|>=|<|>|==|!=)\s*(-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
)
_OPERATOR_WORDS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "=", "!=": "not"}


def _condition_specs(metric: Metric) -> list[_Spec]:
    out: list[_Spec] = []
    for source, outcome in ((metric.failure_condition, "fails"), (metric.success_condition, "passes")):
        if source is None:
            continue
        matches = list(_CONDITION_RE.finditer(source))
        # ``result.requests == 0 or result.error_rate < 0.05``: the inequality is the limit people read.
        match = next((m for m in matches if m.group(2) not in ("==", "!=")), matches[0] if matches else None)
        if match is None:
            continue
        field_name = match.group(1).lstrip(".")
        number = float(match.group(3))
        unit = metric_unit(metric, field_name or None)
        if field_name:
            keys = field_name.split(".")
            quantity = field_name.replace("_", " ") if not field_name.startswith("counters.") else keys[-1]
            value = _at("result", *keys)
        else:
            quantity = metric.name
            value = _at("result")
        limit = f"{outcome} if {_OPERATOR_WORDS[match.group(2)]} {format_value(number, unit)}"
        out.append(_Spec(quantity, unit, value, _const(number), "limit", limit))
        break  # the failure condition, else the success condition: the one that decides first
    if not out and metric.has_condition:
        unit = metric_unit(metric)
        if metric.provider.prometheus is not None:
            out.append(_Spec(metric.name, unit, _at("result"), _const(None), "none", "condition"))
        else:
            out.append(
                _Spec("requests", "count", _at("result", "requests"), _const(None), "none", "condition")
            )
    return out


def _specs(metric: Metric) -> list[_Spec]:
    return (
        _threshold_specs(metric)
        + _baseline_specs(metric)
        + _memory_specs(metric)
        + _sequential_specs(metric)
        + _condition_specs(metric)
    )


def _text(spec: _Spec, value: float | None, reference: float | None) -> str:
    shown = f"{spec.quantity} {format_value(value, spec.unit)}"
    if spec.against == "baseline":
        return f"{shown} vs {format_value(reference, spec.unit)} ({spec.allowed})"
    if spec.against == "limit":
        return f"{shown} ({spec.allowed})"
    return shown


def _check(spec: _Spec, measurements: Sequence[Mapping[str, Any]]) -> Check:
    series: list[tuple[float, float]] = []
    for m in measurements[-MAX_SERIES:]:
        value = m.get("value")
        at = _num(m.get("at"))
        if not isinstance(value, Mapping) or at is None:
            continue
        x = spec.value(value)
        if x is not None:
            series.append((at, x))
    last = measurements[-1].get("value") if measurements else None
    last_value = last if isinstance(last, Mapping) else {}
    value, reference = spec.value(last_value), spec.reference(last_value)
    return Check(
        quantity=spec.quantity,
        unit=spec.unit,
        value=value,
        against=spec.against,
        reference=reference,
        allowed=spec.allowed,
        text=_text(spec, value, reference),
        series=tuple(series),
    )


def reading(metric: Metric | None, progress: Mapping[str, Any]) -> Reading:
    """The metric as read, from its spec and its recorded progress (``MetricProgress.to_json()``).

    Never raises on odd recorded values: what cannot be read is ``n/a``. Without the spec (a run
    recorded by an older version) the reading has the verdict and no checks.
    """
    raw = progress.get("measurements")
    measurements = [m for m in raw if isinstance(m, Mapping)] if isinstance(raw, list) else []
    last_phase = measurements[-1].get("phase") if measurements else None
    measured = progress.get("measured")
    message = progress.get("message")
    name = progress.get("name")
    return Reading(
        metric=metric.name if metric is not None else name if isinstance(name, str) else "",
        verdict=verdict_of(str(progress.get("phase", "running"))),
        last_verdict=verdict_of(str(last_phase)) if last_phase is not None else None,
        message=message if isinstance(message, str) else "",
        measured=measured
        if isinstance(measured, int) and not isinstance(measured, bool)
        else len(measurements),
        checks=tuple(_check(spec, measurements) for spec in _specs(metric)) if metric is not None else (),
    )
