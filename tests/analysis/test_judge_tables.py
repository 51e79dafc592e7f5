"""The fixed-window judges and the sequential outlook as exact tables: whole verdicts, not substrings.

``test_judges.py`` states the rules with a substring of each message; mutation testing showed what that
leaves open (a boundary moved from ``<`` to ``<=``, a value key renamed, a message that names the wrong
revision, a floor dropped). These pin every verdict exactly: phase, value and message, at each boundary.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from gapless.analysis.errors import AnalysisError
from gapless.analysis.judges import (
    CompareToBaseline,
    Conditions,
    MemoryLeak,
    Threshold,
    _seconds,
    compare_to_baseline,
    conditions,
    memory_leak,
    threshold,
)
from gapless.analysis.outlook import Outlook, _failed, _successful, outlook, remaining_requests
from gapless.analysis.sequential import Evidence, SequentialConfig, SequentialState
from gapless.analysis.verdict import Verdict
from tests.analysis.test_judges import FAST, SLOW, SLOWER, rss_line, window


def verdict(v: Verdict) -> tuple[str, dict[str, Any], str]:
    return v.phase, dict(v.value), v.message


# -- compare_to_baseline ------------------------------------------------------------------------------

REQ = {"canary_requests": 1000, "baseline_requests": 1000}


def rates(canary: float, baseline: float, allowed: float) -> dict[str, float]:
    return {"canary_error_rate": canary, "baseline_error_rate": baseline, "allowed_error_rate": allowed}


@pytest.mark.parametrize(
    ("config", "canary", "baseline", "expected"),
    [
        # Too few requests in either revision: inconclusive, naming the fewest.
        (
            CompareToBaseline(),
            window(requests=99),
            window(requests=500),
            (
                "inconclusive",
                {"canary_requests": 99, "baseline_requests": 500},
                "99 requests in one revision; at least 100 each are needed",
            ),
        ),
        (
            CompareToBaseline(),
            window(requests=500),
            window(requests=99),
            (
                "inconclusive",
                {"canary_requests": 500, "baseline_requests": 99},
                "99 requests in one revision; at least 100 each are needed",
            ),
        ),
        # Exactly the minimum is enough.
        (
            CompareToBaseline(),
            window(requests=100),
            window(requests=100),
            (
                "successful",
                {"canary_requests": 100, "baseline_requests": 100} | rates(0.0, 0.0, 0.002),
                "no worse than the baseline",
            ),
        ),
        # Error rate: the floor lifts a clean baseline; exactly the allowed rate passes.
        (
            CompareToBaseline(),
            window(errors=2),
            window(),
            ("successful", REQ | rates(0.002, 0.0, 0.002), "no worse than the baseline"),
        ),
        (
            CompareToBaseline(),
            window(errors=3),
            window(),
            (
                "failed",
                REQ
                | rates(0.003, 0.0, 0.002)
                | {"failed_checks": ["error rate 0.30% > 2 x max(baseline 0.00%, floor 0.10%)"]},
                "error rate 0.30% > 2 x max(baseline 0.00%, floor 0.10%)",
            ),
        ),
        # Above the floor, the baseline's own rate counts.
        (
            CompareToBaseline(),
            window(errors=10),
            window(errors=5),
            ("successful", REQ | rates(0.01, 0.005, 0.01), "no worse than the baseline"),
        ),
        (
            CompareToBaseline(max_error_rate_ratio=1.5, error_rate_floor=0.01),
            window(errors=16),
            window(errors=5),
            (
                "failed",
                REQ
                | rates(0.016, 0.005, 0.015)
                | {"failed_checks": ["error rate 1.60% > 1.5 x max(baseline 0.50%, floor 1.00%)"]},
                "error rate 1.60% > 1.5 x max(baseline 0.50%, floor 1.00%)",
            ),
        ),
        # Error comparison off: nothing about errors in the value.
        (
            CompareToBaseline(max_error_rate_ratio=None),
            window(errors=900),
            window(),
            ("successful", REQ, "no worse than the baseline"),
        ),
        # Latency: exactly baseline + increase passes; more fails; a missing side names itself.
        (
            CompareToBaseline(max_error_rate_ratio=None, max_latency_increase_seconds=0.0),
            window(slow=SLOW),
            window(slow=SLOW, revision="stable"),
            (
                "successful",
                REQ | {"canary_latency": 0.4975, "baseline_latency": 0.4975},
                "no worse than the baseline",
            ),
        ),
        (
            CompareToBaseline(max_error_rate_ratio=None, max_latency_increase_seconds=0.1),
            window(slow=SLOWER),
            window(slow=SLOW, revision="stable"),
            (
                "failed",
                REQ
                | {
                    "canary_latency": 0.995,
                    "baseline_latency": 0.4975,
                    "failed_checks": ["p99 995 ms > baseline 498 ms + 100 ms"],
                },
                "p99 995 ms > baseline 498 ms + 100 ms",
            ),
        ),
        (
            CompareToBaseline(
                max_error_rate_ratio=None, max_latency_increase_seconds=0.1, latency_quantile=0.5
            ),
            window(slow=FAST),
            window(revision="stable"),
            (
                "error",
                REQ | {"canary_latency": 0.05, "baseline_latency": None},
                "no p50 latency for baseline",
            ),
        ),
        (
            CompareToBaseline(max_error_rate_ratio=None, max_latency_increase_seconds=0.1),
            window(),
            window(slow=FAST, revision="stable"),
            (
                "error",
                REQ | {"canary_latency": None, "baseline_latency": 0.099},
                "no p99 latency for canary",
            ),
        ),
        # Counters per request: exactly the fraction passes; below fails; missing names the side.
        (
            CompareToBaseline(max_error_rate_ratio=None, min_counter_ratios={"orders": 0.5}),
            window(counters={"orders": 50}),
            window(counters={"orders": 100}),
            (
                "successful",
                REQ | {"orders_per_request": {"canary": 0.05, "baseline": 0.1}},
                "no worse than the baseline",
            ),
        ),
        (
            CompareToBaseline(max_error_rate_ratio=None, min_counter_ratios={"orders": 0.5, "a": 1.0}),
            window(counters={"orders": 40, "a": 1}),
            window(counters={"orders": 100, "a": 2}),
            (
                "failed",
                REQ
                | {
                    "a_per_request": {"canary": 0.001, "baseline": 0.002},
                    "orders_per_request": {"canary": 0.04, "baseline": 0.1},
                    "failed_checks": [
                        "a per request 0.001 < 1 x baseline 0.002",
                        "orders per request 0.04 < 0.5 x baseline 0.1",
                    ],
                },
                "a per request 0.001 < 1 x baseline 0.002; orders per request 0.04 < 0.5 x baseline 0.1",
            ),
        ),
        (
            CompareToBaseline(max_error_rate_ratio=None, min_counter_ratios={"orders": 0.5}),
            window(counters={"orders": 40}),
            window(),
            ("error", REQ, "no counter 'orders' in the baseline"),
        ),
        # A missing measure outweighs a failure: the analysis is misconfigured.
        (
            CompareToBaseline(min_counter_ratios={"orders": 0.5}),
            window(errors=500),
            window(counters={"orders": 1}),
            ("error", REQ | rates(0.5, 0.0, 0.002), "no counter 'orders' in the canary"),
        ),
    ],
)
def test_compare_to_baseline_table(
    config: CompareToBaseline, canary: Any, baseline: Any, expected: Any
) -> None:
    assert verdict(compare_to_baseline(config, canary, baseline)) == expected


# -- threshold ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "canary", "expected"),
    [
        (Threshold(), window(requests=0), ("successful", {"requests": 0}, "within every limit")),
        (
            Threshold(max_error_rate=0.01),
            window(requests=100, errors=1),
            ("successful", {"requests": 100, "error_rate": 0.01}, "within every limit"),
        ),
        (
            Threshold(max_error_rate=0.01),
            window(requests=99),
            ("inconclusive", {"requests": 99}, "99 requests; at least 100 are needed"),
        ),
        (
            Threshold(max_p50_seconds=0.1, max_p95_seconds=1.0, max_cpu_cores=1.0),
            window(slow=SLOW),
            (
                "error",
                {"requests": 1000, "p50": 0.375, "p95": 0.4875, "cpu": None},
                "no CPU in the measurement",
            ),
        ),
        (
            Threshold(max_p50_seconds=0.1, max_rss_bytes=2**20),
            window(slow=SLOW, rss=[(0, 2**21)]),
            (
                "failed",
                {
                    "requests": 1000,
                    "p50": 0.375,
                    "peak_rss": 2**21,
                    "failed_checks": ["p50 375 ms > 100 ms", "peak RSS 2.0 MiB > 1.0 MiB"],
                },
                "p50 375 ms > 100 ms; peak RSS 2.0 MiB > 1.0 MiB",
            ),
        ),
        (
            Threshold(max_p99_seconds=0.9),
            window(slow=SLOWER),
            (
                "failed",
                {"requests": 1000, "p99": 0.995, "failed_checks": ["p99 995 ms > 900 ms"]},
                "p99 995 ms > 900 ms",
            ),
        ),
    ],
)
def test_threshold_table(config: Threshold, canary: Any, expected: Any) -> None:
    assert verdict(threshold(config, canary)) == expected


# -- memory_leak --------------------------------------------------------------------------------------


def test_memory_leak_needs_both_sample_count_and_duration_exactly() -> None:
    """10 samples over 300 s are enough (the defaults), 9 or 290 s are not, for either revision."""

    def samples(n: int, seconds: float) -> list[tuple[float, int]]:
        return [(seconds * i / (n - 1), 100 * 2**20) for i in range(n)]

    enough = samples(10, 300)
    short_count = samples(9, 300)
    short_time = samples(10, 290)
    v = memory_leak(MemoryLeak(), window(rss=enough), window(rss=enough))
    assert v.phase == "successful"
    v = memory_leak(MemoryLeak(), window(rss=short_count), window(rss=enough))
    assert verdict(v) == (
        "inconclusive",
        {},
        "canary RSS: 9 samples over 300 s; 10 samples over 300 s are needed",
    )
    v = memory_leak(MemoryLeak(), window(rss=enough), window(rss=short_time))
    assert verdict(v) == (
        "inconclusive",
        {},
        "baseline RSS: 10 samples over 290 s; 10 samples over 300 s are needed",
    )
    v = memory_leak(MemoryLeak(), window(rss=[]), window(rss=enough))
    assert verdict(v) == ("inconclusive", {}, "canary RSS: too few samples; 10 samples over 300 s are needed")


def test_memory_leak_values_and_messages() -> None:
    """The value carries both slopes, the excess over a growing baseline (never a shrinking one) and its error."""
    v = memory_leak(MemoryLeak(), window(rss=rss_line(5000)), window(rss=rss_line(1000)))
    assert v.phase == "failed"
    assert v.value["canary_slope"] == pytest.approx(5000, abs=1)
    assert v.value["baseline_slope"] == pytest.approx(1000, abs=1)
    assert v.value["excess_slope"] == pytest.approx(4000, abs=1)
    assert v.value["stderr"] == pytest.approx(0, abs=1)
    assert v.message == "canary RSS grows 4000 B/s faster than the baseline (± 0); tolerance 1024 B/s"
    v = memory_leak(MemoryLeak(), window(rss=rss_line(500)), window(rss=rss_line(-3000)))
    assert v.phase == "successful"
    assert v.value["excess_slope"] == pytest.approx(500, abs=1)
    assert v.message == "RSS growth 500 B/s over the baseline is within tolerance"


@pytest.mark.parametrize(("slope", "phase"), [(1023, "successful"), (1025, "failed")])
def test_memory_leak_tolerance_is_strict(slope: float, phase: str) -> None:
    """Without noise, growth just under the tolerance passes and just over fails."""
    line = [(float(t), int(100 * 2**30 + slope * t)) for t in range(0, 100_001, 10_000)]
    flat = [(float(t), 100 * 2**30) for t in range(0, 100_001, 10_000)]
    assert memory_leak(MemoryLeak(), window(rss=line), window(rss=flat)).phase == phase


def test_memory_leak_noise_margin_counts_standard_errors() -> None:
    """With noise, the margin is noise_z standard errors: 0 standard errors turns the same growth into a failure."""
    canary, baseline = rss_line(2000, noise=5 * 2**20), rss_line(0, noise=5 * 2**20)
    noisy = memory_leak(MemoryLeak(), window(rss=canary), window(rss=baseline))
    assert noisy.phase == "successful"
    assert noisy.value["stderr"] > 500
    bare = memory_leak(MemoryLeak(noise_z=0.0), window(rss=canary), window(rss=baseline))
    assert bare.phase == "failed"


# -- conditions ---------------------------------------------------------------------------------------


def test_conditions_values() -> None:
    """The canary's environment is the value of every verdict but an evaluation error's."""
    canary = window(errors=5)
    env = canary.env()
    ok = conditions(Conditions.parse("result.errors == 5"), canary)
    assert verdict(ok) == ("successful", {"result": env}, "success condition is true: result.errors == 5")
    bad = conditions(Conditions.parse(None, "result.errors > 1"), canary)
    assert verdict(bad) == ("failed", {"result": env}, "failure condition is true: result.errors > 1")
    off = conditions(Conditions.parse("result.errors > 9"), canary)
    assert verdict(off) == ("failed", {"result": env}, "success condition is false: result.errors > 9")
    fine = conditions(Conditions.parse(None, "result.errors > 9"), canary)
    assert verdict(fine) == ("successful", {"result": env}, "failure condition is false")
    err = conditions(Conditions.parse("result.nope > 1"), canary)
    assert err.phase == "error"
    assert err.value == {}


# -- outlook ------------------------------------------------------------------------------------------


def test_remaining_requests_table() -> None:
    assert remaining_requests(3.0, 3.0, 100) == 0.0
    assert remaining_requests(1.0, 3.0, 100) == 200.0
    assert remaining_requests(0.0, 3.0, 100) is None
    assert remaining_requests(1.0, 3.0, 0) is None
    assert remaining_requests(-1.0, 3.0, 100) is None


def test_outlook_to_json_rounds_and_names_every_field() -> None:
    o = Outlook(False, "failed", 1.23456, 3.98765, 120, 12.345, capped=True)
    assert o.to_json() == {
        "decided": False,
        "toward": "failed",
        "llr": 1.235,
        "bound": 3.988,
        "remainingRequests": 120,
        "remainingSeconds": 12.3,
        "capped": True,
    }
    assert Outlook(True, None, 0.0, 1.0, None, None).to_json() == {
        "decided": True,
        "toward": None,
        "llr": 0.0,
        "bound": 1.0,
        "remainingRequests": None,
        "remainingSeconds": None,
        "capped": False,
    }


def ev(toward: str, group: str, log_value: float, bound: float, test: str = "t") -> Evidence:
    return Evidence(test, toward, group, log_value, bound)  # type: ignore[arg-type]


def test_failure_direction_takes_the_nearest_test_and_the_first_of_a_tie() -> None:
    """Any failure test decides, so the one needing the fewest requests leads; ties keep the first listed."""
    a, b = ev("failed", "errors", 1.0, 4.0), ev("failed", "latency", 2.0, 4.0)
    assert _failed([a, b], 100) == (b, 100.0)
    tie_a, tie_b = ev("failed", "errors", 1.0, 3.0), ev("failed", "latency", 2.0, 6.0)
    assert _failed([tie_a, tie_b], 100) == (tie_a, 200.0)
    # No evidence to extrapolate: the relatively closest (log / bound), without an estimate.
    far, near = ev("failed", "errors", -1.0, 4.0), ev("failed", "latency", -1.0, 2.0)
    assert _failed([near, far], 100) == (far, None)


def test_healthy_direction_waits_for_the_slowest_group_by_its_best_test() -> None:
    e1, e2 = ev("successful", "errors", 1.0, 4.0), ev("successful", "errors", 2.0, 4.0, "floor")
    lat = ev("successful", "latency", 0.5, 3.0)
    assert _successful([e1, e2, lat], 100) == (lat, 500.0)
    # The slowest group is the first listed here: a key that ignores the estimate would still pass above.
    slow = ev("successful", "errors", 0.1, 4.0)
    quick = ev("successful", "latency", 2.0, 3.0)
    assert _successful([slow, quick], 100) == (slow, 3900.0)
    # Two groups with the same estimate: the first one.
    x, y = ev("successful", "errors", 1.0, 3.0), ev("successful", "latency", 2.0, 6.0)
    assert _successful([x, y], 100) == (x, 200.0)
    # A group with no evidence yet: no estimate, and that group is shown.
    none_yet = ev("successful", "latency", 0.0, 3.0)
    assert _successful([e1, e2, none_yet], 100) == (none_yet, None)
    # Several groups without evidence: the relatively farthest; inside one, its relatively closest test.
    g1, g2 = ev("successful", "errors", -1.0, 2.0), ev("successful", "latency", -1.0, 4.0)
    assert _successful([g1, g2], 100) == (g1, None)
    m1, m2 = ev("successful", "errors", -1.0, 2.0), ev("successful", "errors", -1.0, 4.0, "floor")
    assert _successful([m1, m2], 100) == (m2, None)


CONFIG = SequentialConfig(latency=False)
"""Errors only: one failure test and two healthy ones (ratio and floor) in one group."""


def crafted(requests: int, failed: float, healthy: float, floor: float, **kw: Any) -> SequentialState:
    """A state whose tests hold exactly these log e-values (every alternative the same value)."""
    start = SequentialState.start(replace(CONFIG, **kw))
    n = len(start.errors_failed)
    return replace(
        start,
        canary_requests=requests,
        errors_failed=(failed,) * n,
        errors_healthy=(healthy,) * n,
        errors_floor=(floor,) * n,
    )


FAIL_BOUND = math.log(1 / 0.05)
OK_BOUND = math.log(2 / 0.05)


def test_outlook_of_a_decided_test_shows_the_deciding_side() -> None:
    state = crafted(100, 1.0, 2.0, 0.5)
    ok = outlook(replace(state, decision="successful"))
    assert ok == Outlook(True, "successful", pytest.approx(2.0), pytest.approx(OK_BOUND), 0, 0.0)  # type: ignore[arg-type]
    bad = outlook(replace(state, decision="failed"))
    assert bad == Outlook(True, "failed", pytest.approx(1.0), pytest.approx(FAIL_BOUND), 0, 0.0)  # type: ignore[arg-type]
    ended = outlook(replace(state, decision="inconclusive"))
    assert ended == Outlook(True, None, pytest.approx(1.0), pytest.approx(FAIL_BOUND), 0, 0.0)  # type: ignore[arg-type]


def test_outlook_picks_the_direction_expected_sooner_and_failure_on_a_tie() -> None:
    # failure needs 100 * (B - 1) / 1; healthy (best of ratio and floor) needs 100 * (B' - h) / h.
    toward_fail = outlook(crafted(100, 1.5, 0.2, 0.1))
    assert toward_fail.toward == "failed"
    assert toward_fail.remaining_requests == math.ceil(100 * (FAIL_BOUND - 1.5) / 1.5)
    toward_ok = outlook(crafted(100, 0.1, 3.0, 0.2), canary_requests_per_second=0.5)
    assert toward_ok.toward == "successful"
    assert toward_ok.llr == pytest.approx(3.0)
    assert toward_ok.remaining_requests == math.ceil(100 * (OK_BOUND - 3.0) / 3.0)
    assert toward_ok.remaining_seconds == toward_ok.remaining_requests / 0.5
    assert not toward_ok.capped
    # The same estimate both ways: failure is shown (the cautious reading).
    h = OK_BOUND * 1.0 / FAIL_BOUND
    tie = outlook(crafted(100, 1.0, h, 0.0))
    assert tie.toward == "failed"


def test_outlook_without_anything_to_extrapolate() -> None:
    """No requests yet: no estimate; the direction is shown only once some evidence points there."""
    leaning = outlook(crafted(0, 0.5, 0.0, 0.0))
    assert (leaning.toward, leaning.remaining_requests, leaning.llr) == ("failed", None, 0.5)
    flat = outlook(crafted(0, 0.0, 0.0, 0.0))
    assert (flat.toward, flat.remaining_requests) == (None, None)
    healthy = outlook(crafted(0, 0.0, 0.0, 0.7))
    assert (healthy.toward, healthy.llr) == ("successful", 0.7)


def test_the_cap_applies_only_when_it_comes_first() -> None:
    need = 100 * (FAIL_BOUND - 1.5) / 1.5
    at = outlook(crafted(100, 1.5, 0.0, 0.0, max_canary_requests=100 + math.ceil(need)))
    assert not at.capped
    assert at.remaining_requests == math.ceil(need)
    before = outlook(crafted(100, 1.5, 0.0, 0.0, max_canary_requests=110))
    assert (before.capped, before.remaining_requests) == (True, 10)
    past = outlook(crafted(100, 0.0, 0.0, 0.0, max_canary_requests=50))
    assert (past.capped, past.remaining_requests) == (True, 0)


def test_small_print() -> None:
    """Units switch at 10 s; messages of several missing measures are all kept, in order."""
    assert (_seconds(9.5), _seconds(10.0), _seconds(12.25)) == ("9500 ms", "10.0 s", "12.2 s")
    v = threshold(Threshold(max_p99_seconds=1.0, max_cpu_cores=1.0), window())
    assert verdict(v) == (
        "error",
        {"requests": 1000, "p99": None, "cpu": None},
        "no p99 in the measurement; no CPU in the measurement",
    )
    with pytest.raises(AnalysisError) as caught:
        Conditions()
    assert str(caught.value) == "conditions need a success condition, a failure condition or both"
    both = Conditions.parse("result.errors < 1", "result.errors > 9")
    canary = window(errors=5)
    assert verdict(conditions(both, canary)) == (
        "inconclusive",
        {"result": canary.env()},
        "neither the success nor the failure condition is true",
    )


def test_a_missing_counter_does_not_stop_the_next_ones_being_checked() -> None:
    config = CompareToBaseline(max_error_rate_ratio=None, min_counter_ratios={"a": 1.0, "orders": 0.5})
    v = compare_to_baseline(config, window(counters={"orders": 40}), window(counters={"orders": 100}))
    assert verdict(v) == (
        "error",
        REQ | {"orders_per_request": {"canary": 0.04, "baseline": 0.1}},
        "no counter 'a' in the canary",
    )


def test_memory_leak_error_combines_both_revisions_noise() -> None:
    canary, baseline = window(rss=rss_line(0, noise=2**20)), window(rss=rss_line(0, noise=4 * 2**20))
    c, b = canary.rss_trend(), baseline.rss_trend()
    assert c is not None
    assert b is not None
    assert 0 < c.stderr < b.stderr
    v = memory_leak(MemoryLeak(), canary, baseline)
    assert v.value["stderr"] == pytest.approx(math.hypot(c.stderr, b.stderr))


def test_memory_leak_exactly_at_the_tolerance_passes() -> None:
    line = [(float(t), 2**30 + 1024 * t) for t in range(0, 1001, 100)]
    flat = [(float(t), 2**30) for t in range(0, 1001, 100)]
    v = memory_leak(MemoryLeak(), window(rss=line), window(rss=flat))
    assert v.value["excess_slope"] == 1024.0
    assert v.value["stderr"] == 0.0
    assert v.phase == "successful"


def test_outlook_small_print() -> None:
    """Ties inside a group keep the first test; a reached group needs 0; the cap's boundary; capped is a bool."""
    a, b = ev("successful", "errors", 1.0, 3.0), ev("successful", "errors", 2.0, 6.0, "floor")
    assert _successful([a, b], 100) == (a, 200.0)
    done, near = ev("successful", "errors", 3.0, 3.0), ev("successful", "latency", 2.0, 2.01)
    shown, need = _successful([done, near], 100)
    assert shown == near
    assert need == pytest.approx(0.5)
    # Nothing to extrapolate: the relatively closer direction (log / bound), not the larger product.
    lean = outlook(crafted(0, 0.5, 0.0, 0.55))
    assert (lean.toward, lean.llr) == ("failed", 0.5)
    exact = outlook(crafted(100, FAIL_BOUND / 2, 0.0, 0.0, max_canary_requests=200))
    assert exact.remaining_requests == 100
    assert exact.capped is False
    assert outlook(crafted(100, 1.0, 0.0, 0.0)).capped is False
