"""Readings: a metric's verdict, value with unit against limit or baseline, and recent values, from what a run recorded."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gapless.analysis.measurements import LatencyHistogram, Measurement
from gapless.analysis.metric_judge import MetricJudge
from gapless.analysis.readings import (
    MAX_SERIES,
    UNITS,
    Unit,
    field_unit,
    format_value,
    metric_unit,
    query_unit,
    reading,
    verdict_of,
)
from gapless.analysis.run import MetricProgress, record
from gapless.spec.analysis import Metric

BOUNDS = (0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0)

_SCALES = {
    "ns": 1e-9,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "B": 1.0,
    "KiB": 1024.0,
    "MiB": 1024.0**2,
    "GiB": 1024.0**3,
    "TiB": 1024.0**4,
}
_SUFFIXES: dict[Unit, tuple[str, ...]] = {
    "seconds": ("ns", "µs", "ms", "s"),
    "bytes": ("B", "KiB", "MiB", "GiB", "TiB"),
    "bytes/s": ("B/s", "KiB/s", "MiB/s", "GiB/s", "TiB/s"),
    "ratio": ("%",),
    "cores": ("cores",),
    "factor": ("x",),
}


def parse(text: str, unit: Unit) -> float:
    """Read a formatted value back (the inverse of format_value, up to its rounding)."""
    m = re.fullmatch(r"(-?[\d,]*\.?\d+(?:e[-+]?\d+)?)\s*(.*)", text)
    assert m, text
    number = float(m.group(1).replace(",", ""))
    suffix = m.group(2)
    if unit == "ratio":
        assert suffix == "%", text
        return number / 100
    if unit in ("seconds", "bytes", "bytes/s"):
        return number * _SCALES[suffix.removesuffix("/s")]
    return number


finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)


OWN_UNITS = [u for u in UNITS if u not in ("milliseconds", "percent", "perSecond")]
"""Units readings write themselves; the others a metric declares are written by gapless.core.units."""


@given(finite, st.sampled_from(OWN_UNITS))
def test_a_formatted_value_reads_back_within_its_rounding(value: float, unit: Unit) -> None:
    """Every value in every unit is written with its unit's suffix and reads back within 5% (or its last digit)."""
    text = format_value(value, unit)
    assert text
    assert "{" not in text
    assert "n/a" not in text
    if unit in _SUFFIXES:
        assert text.split(" ")[-1].lstrip("0123456789.,-").endswith(_SUFFIXES[unit]) or text.endswith(
            _SUFFIXES[unit]
        ), text
    back = parse(text, unit)
    assert math.copysign(1, back) == math.copysign(1, value) or back == 0 or value == 0
    scale = {
        "ratio": 1e-4,
        "count": 0.5,
        "number": 1e-3 * max(1.0, abs(value)),
        "cores": 0.005,
        "factor": 0.005,
    }
    assert abs(back - value) <= max(0.05 * abs(value), scale.get(unit, 1e-12)), (value, text, back)


@given(finite, finite, st.sampled_from(["seconds", "bytes", "ratio", "count", "cores"]))
def test_formatting_keeps_the_order_of_values(a: float, b: float, unit: Unit) -> None:
    """A larger value never reads back as clearly smaller than a smaller one (same unit)."""
    lo, hi = sorted((a, b))
    assert (
        parse(format_value(lo, unit), unit)
        <= parse(format_value(hi, unit), unit) * (1.06 if hi > 0 else 0.94) + 1e-3
    )


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0.0021, "seconds", "2.1 ms"),
        (0.0064, "seconds", "6.4 ms"),
        (0.25, "seconds", "250 ms"),
        (4.2e-5, "seconds", "42 µs"),
        (12.5, "seconds", "12 s"),
        (0.0012, "ratio", "0.12%"),
        (0.05, "ratio", "5.0%"),
        (0.5, "ratio", "50%"),
        (0.0, "ratio", "0%"),
        (12300, "count", "12,300"),
        (12.9 * 2**20, "bytes", "13 MiB"),
        (3.5 * 1024, "bytes/s", "3.5 KiB/s"),
        (-2048, "bytes/s", "-2.0 KiB/s"),
        (0.25, "cores", "0.25 cores"),
        (1.2, "factor", "1.20x"),
        (None, "seconds", "n/a"),
        (math.nan, "ratio", "n/a"),
        (math.inf, "count", "n/a"),
    ],
)
def test_formatting_table(value: float | None, unit: Unit, text: str) -> None:
    """Values as an SRE reads them on the dashboard."""
    assert format_value(value, unit) == text


