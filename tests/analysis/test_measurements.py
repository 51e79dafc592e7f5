"""Measurements: histogram quantiles as Prometheus computes them, slow counts, RSS trends, merging."""

from __future__ import annotations

import math

import pytest

from gapless.analysis.errors import AnalysisError
from gapless.analysis.measurements import LatencyHistogram, Measurement, ResourceSample, least_squares

BOUNDS = (0.1, 0.2, 0.5)


@pytest.mark.parametrize(
    ("counts", "q", "expected"),
    [
        ((100, 0, 0, 0), 0.5, 0.05),  # first bucket interpolates from 0
        ((50, 50, 0, 0), 0.5, 0.1),
        ((50, 50, 0, 0), 0.75, 0.15),
        ((0, 0, 10, 0), 0.5, 0.35),
        ((90, 0, 0, 10), 0.99, 0.5),  # the +Inf bucket reports the highest finite bound
        ((90, 0, 0, 10), 0.9, 0.1),
        ((0, 0, 0, 0), 0.5, None),
    ],
)
def test_histogram_quantile(counts: tuple[int, ...], q: float, expected: float | None) -> None:
    """Quantiles interpolate linearly inside their bucket like histogram_quantile."""
    value = LatencyHistogram(BOUNDS, counts).quantile(q)
    assert value == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("bounds", "counts", "message"),
    [
        ((0.1, 0.2), (1, 2), "needs 3 counts"),
        ((0.2, 0.1), (1, 2, 3), "must increase"),
        ((0.1, math.inf), (1, 2, 3), "finite"),
        ((0.1,), (1, -1), "negative"),
    ],
)
def test_histogram_rejects_inconsistent_shapes(
    bounds: tuple[float, ...], counts: tuple[int, ...], message: str
) -> None:
    """A histogram whose bounds and counts do not fit together is refused when built."""
    with pytest.raises(AnalysisError, match=message):
        LatencyHistogram(bounds, counts)


def test_histogram_counts_above_a_bound_only() -> None:
    """Slow counts are exact at bucket bounds and refused elsewhere."""
    histogram = LatencyHistogram.from_samples(BOUNDS, [0.05, 0.1, 0.15, 0.3, 0.7, 2.0])
    assert histogram.counts == (2, 1, 1, 2)
    assert [histogram.count_above(b) for b in BOUNDS] == [4, 3, 2]
    with pytest.raises(AnalysisError, match="not a bucket bound"):
        histogram.count_above(0.3)
    assert histogram.bound_at_or_above(0.15) == 0.2
    assert histogram.bound_at_or_above(9.0) == 0.5


def test_histograms_add_only_with_equal_bounds() -> None:
    """Windows add bucket by bucket, and different bucket layouts are an error."""
    a = LatencyHistogram(BOUNDS, (1, 2, 3, 4))
    assert a.plus(a).counts == (2, 4, 6, 8)
    with pytest.raises(AnalysisError, match="different bucket bounds"):
        a.plus(LatencyHistogram((0.1,), (1, 1)))


@pytest.mark.parametrize(
    ("measurement", "p50", "p99"),
    [
        (Measurement("c", 0, 60, latency_samples=(0.1, 0.2, 0.3, 0.4, 0.5)), 0.3, pytest.approx(0.496)),
        (
            Measurement("c", 0, 60, latency=LatencyHistogram(BOUNDS, (50, 50, 0, 0))),
            0.1,
            pytest.approx(0.198),
        ),
        (Measurement("c", 0, 60, percentiles={0.99: 0.8}, latency_samples=(0.1,)), 0.1, 0.8),
        (Measurement("c", 0, 60), None, None),
    ],
)
def test_measurement_quantiles_prefer_reported_then_histogram_then_samples(
    measurement: Measurement, p50: float | None, p99: object
) -> None:
    """Reported percentiles win, then the histogram, then raw samples; no data gives None."""
    assert measurement.p50 == p50
    assert measurement.p99 == p99


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"requests": 5, "errors": 6}, "6 errors out of 5"),
        ({"requests": -1}, "negative"),
        ({"start": 10, "end": 5}, "ends before"),
        ({"percentiles": {99: 0.5}}, "between 0 and 1"),
    ],
)
def test_measurement_rejects_impossible_windows(kwargs: dict[str, object], message: str) -> None:
    """Impossible counts or windows are refused when the measurement is built."""
    fields: dict[str, object] = {"revision": "c", "start": 0, "end": 60} | kwargs
    with pytest.raises(AnalysisError, match=message):
        Measurement(**fields)  # type: ignore[arg-type]


def test_error_rate_is_none_without_requests() -> None:
    """0 errors of 0 requests is no evidence, so the rate is None rather than 0."""
    assert Measurement("c", 0, 60).error_rate is None
    assert Measurement("c", 0, 60, requests=200, errors=3).error_rate == 0.015


def test_least_squares_recovers_slope_and_error() -> None:
    """A straight line gives its slope with zero error; too few points give None."""
    trend = least_squares([(t, 100 + 5 * t) for t in range(10)])
    assert trend is not None
    assert trend.slope == pytest.approx(5)
    assert trend.stderr == pytest.approx(0, abs=1e-9)
    assert trend.duration == 9
    assert least_squares([(0, 1), (1, 2)]) is None
    assert least_squares([(1, 1), (1, 2), (1, 3)]) is None


def test_resources_give_peak_rss_trend_and_cpu() -> None:
    """RSS samples give the peak and growth; cumulative CPU time gives average cores."""
    m = Measurement(
        "c",
        0,
        60,
        resources=tuple(
            ResourceSample(at=t, rss_bytes=1000 + 10 * t, cpu_seconds=0.5 * t) for t in range(0, 61, 10)
        ),
    )
    assert m.peak_rss_bytes == 1600
    trend = m.rss_trend()
    assert trend is not None
    assert trend.slope == pytest.approx(10)
    assert m.cpu_cores == pytest.approx(0.5)
    assert Measurement("c", 0, 60).cpu_cores is None


def test_merge_adds_counts_and_drops_reported_percentiles() -> None:
    """Merging windows adds requests, errors, buckets and counters and spans both windows."""
    a = Measurement("c", 0, 60, 100, 1, LatencyHistogram(BOUNDS, (1, 2, 3, 4)), counters={"orders": 5})
    b = Measurement(
        "c", 60, 120, 50, 2, LatencyHistogram(BOUNDS, (1, 1, 1, 1)), counters={"orders": 1, "x": 2}
    )
    merged = a.merge(b)
    assert (merged.start, merged.end, merged.requests, merged.errors) == (0, 120, 150, 3)
    assert merged.latency == LatencyHistogram(BOUNDS, (2, 3, 4, 5))
    assert merged.counters == {"orders": 6, "x": 2}
    with pytest.raises(AnalysisError, match="histogram window with a samples window"):
        a.merge(Measurement("c", 60, 120, latency_samples=(0.1,)))


def test_env_exposes_plain_data_for_conditions() -> None:
    """The condition environment holds numbers, None and plain dicts only."""
    env = Measurement(
        "c", 0, 60, requests=100, errors=2, latency_samples=(0.1,), counters={"orders": 3}
    ).env()
    assert env["error_rate"] == 0.02
    assert env["p99"] == 0.1
    assert env["counters"] == {"orders": 3}
    assert env["rss_bytes"] is None
    assert env["duration"] == 60
