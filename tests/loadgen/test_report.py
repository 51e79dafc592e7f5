"""Reports as data: exact nearest-rank percentiles and a JSON layout scripts can rely on."""

from __future__ import annotations

import dataclasses
import json

import pytest
from rich.console import Console

from gapless.loadgen import LatencySummary, LoadReport, render_report
from gapless.loadgen.report import percentile

JSON_KEYS = [
    "schema",
    "url",
    "method",
    "target_rps",
    "achieved_rps",
    "duration",
    "send_window",
    "elapsed",
    "stopped_early",
    "timeout",
    "max_in_flight",
    "version_header",
    "sent",
    "ok",
    "failed",
    "failures",
    "status_codes",
    "latency",
    "scheduled_latency",
    "versions",
    "version_latency",
]
SUMMARY_KEYS = ["count", "p50", "p95", "p99", "max"]


def make_report() -> LoadReport:
    """A report with failures and two versions, as a run would build it."""
    return LoadReport(
        url="http://127.0.0.1:8080/",
        method="GET",
        target_rps=100.0,
        duration=2.0,
        elapsed=2.1,
        send_window=2.0,
        stopped_early=False,
        timeout=5.0,
        max_in_flight=1000,
        version_header="X-Version",
        sent=200,
        ok=190,
        failed=10,
        failures={"overload": 2, "connect_refused": 3, "status_503": 5},
        status_codes={503: 5, 200: 190},
        latency=LatencySummary.of([0.001 * i for i in range(1, 196)]),
        scheduled_latency=LatencySummary.of([0.002 * i for i in range(1, 196)]),
        versions={"v2": 90, "v1": 100},
        version_latency={"v2": LatencySummary.of([0.01] * 90), "v1": LatencySummary.of([0.02] * 100)},
    )


@pytest.mark.parametrize(
    ("samples", "q", "expected"),
    [
        ([5.0], 50, 5.0),
        ([5.0], 99, 5.0),
        ([1.0, 2.0], 50, 1.0),
        ([1.0, 2.0], 51, 2.0),
        ([float(i) for i in range(1, 101)], 50, 50.0),
        ([float(i) for i in range(1, 101)], 95, 95.0),
        ([float(i) for i in range(1, 101)], 99, 99.0),
        ([float(i) for i in range(1, 101)], 100, 100.0),
        ([float(i) for i in range(1, 11)], 99, 10.0),
    ],
)
def test_percentile_is_nearest_rank(samples: list[float], q: float, expected: float) -> None:
    """The q-th percentile is the smallest sample with at least q% of samples at or below it."""
    assert percentile(samples, q) == expected


def test_empty_summary_has_no_percentiles() -> None:
    """With no samples every percentile is None rather than a made-up zero."""
    assert LatencySummary.of([]) == LatencySummary(count=0, p50=None, p95=None, p99=None, max=None)


def test_summary_sorts_its_samples() -> None:
    """Samples may arrive in any order; max is the largest and p50 the middle one."""
    summary = LatencySummary.of([0.3, 0.1, 0.2])
    assert (summary.count, summary.p50, summary.max) == (3, 0.2, 0.3)


def test_json_keys_are_stable() -> None:
    """to_json has exactly the documented keys, in order, and round-trips through json."""
    data = make_report().to_json()
    assert list(data) == JSON_KEYS
    assert data["schema"] == "gapless.load/v1"
    for key in ("latency", "scheduled_latency"):
        assert list(data[key]) == SUMMARY_KEYS
    assert all(list(s) == SUMMARY_KEYS for s in data["version_latency"].values())
    assert json.loads(json.dumps(data)) == data


def test_json_maps_are_sorted_and_codes_are_strings() -> None:
    """Failure kinds, status codes and versions come out sorted; codes are strings as JSON requires."""
    data = make_report().to_json()
    assert list(data["failures"]) == ["connect_refused", "overload", "status_503"]
    assert data["status_codes"] == {"200": 190, "503": 5}
    assert list(data["versions"]) == ["v1", "v2"]
    assert list(data["version_latency"]) == ["v1", "v2"]
    assert data["achieved_rps"] == pytest.approx(99.0)


def test_rendered_table_lists_every_failure_kind() -> None:
    """The text report shows each failure kind with its count and each version."""
    console = Console(width=120, record=True)
    console.print(render_report(make_report()))
    text = console.export_text()
    for needle in ("connect_refused", "overload", "status_503", "version v1", "version v2", "99.0/s"):
        assert needle in text


@pytest.mark.parametrize("version", ["[/]", "[bold]v3", "v[2]", "[link=x]y"])
def test_a_version_that_looks_like_markup_is_shown_as_it_is(version: str) -> None:
    """Version values come from the server's header: text, never rich markup (``[/]`` raised before)."""
    report = dataclasses.replace(make_report(), versions={version: 5}, version_latency={})
    console = Console(width=120, record=True)
    console.print(render_report(report))
    assert f"version {version}" in console.export_text()
