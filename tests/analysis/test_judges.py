"""Fixed-window judges as tables: thresholds, comparison with the baseline, memory leaks, conditions."""

from __future__ import annotations

import pytest

from gapless.analysis.errors import AnalysisError, ExpressionError
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
from gapless.analysis.measurements import LatencyHistogram, Measurement, ResourceSample

BOUNDS = (0.1, 0.25, 0.5, 1.0)


def window(
    requests: int = 1000,
    errors: int = 0,
    slow: tuple[int, int, int, int, int] | None = None,
    counters: dict[str, float] | None = None,
    rss: list[tuple[float, int]] | None = None,
    revision: str = "canary",
) -> Measurement:
    """A 60 s window; ``slow`` is per-bucket latency counts over BOUNDS (+Inf last)."""
    return Measurement(
        revision=revision,
        start=0,
        end=60,
        requests=requests,
        errors=errors,
        latency=LatencyHistogram(BOUNDS, slow) if slow else None,
        counters=counters or {},
        resources=tuple(ResourceSample(at=t, rss_bytes=b) for t, b in rss or []),
    )


FAST = (1000, 0, 0, 0, 0)  # p99 = 99 ms
SLOW = (0, 0, 1000, 0, 0)  # p99 in the 250-500 ms bucket (497.5 ms)
SLOWER = (0, 0, 0, 1000, 0)  # p99 995 ms


@pytest.mark.parametrize(
    ("config", "canary", "phase", "message"),
    [
        (Threshold(max_error_rate=0.01), window(errors=5), "successful", "within every limit"),
        (Threshold(max_error_rate=0.01), window(errors=10), "successful", "within every limit"),
        (Threshold(max_error_rate=0.01), window(errors=11), "failed", "error rate 1.10% > 1.00%"),
        (
            Threshold(max_error_rate=0.01),
            window(requests=99, errors=50),
            "inconclusive",
            "99 requests; at least 100",
        ),
        (Threshold(max_error_rate=0.01, min_requests=10), window(requests=99), "successful", ""),
        (Threshold(max_p99_seconds=0.5), window(slow=FAST), "successful", ""),
        (Threshold(max_p99_seconds=0.5), window(slow=SLOW), "successful", ""),
        (Threshold(max_p99_seconds=0.5), window(slow=SLOWER), "failed", "p99 995 ms > 500 ms"),
        (
            Threshold(max_p50_seconds=0.2, max_p95_seconds=0.2),
            window(slow=SLOW),
            "failed",
            "p50 375 ms > 200 ms; p95",
        ),
        (Threshold(max_p99_seconds=0.5), window(), "error", "no p99 in the measurement"),
        (
            Threshold(max_error_rate=0.01, max_p99_seconds=0.5),
            window(errors=20, slow=SLOWER),
            "failed",
            "error rate 2.00% > 1.00%; p99 995 ms > 500 ms",
        ),
        (Threshold(max_rss_bytes=2**20), window(requests=0, rss=[(0, 2**20)]), "successful", ""),
        (
            Threshold(max_rss_bytes=2**20),
            window(requests=0, rss=[(0, 2**21)]),
            "failed",
            "peak RSS 2.0 MiB > 1.0 MiB",
        ),
        (Threshold(max_cpu_cores=1.0), window(requests=0), "error", "no CPU"),
        (Threshold(), window(requests=0), "successful", ""),
    ],
)
def test_threshold(config: Threshold, canary: Measurement, phase: str, message: str) -> None:
    """Absolute limits fail when exceeded, need a minimum sample, and a missing metric is an error."""
    verdict = threshold(config, canary)
    assert verdict.phase == phase
    assert message in verdict.message