@pytest.mark.parametrize(
    ("query", "unit"),
    [
        ("histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket[1m])) by (le))", "seconds"),
        ("avg(process_resident_memory_bytes)", "bytes"),
        ('sum(rate(http_requests_total{code=~"5.."}[1m])) / sum(rate(http_requests_total[1m]))', "ratio"),
        ("sum(increase(orders_total[5m]))", "count"),
        ("up", "number"),
    ],
)
def test_the_unit_of_a_query(query: str, unit: Unit) -> None:
    """A Prometheus query's unit is inferred from the names and functions it uses."""
    assert query_unit(query) == unit


def test_units_of_condition_fields() -> None:
    """Condition fields have the units of the measurement fields they name."""
    assert [
        field_unit(f) for f in ("p99", "error_rate", "rss_bytes", "counters.orders", "cpu_cores", "x")
    ] == [
        "seconds",
        "ratio",
        "bytes",
        "count",
        "cores",
        "number",
    ]


def test_a_declared_unit_wins_over_the_inferred_one() -> None:
    """When a metric declares its unit, that unit is used instead of the query's inferred one."""

    class Declared(Metric):
        unit: str | None = None

    spec = {
        "name": "q",
        "provider": {"prometheus": {"address": "http://127.0.0.1:9090", "query": "sum(orders_total)"}},
        "successCondition": "result < 5",
    }
    assert metric_unit(Metric.model_validate(spec)) == "count"
    assert metric_unit(Declared.model_validate(spec | {"unit": "bytes"})) == "bytes"
    assert metric_unit(Declared.model_validate(spec | {"unit": "furlongs"})) == "count"
    # The spec's own field, in gapless.core.units' names.
    ms = Metric.model_validate(spec | {"unit": "milliseconds"})
    assert metric_unit(ms) == "milliseconds"
    assert format_value(2.5, metric_unit(ms)) == "2.5 ms"
    per_second = Metric.model_validate(spec | {"unit": "bytesPerSecond"})
    assert metric_unit(per_second) == "bytes/s"


@pytest.mark.parametrize(
    ("phase", "verdict"),
    [
        ("successful", "pass"),
        ("failed", "fail"),
        ("inconclusive", "inconclusive"),
        ("running", "running"),
        ("error", "error"),
        ("?", "error"),
    ],
)
def test_verdict_words(phase: str, verdict: str) -> None:
    """Phases read as pass, fail, inconclusive, running or error."""
    assert verdict_of(phase) == verdict


# --- readings through the real judges ----------------------------------------------------------------


def window(requests: int, errors: int, latency: list[int], revision: str, start: float) -> Measurement:
    return Measurement(
        revision=revision,
        start=start,
        end=start + 1,
        requests=requests,
        errors=min(errors, requests),
        latency=LatencyHistogram(BOUNDS, tuple(latency)),
    )


windows = st.tuples(
    st.integers(0, 5000),
    st.integers(0, 500),
    st.lists(st.integers(0, 200), min_size=len(BOUNDS) + 1, max_size=len(BOUNDS) + 1),
)

JUDGES: list[dict[str, Any]] = [
    {"threshold": {"minRequests": 10, "maxP99Seconds": 0.05, "maxErrorRate": 0.01}},
    {"compareToBaseline": {"minRequests": 10, "maxLatencyIncreaseSeconds": 0.05}},
    {"compareToBaseline": {"minRequests": 10, "latencyQuantile": 0.9, "maxLatencyIncreaseSeconds": 0.01}},
    {"sequential": {"latency": False}},
    {"sequential": {}},
]


