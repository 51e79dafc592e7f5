"""Argo Rollouts' run rules: limits per metric, early conclusion, dry runs, stopping from outside."""

from __future__ import annotations

import pytest

from gapless.analysis.run import MAX_KEPT_MEASUREMENTS, MetricProgress, record, run_phase, stop
from gapless.analysis.verdict import Verdict


def feed(p: MetricProgress, phases: str) -> MetricProgress:
    names = {"s": "successful", "f": "failed", "i": "inconclusive", "e": "error", "r": "running"}
    for i, c in enumerate(phases):
        p = record(p, Verdict(names[c], {"x": i}, f"m{i}"), float(i))  # type: ignore[arg-type]
    return p


@pytest.mark.parametrize(
    ("settings", "phases", "expected"),
    [
        ({"count": 3}, "sss", "successful"),
        ({"count": 3}, "ss", "running"),
        ({"count": 3}, "sf", "failed"),
        ({"count": 3, "failure_limit": 1}, "sfs", "successful"),
        ({"count": 5, "failure_limit": 1}, "sfsf", "failed"),
        ({"count": 3}, "si", "inconclusive"),
        ({"count": 3, "inconclusive_limit": 2}, "iis", "successful"),
        ({"count": 9}, "eeee", "running"),
        ({"count": 9}, "eeeee", "error"),
        ({"count": 9}, "eeeseeee", "running"),
        ({"count": 9, "consecutive_error_limit": 0}, "e", "error"),
        ({"count": None}, "s" * 50, "running"),
        ({"count": 10, "concludes": True}, "rrs", "successful"),
        ({"count": 3, "concludes": True}, "rrr", "inconclusive"),
        ({"count": None, "concludes": True}, "rrrf", "failed"),
    ],
)
def test_metric_phase(settings: dict[str, object], phases: str, expected: str) -> None:
    assert feed(MetricProgress("m", **settings), phases).phase == expected  # type: ignore[arg-type]


def test_done_metric_ignores_later_verdicts_and_keeps_a_bounded_history() -> None:
    p = feed(MetricProgress("m", count=None), "s" * (MAX_KEPT_MEASUREMENTS + 5))
    assert p.measured == MAX_KEPT_MEASUREMENTS + 5
    assert len(p.measurements) == MAX_KEPT_MEASUREMENTS
    assert p.measurements[-1]["value"] == {"x": MAX_KEPT_MEASUREMENTS + 4}
    failed = feed(MetricProgress("m", count=5), "f")
    assert feed(failed, "sss") == failed
    assert "1 failed measurement(s) (limit 0): m0" in failed.message


def test_json_round_trip() -> None:
    p = feed(MetricProgress("m", count=4, dry_run=True), "sf")
    assert MetricProgress.from_json(p.to_json()) == p


def test_run_phase_rules() -> None:
    ok = feed(MetricProgress("a", count=1), "s")
    running = MetricProgress("b", count=2)
    bad = feed(MetricProgress("c", count=2), "f")
    unsure = feed(MetricProgress("d", count=2), "i")
    broken = feed(MetricProgress("e", count=9, consecutive_error_limit=0), "e")
    assert run_phase([ok, running])[0] == "running"
    assert run_phase([ok, running, bad]) == ("failed", f"c: {bad.message}")
    assert run_phase([ok, broken])[0] == "error"
    assert run_phase([ok, unsure])[0] == "inconclusive"
    assert run_phase([ok, running, unsure])[0] == "running"
    assert run_phase([ok]) == ("successful", "all metrics passed (a)")
    dry_bad = feed(MetricProgress("c", count=2, dry_run=True), "f")
    assert run_phase([ok, dry_bad])[0] == "successful"


def test_stop_ends_running_metrics_successfully_but_keeps_verdicts() -> None:
    running = feed(MetricProgress("a", count=None), "ss")
    stopped = stop(running, "rollout completed")
    assert stopped.phase == "successful"
    assert stopped.message == "rollout completed after 2 measurements"
    bad = feed(MetricProgress("b", count=None), "f")
    assert stop(bad, "x") == bad


def test_stop_before_the_required_measurements_is_not_successful() -> None:
    """A metric stopped before its count (an abort at 0 measurements) ends inconclusive, never successful."""
    aborted = stop(MetricProgress("a", count=3), "stopped: no longer needed by the rollout")
    assert aborted.phase == "inconclusive"
    assert "0 of 3 measurements" in aborted.message
    assert run_phase([aborted])[0] == "inconclusive"
    short = stop(feed(MetricProgress("b", count=3), "ss"), "stopped")
    assert short.phase == "inconclusive"
    assert stop(MetricProgress("c", count=None), "stopped").phase == "inconclusive"
    assert stop(feed(MetricProgress("d", count=3), "s"), "stopped").message.endswith(
        "1 of 3 measurements: no verdict"
    )