@pytest.mark.parametrize(
    ("config", "canary", "baseline", "phase", "message"),
    [
        (CompareToBaseline(), window(errors=10), window(errors=10), "successful", "no worse"),
        (CompareToBaseline(), window(errors=20), window(errors=10), "successful", ""),
        (CompareToBaseline(), window(errors=21), window(errors=10), "failed", "error rate 2.10% > 2 x"),
        # The floor: 0.2% against 0% is within 2 x max(0%, 0.1%).
        (CompareToBaseline(), window(errors=2), window(errors=0), "successful", ""),
        (CompareToBaseline(), window(errors=3), window(errors=0), "failed", "floor 0.10%"),
        (CompareToBaseline(error_rate_floor=0.01), window(errors=15), window(errors=0), "successful", ""),
        (CompareToBaseline(), window(requests=50), window(), "inconclusive", "50 requests"),
        (
            CompareToBaseline(),
            window(),
            window(requests=50, revision="stable"),
            "inconclusive",
            "50 requests",
        ),
        (
            CompareToBaseline(max_error_rate_ratio=None, max_latency_increase_seconds=0.1),
            window(slow=SLOW),
            window(slow=SLOW),
            "successful",
            "",
        ),
        (
            CompareToBaseline(max_error_rate_ratio=None, max_latency_increase_seconds=0.1),
            window(slow=SLOWER),
            window(slow=SLOW),
            "failed",
            "p99 995 ms > baseline 498 ms + 100 ms",
        ),
        (
            CompareToBaseline(max_latency_increase_seconds=0.1, latency_quantile=0.5),
            window(slow=SLOW),
            window(slow=FAST),
            "failed",
            "p50 375 ms > baseline 50 ms",
        ),
        (
            CompareToBaseline(max_latency_increase_seconds=0.1),
            window(),
            window(slow=FAST),
            "error",
            "no p99 latency for canary",
        ),
        (
            CompareToBaseline(min_counter_ratios={"orders": 0.8}),
            window(counters={"orders": 41}),
            window(counters={"orders": 50}),
            "successful",
            "",
        ),
        (
            CompareToBaseline(min_counter_ratios={"orders": 0.8}),
            window(counters={"orders": 39}),
            window(counters={"orders": 50}),
            "failed",
            "orders per request 0.039 < 0.8 x baseline 0.05",
        ),
        (
            CompareToBaseline(min_counter_ratios={"orders": 0.8}),
            window(counters={"orders": 0}),
            window(counters={"orders": 0}),
            "successful",
            "",
        ),
        (
            CompareToBaseline(min_counter_ratios={"orders": 0.8}),
            window(),
            window(counters={"orders": 50}),
            "error",
            "no counter 'orders' in the canary",
        ),
    ],
)
def test_compare_to_baseline(
    config: CompareToBaseline, canary: Measurement, baseline: Measurement, phase: str, message: str
) -> None:
    """The canary fails only when worse than the same window's baseline by the configured amount."""
    verdict = compare_to_baseline(config, canary, baseline)
    assert verdict.phase == phase
    assert message in verdict.message


