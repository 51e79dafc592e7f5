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
4. Each built-in judge gets the canary's and the baseline's windows, and the verdict shows both; a
   memory-leak judge sees every window since the run began; a judge and conditions give the worse.
5. A sequential judge's outlook estimates time from the window's canary request rate.
6. A sequential judge's state survives ``snapshot`` / ``restore``: a judge restored mid-run gives the
   same verdicts afterwards as one that never stopped.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gapless.analysis.from_spec import judge_config
from gapless.analysis.measurements import Measurement, ResourceSample
from gapless.analysis.metric_judge import MetricJudge, summary, worse
from gapless.analysis.outlook import outlook
from gapless.analysis.sequential import SequentialConfig, SequentialState, update
from gapless.analysis.sequential import verdict as sequential_verdict
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


# -- judge(): each built-in judge on a window, and what it carries across windows ----------------------


def judged_metric(judge: dict[str, Any], provider: str = "builtin", **more: Any) -> Metric:
    return Metric.model_validate({"name": "m", "provider": {provider: {}}, "judge": judge} | more)


def test_a_threshold_judges_the_canarys_window_and_shows_both() -> None:
    judge = MetricJudge(judged_metric({"threshold": {"maxErrorRate": 0.05, "minRequests": 10}}), {})
    canary, stable = window(100, 10, 0.0), window(100, 0, 0.0, "stable")
    verdict = judge.judge(canary, stable)
    assert verdict.phase == "failed"
    assert verdict.value["canary"] == summary(canary)
    assert verdict.value["baseline"] == summary(stable)
    assert judge.judge(window(100, 1, 1.0), stable).phase == "successful"


def test_compare_to_baseline_judges_the_canary_against_the_baselines_same_window() -> None:
    judge = MetricJudge(
        judged_metric({"compareToBaseline": {"maxErrorRateRatio": 2.0, "minRequests": 10}}), {}
    )
    assert judge.judge(window(100, 10, 0.0), window(100, 1, 0.0, "stable")).phase == "failed"
    assert judge.judge(window(100, 10, 1.0), window(100, 10, 1.0, "stable")).phase == "successful"


def rss_window(at: float, rss: int, revision: str) -> Measurement:
    return Measurement(revision, start=at, end=at + 1.0, resources=(ResourceSample(at, rss),))


def test_a_memory_leak_is_judged_over_every_window_since_the_run_began() -> None:
    """One sample per window: only the run's samples together show the canary's growth."""
    metric = judged_metric(
        {"memoryLeak": {"toleranceBytesPerSecond": 1024, "minSamples": 4, "minDurationSeconds": 3}},
        provider="resource",
    )
    judge = MetricJudge(metric, {})
    phases = []
    for i in range(6):
        canary = rss_window(float(i), 50_000_000 + 100_000 * i, "canary")
        stable = rss_window(float(i), 50_000_000, "stable")
        phases.append(judge.judge(canary, stable).phase)
    assert phases[:3] == ["inconclusive"] * 3
    assert phases[3:] == ["failed"] * 3
    steady = MetricJudge(metric, {})
    last = [
        steady.judge(rss_window(float(i), 50_000_000, "canary"), rss_window(float(i), 50_000_000, "stable"))
        for i in range(6)
    ][-1]
    assert last.phase == "successful"


def test_a_judge_and_conditions_together_give_the_worse_verdict() -> None:
    metric = judged_metric(
        {"threshold": {"maxErrorRate": 0.5, "minRequests": 10}}, successCondition="result.requests >= 1000"
    )
    judge = MetricJudge(metric, {})
    verdict = judge.judge(window(100, 1, 0.0), window(100, 1, 0.0, "stable"))
    assert verdict.phase == "failed"  # the threshold passes, the condition fails
    assert verdict.message.startswith("success condition is false")
    # And the other way round: the judge fails, the condition passes.
    verdict = judge.judge(window(1000, 900, 1.0), window(1000, 1, 1.0, "stable"))
    assert verdict.phase == "failed"
    assert verdict.message == "error rate 90.00% > 50.00%"  # a passing condition adds nothing to it


def test_conditions_alone_judge_a_window() -> None:
    metric = Metric.model_validate(
        {"name": "m", "provider": {"builtin": {}}, "failureCondition": "result.error_rate > 0.1"}
    )
    judge = MetricJudge(metric, {})
    assert judge.judge(window(100, 20, 0.0), window(100, 0, 0.0, "stable")).phase == "failed"
    assert judge.judge(window(100, 1, 1.0), window(100, 0, 1.0, "stable")).phase == "successful"


