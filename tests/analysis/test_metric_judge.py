"""``MetricJudge`` by its rules: query results against conditions (Argo's semantics), the worse of two
verdicts, and the sequential state carried across a restart.

Rules (docs/analysis.md, as Argo Rollouts' AnalysisRun):
1. A query result is ``failed`` when the failure condition holds, else ``successful`` when the success
   condition holds; with both conditions and neither true it is ``inconclusive``; with only a success
   condition that is false it is ``failed``, with only a failure condition that is false ``successful``.
   The failure condition is looked at first. A condition that cannot be evaluated is an ``error``.
2. The result is shown as measured (NaN and infinities as text, JSON has none) with the metric's unit.
3. ``worse`` keeps the heavier verdict (failed > error > inconclusive > running > successful), whatever
   the order of its arguments, with the values of both and the messages of both when neither passed.
4. A sequential judge's state survives ``snapshot`` / ``restore``: a judge restored mid-run gives the
   same verdicts afterwards as one that never stopped.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gapless.analysis.measurements import Measurement
from gapless.analysis.metric_judge import MetricJudge, summary, worse
from gapless.analysis.verdict import Verdict
from gapless.spec.analysis import Metric

PHASES = ["failed", "error", "inconclusive", "running", "successful"]


def query_metric(success: str | None = None, failure: str | None = None, unit: str | None = None) -> Metric:
    doc: dict[str, Any] = {
        "name": "p99",
        "provider": {"prometheus": {"address": "http://127.0.0.1:9090", "query": "up"}},
    }
    if success is not None:
        doc["successCondition"] = success
    if failure is not None:
        doc["failureCondition"] = failure
    if unit is not None:
        doc["unit"] = unit
    return Metric.model_validate(doc)


@pytest.mark.parametrize(
    ("success", "failure", "value", "phase", "message"),
    [
        ("result < 10", "result > 20", 25.0, "failed", "failure condition is true: result > 20"),
        ("result < 10", "result > 20", 5.0, "successful", "success condition is true: result < 10"),
        (
            "result < 10",
            "result > 20",
            15.0,
            "inconclusive",
            "neither the success nor the failure condition is true",
        ),
        # Both true: the failure condition is looked at first.
        ("result > 1", "result > 2", 5.0, "failed", "failure condition is true: result > 2"),
        ("result < 10", None, 5.0, "successful", "success condition is true: result < 10"),
        ("result < 10", None, 15.0, "failed", "success condition is false: result < 10"),
        (None, "result > 20", 25.0, "failed", "failure condition is true: result > 20"),
        (None, "result > 20", 5.0, "successful", "failure condition is false"),
    ],
)
def test_a_query_result_against_the_conditions(
    success: str | None, failure: str | None, value: float, phase: str, message: str
) -> None:
    verdict = MetricJudge(query_metric(success, failure), {}).judge_value(value)
    assert verdict == Verdict(phase, {"result": value}, message)  # type: ignore[arg-type]


@given(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9),
    st.floats(-1e6, 1e6),
    st.floats(-1e6, 1e6),
    st.sampled_from(["both", "success", "failure"]),
)
def test_the_condition_rules_hold_for_any_value(value: float, low: float, high: float, which: str) -> None:
    success = f"result < {low!r}" if which != "failure" else None
    failure = f"result > {high!r}" if which != "success" else None
    phase = MetricJudge(query_metric(success, failure), {}).judge_value(value).phase
    fails = failure is not None and value > high
    passes = success is not None and value < low
    if fails:
        assert phase == "failed"
    elif passes:
        assert phase == "successful"
    elif success is not None and failure is not None:
        assert phase == "inconclusive"
    else:
        assert phase == ("failed" if success is not None else "successful")


def test_a_vector_result_and_its_unit_are_shown_as_measured() -> None:
    judge = MetricJudge(query_metric("len(result) > 0", unit="milliseconds"), {})
    verdict = judge.judge_value([1.0, math.nan, math.inf])
    assert verdict.value == {"result": [1.0, "nan", "inf"], "unit": "milliseconds"}
    assert MetricJudge(query_metric("result < 1"), {}).judge_value(-math.inf).value == {"result": "-inf"}


def test_a_condition_that_cannot_be_evaluated_is_an_error() -> None:
    judge = MetricJudge(query_metric("result[5] < 1"), {})
    verdict = judge.judge_value([1.0])
    assert verdict.phase == "error"
    assert verdict.value == {"result": [1.0]}
    assert verdict.message


def test_a_query_metric_without_conditions_is_an_error() -> None:
    metric = query_metric("result < 1").model_copy(update={"success_condition": None})
    verdict = MetricJudge(metric, {}).judge_value(1.0)
    assert verdict == Verdict(
        "error", {"result": 1.0}, "a query metric needs a successCondition or failureCondition"
    )


def test_arguments_reach_the_conditions() -> None:
    judge = MetricJudge(query_metric("args.mode == 'lenient' || result < 3"), {"mode": "strict"})
    assert judge.judge_value(2.0).phase == "successful"
    assert judge.judge_value(4.0).phase == "failed"
    lenient = MetricJudge(query_metric("args.mode == 'lenient' || result < 3"), {"mode": "lenient"})
    assert lenient.judge_value(4.0).phase == "successful"


# -- worse ---------------------------------------------------------------------------------------------

verdicts = st.builds(
    Verdict,
    st.sampled_from(PHASES),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(), max_size=2),
    st.sampled_from(["", "x high", "y slow"]),
)


@given(verdicts, verdicts)
def test_worse_keeps_the_heavier_verdict_in_either_order(a: Verdict, b: Verdict) -> None:
    rank = {p: i for i, p in enumerate(reversed(PHASES))}
    w = worse(a, b)
    assert w.phase == max(a.phase, b.phase, key=rank.__getitem__)
    assert w.phase == worse(b, a).phase
    heavier, lighter = (a, b) if rank[a.phase] >= rank[b.phase] else (b, a)
    assert w.value == dict(lighter.value) | dict(heavier.value)  # the heavier's value where both name one
    if lighter.phase != "successful" and lighter.message:
        assert w.message == f"{heavier.message}; {lighter.message}"
    else:
        assert w.message == heavier.message


def test_worse_examples() -> None:
    failed = Verdict("failed", {"x": 1}, "error rate 9 %")
    error = Verdict("error", {"x": 2}, "query failed")
    ok = Verdict("successful", {"y": 3}, "fine")
    assert worse(ok, failed) == Verdict("failed", {"x": 1, "y": 3}, "error rate 9 %")
    assert worse(error, failed) == Verdict("failed", {"x": 1}, "error rate 9 %; query failed")
    assert worse(Verdict("running", {}, ""), Verdict("inconclusive", {}, "")) == Verdict(
        "inconclusive", {}, ""
    )
    assert worse(ok, Verdict("successful", {"y": 4}, "also")) == Verdict("successful", {"y": 3}, "fine")
    # The failing verdict's values are the ones shown where both verdicts measured the same thing.
    assert worse(Verdict("successful", {"x": 0}, "ok"), failed).value == {"x": 1}


# -- the sequential judge across a restart -------------------------------------------------------------


def window(requests: int, errors: int, at: float, revision: str = "canary") -> Measurement:
    return Measurement(revision, start=at, end=at + 1.0, requests=requests, errors=errors)


def sequential_metric() -> Metric:
    return Metric.model_validate(
        {
            "name": "errors",
            "provider": {"builtin": {}},
            "judge": {"sequential": {"latency": False}},
        }
    )


@given(
    st.lists(st.tuples(st.integers(0, 300), st.integers(0, 30), st.integers(0, 30)), min_size=2, max_size=8),
    st.data(),
)
def test_a_restored_sequential_judge_goes_on_as_if_it_never_stopped(
    windows: list[tuple[int, int, int]], data: st.DataObject
) -> None:
    stop = data.draw(st.integers(1, len(windows) - 1))
    steady = MetricJudge(sequential_metric(), {})
    restarted = MetricJudge(sequential_metric(), {})
    assert restarted.concludes
    for i, (n, canary_errors, stable_errors) in enumerate(windows):
        canary = window(n, min(canary_errors, n), float(i))
        stable = window(n, min(stable_errors, n), float(i), "stable")
        if i == stop:
            saved = restarted.snapshot()
            assert saved is not None
            restarted = MetricJudge(sequential_metric(), {})
            restarted.restore(saved)
        a, b = steady.judge(canary, stable), restarted.judge(canary, stable)
        assert (a.phase, a.message) == (b.phase, b.message)
        assert a.value.get("outlook") == b.value.get("outlook")


def test_a_judge_without_sequential_state_keeps_none() -> None:
    judge = MetricJudge(query_metric("result < 1"), {})
    assert judge.snapshot() is None
    assert not judge.concludes
    judge.restore({"anything": 1})  # nothing to restore into: ignored
    assert judge.snapshot() is None


def test_summary_shows_what_a_window_measured() -> None:
    m = window(200, 3, 0.0)
    assert summary(m) == {"requests": 200, "errors": 3, "error_rate": 0.015}
    assert summary(window(0, 0, 0.0)) == {"requests": 0, "errors": 0}