def rss_line(slope: float, noise: int = 0, seconds: int = 600, step: int = 10) -> list[tuple[float, int]]:
    """RSS samples growing by ``slope`` B/s with an alternating +-``noise`` sawtooth."""
    return [
        (t, int(100 * 2**20 + slope * t + (noise if (t // step) % 2 else -noise)))
        for t in range(0, seconds + 1, step)
    ]


@pytest.mark.parametrize(
    ("config", "canary_rss", "baseline_rss", "phase", "message"),
    [
        (MemoryLeak(), rss_line(0), rss_line(0), "successful", "within tolerance"),
        (MemoryLeak(), rss_line(5000), rss_line(0), "failed", "grows 5000 B/s faster"),
        (MemoryLeak(), rss_line(5000), rss_line(4500), "successful", ""),
        (MemoryLeak(), rss_line(900), rss_line(0), "successful", ""),
        # A shrinking baseline does not count against a flat canary.
        (MemoryLeak(), rss_line(0), rss_line(-5000), "successful", ""),
        # Heavy sawtooth: 3 KB/s is inside the noise, 30 KB/s is not.
        (MemoryLeak(), rss_line(3000, noise=5 * 2**20), rss_line(0, noise=5 * 2**20), "successful", ""),
        (MemoryLeak(), rss_line(30000, noise=5 * 2**20), rss_line(0, noise=5 * 2**20), "failed", ""),
        (
            MemoryLeak(),
            rss_line(5000, seconds=120),
            rss_line(0),
            "inconclusive",
            "canary RSS: 13 samples over 120 s",
        ),
        (MemoryLeak(), rss_line(5000), [], "inconclusive", "baseline RSS: too few samples"),
    ],
)
def test_memory_leak(
    config: MemoryLeak,
    canary_rss: list[tuple[float, int]],
    baseline_rss: list[tuple[float, int]],
    phase: str,
    message: str,
) -> None:
    """A leak is the canary's RSS slope beyond the baseline's by more than tolerance and noise."""
    verdict = memory_leak(config, window(rss=canary_rss), window(rss=baseline_rss, revision="stable"))
    assert verdict.phase == phase
    assert message in verdict.message


@pytest.mark.parametrize(
    ("success", "failure", "canary", "phase", "message"),
    [
        ("result.error_rate < 0.01", None, window(errors=5), "successful", "success condition is true"),
        ("result.error_rate < 0.01", None, window(errors=50), "failed", "success condition is false"),
        (None, "result.error_rate > 0.02", window(errors=50), "failed", "failure condition is true"),
        (None, "result.error_rate > 0.02", window(errors=5), "successful", "failure condition is false"),
        (
            "result.error_rate < 0.01",
            "result.error_rate > 0.02",
            window(errors=15),
            "inconclusive",
            "neither",
        ),
        ("result.error_rate < 0.01", "result.error_rate > 0.02", window(errors=5), "successful", ""),
        ("result.error_rate < 0.01", "result.error_rate > 0.02", window(errors=50), "failed", ""),
        ("result.error_rate <= args.max", None, window(errors=10), "successful", ""),
        ("result.errors <= baseline.errors * 2", None, window(errors=30), "failed", ""),
        ("result.p99 < 0.5", None, window(), "error", "cannot compare null with number 0.5"),
        ("result.counters.orders > 0", None, window(), "error", "no key 'orders'"),
        ("default(result.counters.orders, 0) == 0", None, window(), "successful", ""),
        ("result.requests", None, window(), "error", "must be true or false"),
    ],
)
def test_conditions(
    success: str | None, failure: str | None, canary: Measurement, phase: str, message: str
) -> None:
    """Success and failure conditions follow Argo Rollouts' rules; evaluation problems are errors."""
    config = Conditions.parse(success, failure, args={"max": 0.01})
    verdict = conditions(config, canary, window(errors=10, revision="stable"))
    assert verdict.phase == phase
    assert message in verdict.message


def test_conditions_without_a_baseline_cannot_read_it() -> None:
    """Without a baseline measurement, `baseline` is an unknown name."""
    verdict = conditions(Conditions.parse("baseline.errors == 0"), window())
    assert verdict.phase == "error"
    assert "unknown name 'baseline'" in verdict.message


def test_conditions_need_at_least_one_and_must_parse() -> None:
    """A config with no condition, or one that does not parse, is refused when built."""
    with pytest.raises(AnalysisError, match="need a success condition"):
        Conditions()
    with pytest.raises(ExpressionError):
        Conditions.parse("result.error_rate <")


def test_verdict_values_report_what_was_judged() -> None:
    """A verdict carries the observed values it rests on, including which checks failed."""
    verdict = threshold(Threshold(max_error_rate=0.01, max_p99_seconds=0.5), window(errors=20, slow=FAST))
    assert verdict.value == {
        "requests": 1000,
        "error_rate": 0.02,
        "p99": pytest.approx(0.099),
        "failed_checks": ["error rate 2.00% > 1.00%"],
    }