def test_a_sequential_judges_outlook_uses_the_windows_request_rate() -> None:
    """The outlook's time estimate is the requests still needed at this window's canary rate."""
    metric = sequential_metric()
    judge = MetricJudge(metric, {})
    config = judge_config(metric.judge) if metric.judge is not None else None
    assert isinstance(config, SequentialConfig)
    state = SequentialState.start(config)
    for i in range(3):
        at = 10.0 * (i + 1)
        canary = Measurement("canary", start=at, end=at + 2.0, requests=200, errors=6)
        stable = Measurement("stable", start=at, end=at + 2.0, requests=200, errors=2)
        verdict = judge.judge(canary, stable)
        state = update(state, canary, stable)
        expected = sequential_verdict(state)
        assert (verdict.phase, verdict.message) == (expected.phase, expected.message)
        assert verdict.value["outlook"] == outlook(state, 100.0).to_json()  # 200 requests in 2 s
    assert verdict.value["outlook"]["remainingSeconds"] is not None
    # A window shorter than a second has its own rate; an empty span has none (no time estimate).
    short = Measurement("canary", start=40.0, end=40.5, requests=50, errors=2)
    base = Measurement("stable", start=40.0, end=40.5, requests=50, errors=1)
    verdict, state = judge.judge(short, base), update(state, short, base)
    assert verdict.value["outlook"] == outlook(state, 100.0).to_json()
    instant = Measurement("canary", start=41.0, end=41.0, requests=10, errors=0)
    verdict, state = judge.judge(instant, instant), update(state, instant, instant)
    assert verdict.value["outlook"] == outlook(state, None).to_json()


def test_summary_shows_latency_counters_and_resources_rounded() -> None:
    m = Measurement(
        "canary",
        start=0.0,
        end=10.0,
        requests=3,
        errors=1,
        latency_samples=(0.0012345678, 0.0023456789, 0.0034567891),
        counters={"orders": 2.123456789},
        resources=(
            ResourceSample(0.0, 1_000_000, cpu_seconds=1.0, open_files=7),
            ResourceSample(4.0, 1_000_401, cpu_seconds=1.5, open_files=9),
            ResourceSample(8.0, 1_000_803, cpu_seconds=2.123456, open_files=None),
        ),
    )
    out = summary(m)
    assert out["requests"] == 3
    assert out["errors"] == 1
    assert out["error_rate"] == round(1 / 3, 6)
    for name, q in (("p50", m.p50), ("p95", m.p95), ("p99", m.p99)):
        assert q is not None
        assert out[name] == round(q, 6)
    assert out["counters"] == {"orders": 2.123457}
    assert out["rss_bytes"] == 1_000_803
    assert "open_files" not in out  # the last sample has none
    assert out["cpu_cores"] == round((2.123456 - 1.0) / 8.0, 4)
    assert out["rss_slope_bytes_per_second"] == 100.375  # (803 B over 8 s, least squares)
    with_files = Measurement("canary", 0.0, 1.0, resources=(ResourceSample(0.0, 5, open_files=3),))
    assert summary(with_files) == {"requests": 0, "errors": 0, "rss_bytes": 5, "open_files": 3}


def test_conditions_see_the_baselines_window() -> None:
    metric = judged_metric(
        {"threshold": {"maxErrorRate": 0.9, "minRequests": 1}},
        failureCondition="result.errors > baseline.errors",
    )
    judge = MetricJudge(metric, {})
    assert judge.judge(window(100, 5, 0.0), window(100, 1, 0.0, "stable")).phase == "failed"
    assert judge.judge(window(100, 5, 1.0), window(100, 9, 1.0, "stable")).phase == "successful"


def test_a_metric_with_neither_judge_nor_condition_is_an_error_not_a_pass() -> None:
    metric = judged_metric({"threshold": {"maxErrorRate": 0.5}}).model_copy(update={"judge": None})
    verdict = MetricJudge(metric, {}).judge(window(10, 0, 0.0), window(10, 0, 0.0, "stable"))
    assert (verdict.phase, verdict.message) == ("error", "the metric has neither a judge nor a condition")


def test_a_condition_that_fails_to_evaluate_shows_the_reason() -> None:
    verdict = MetricJudge(query_metric("result[5] < 1"), {}).judge_value([1.0])
    assert verdict.message != "None"
    assert "5" in verdict.message