def judged(
    judge: dict[str, Any] | None, pairs: list[tuple[Any, Any]], condition: str | None = None
) -> tuple[Metric, dict[str, Any], list[Measurement]]:
    doc: dict[str, Any] = {"name": "m", "provider": {"builtin": {}}}
    if judge is not None:
        doc["judge"] = judge
    if condition is not None:
        doc["successCondition"] = condition
    metric = Metric.model_validate(doc)
    j = MetricJudge(metric, {})
    progress = MetricProgress(name="m")
    canaries = []
    for i, (c, b) in enumerate(pairs):
        canary = window(c[0], c[1], c[2], "canary", float(i))
        canaries.append(canary)
        progress = record(progress, j.judge(canary, window(b[0], b[1], b[2], "stable", float(i))), float(i))
    return metric, progress.to_json(), canaries


@given(st.sampled_from(JUDGES), st.lists(st.tuples(windows, windows), min_size=1, max_size=35))
def test_a_reading_shows_what_the_judge_measured_with_units(judge: dict[str, Any], pairs: list[Any]) -> None:
    """For every judge, the reading has the metric's verdict, a text with units and no braces, and a series of kept values."""
    metric, progress, _canaries = judged(judge, pairs)
    r = reading(metric, progress)
    assert r.verdict == verdict_of(progress["phase"])
    assert r.measured == progress["measured"] == len(progress["measurements"])
    assert r.checks
    for check in r.checks:
        data = check.to_json()
        assert "{" not in check.text
        assert "}" not in check.text
        assert check.text.startswith(check.quantity + " ")
        if check.value is not None:
            assert format_value(check.value, check.unit) in check.text
        assert data["valueText"] == format_value(check.value, check.unit)
        assert len(check.series) <= min(MAX_SERIES, len(progress["measurements"]))
        times = [t for t, _ in check.series]
        assert times == sorted(times)
        assert all(math.isfinite(v) for _, v in check.series)


@given(st.lists(st.tuples(windows, windows), min_size=1, max_size=35))
def test_a_threshold_reading_shows_the_canary_value_against_the_limit(pairs: list[Any]) -> None:
    """A threshold's p99 check is the canary window's p99 against the limit, and its series the kept p99s."""
    metric, progress, canaries = judged(JUDGES[0], pairs)
    p99 = next(c for c in reading(metric, progress).checks if c.quantity == "p99")
    assert p99.against == "limit"
    assert p99.reference == 0.05
    last = canaries[progress["measured"] - 1]
    assert p99.value == (pytest.approx(last.p99, abs=1e-6) if last.p99 is not None else None)
    assert p99.text.endswith("(limit 50 ms)")
    kept = canaries[: progress["measured"]][-MAX_SERIES:]  # a decided metric records no more
    assert [v for _, v in p99.series] == pytest.approx([c.p99 for c in kept if c.p99 is not None], abs=1e-6)


@given(st.lists(st.tuples(windows, windows), min_size=1, max_size=10))
def test_a_baseline_reading_compares_canary_and_baseline_of_the_same_window(pairs: list[Any]) -> None:
    """A compareToBaseline latency check reads ``p99 canary vs baseline (limit +increase)`` from the last window."""
    metric, progress, _ = judged(JUDGES[1], pairs)
    check = reading(metric, progress).checks[-1]
    last = progress["measurements"][-1]["value"]
    assert check.against == "baseline"
    for got, side in ((check.value, "canary"), (check.reference, "baseline")):
        want = last[side].get("p99")
        assert got == (None if want is None else pytest.approx(want, abs=1e-6)), side
    assert (
        check.text
        == f"p99 {format_value(check.value, 'seconds')} vs {format_value(check.reference, 'seconds')} (limit +50 ms)"
    )


def test_the_example_an_sre_reads() -> None:
    """A latency comparison reads like ``p99 2.1 ms vs 6.4 ms (limit +50 ms)``."""
    metric = Metric.model_validate(
        {
            "name": "lat",
            "provider": {"builtin": {}},
            "judge": {"compareToBaseline": {"maxLatencyIncreaseSeconds": "50ms", "maxErrorRateRatio": 1.2}},
        }
    )
    value = {
        "canary_error_rate": 0.0012,
        "baseline_error_rate": 0.001,
        "canary_latency": 0.0021,
        "baseline_latency": 0.0064,
    }
    r = reading(
        metric,
        {
            "name": "lat",
            "phase": "running",
            "measured": 1,
            "measurements": [{"at": 1.0, "phase": "successful", "value": value}],
        },
    )
    assert [c.text for c in r.checks] == [
        "error rate 0.12% vs 0.10% (limit 1.2x, floor 0.10%)",
        "p99 2.1 ms vs 6.4 ms (limit +50 ms)",
    ]
    assert (r.verdict, r.last_verdict) == ("running", "pass")


@pytest.mark.parametrize(
    ("condition", "value", "text"),
    [
        (
            "result.error_rate < 0.05",
            {"result": {"error_rate": 0.001}},
            "error rate 0.10% (passes if < 5.0%)",
        ),
        ("result.p99 <= 0.2", {"result": {"p99": 0.15}}, "p99 150 ms (passes if <= 200 ms)"),
        (
            "result.counters.orders > 10",
            {"result": {"counters": {"orders": 12}}},
            "orders 12 (passes if > 10)",
        ),
        (
            "result.requests == 0 or result.error_rate < 0.05",
            {"result": {"requests": 3}},
            "error rate n/a (passes if < 5.0%)",
        ),
        ("args.x == 'y'", {"result": {"requests": 7}}, "requests 7"),
        ("result.requests == 0", {"result": {"requests": 7}}, "requests 7 (passes if = 0)"),
    ],
)
def test_condition_readings(condition: str, value: dict[str, Any], text: str) -> None:
    """A condition reads as its field with units against the number it is compared to."""
    metric = Metric.model_validate({"name": "c", "provider": {"builtin": {}}, "successCondition": condition})
    r = reading(
        metric,
        {
            "name": "c",
            "phase": "successful",
            "measurements": [{"at": 0, "phase": "successful", "value": value}],
        },
    )
    assert [c.text for c in r.checks] == [text]


def test_a_prometheus_reading_has_the_query_unit() -> None:
    """A query metric's result reads in the unit of its query, against its condition's number."""
    metric = Metric.model_validate(
        {
            "name": "p99",
            "provider": {
                "prometheus": {
                    "address": "http://127.0.0.1:9090",
                    "query": "histogram_quantile(0.99, rate(x_seconds_bucket[1m]))",
                }
            },
            "failureCondition": "result[0] > 0.5",
        }
    )
    r = reading(
        metric,
        {
            "name": "p99",
            "phase": "failed",
            "measurements": [{"at": 0, "phase": "failed", "value": {"result": [0.75]}}],
        },
    )
    assert [c.text for c in r.checks] == ["p99 750 ms (fails if > 500 ms)"]
    assert r.verdict == "fail"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@given(st.sampled_from(JUDGES), st.lists(json_values, max_size=5), json_values)
def test_odd_recorded_values_read_as_not_available(
    judge: dict[str, Any], measurements: list[Any], phase: Any
) -> None:
    """Whatever a stored run holds, a reading is made (unknown values are n/a) and shows no braces."""
    metric = Metric.model_validate({"name": "m", "provider": {"builtin": {}}, "judge": judge})
    r = reading(metric, {"name": "m", "phase": phase, "measurements": measurements})
    assert r.verdict in ("pass", "fail", "inconclusive", "running", "error")
    for c in r.checks:
        assert "{" not in c.text


def test_without_its_spec_a_reading_keeps_the_verdict() -> None:
    """A run whose metric spec cannot be read still shows the metric's verdict."""
    r = reading(None, {"name": "old", "phase": "failed", "measured": 3})
    assert (r.metric, r.verdict, r.checks, r.measured) == ("old", "fail", (), 3)
