"""Window measurements from two real ``RouterStats`` snapshots, counted by the router's own counters."""

from __future__ import annotations

import pytest

from gapless.analysis import Measurement
from gapless.providers.router import window_measurements
from gapless.router.counters import RevisionCounters
from gapless.router.stats import LATENCY_BOUNDS, RouterStats


def serve(counters: RevisionCounters, status: int, seconds: float, n: int = 1, body: int = 0) -> None:
    """Count ``n`` responses the way the router's data path does."""
    for _ in range(n):
        counters.requests += 1
        counters.bytes_out += body
        counters.bytes_in += body // 2
        counters.record(status, seconds)


def snapshot(*revisions: RevisionCounters, version: int = 1) -> RouterStats:
    return RouterStats(
        name="edge", config_version=version, revisions={c.name: c.snapshot() for c in revisions}
    )


def test_window_is_the_counter_delta_between_snapshots() -> None:
    """Requests, errors, bytes and latency of a window are what changed between the two polls."""
    stable = RevisionCounters("stable")
    serve(stable, 200, 0.010, n=50, body=100)
    serve(stable, 503, 2.0, n=5)
    before = snapshot(stable)
    serve(stable, 200, 0.100, n=90, body=1000)
    serve(stable, 500, 0.300, n=10, body=10)
    serve(stable, 404, 0.020, n=4)
    after = snapshot(stable)

    m = window_measurements(before, after, 100.0, 160.0)["stable"]

    assert (m.revision, m.start, m.end) == ("stable", 100.0, 160.0)
    assert m.requests == 104
    assert m.errors == 10
    assert m.bytes_out == 90 * 1000 + 10 * 10
    assert m.bytes_in == 90 * 500 + 10 * 5
    assert m.latency is not None
    assert m.latency.bounds == LATENCY_BOUNDS
    assert m.latency.total == 104
    # None of the ten 2-second-class responses from before the window is in it:
    assert m.latency.count_above(m.latency.bound_at_or_above(0.31)) == 0
    assert m.p50 == pytest.approx(0.100, rel=0.05)
    assert m.quantile(0.95) == pytest.approx(0.300, rel=0.05)


def test_error_classes_choose_what_counts_as_an_error() -> None:
    """Error classes select response classes; an unknown class is refused instead of counting zero."""
    counters = RevisionCounters("r")
    serve(counters, 200, 0.01, n=10)
    serve(counters, 429, 0.01, n=3)
    serve(counters, 502, 0.01, n=2)
    after = snapshot(counters)

    assert window_measurements(None, after, 0, 1)["r"].errors == 2
    assert window_measurements(None, after, 0, 1, error_classes=("4xx", "5xx"))["r"].errors == 5
    assert window_measurements(None, after, 0, 1, error_classes=("4xx",))["r"].errors == 3
    assert window_measurements(None, after, 0, 1, error_classes=())["r"].errors == 0
    with pytest.raises(ValueError, match="5XX"):
        window_measurements(None, after, 0, 1, error_classes=("5XX",))


def test_new_revision_counts_from_zero() -> None:
    """A revision that first appears in the later snapshot counts everything it has."""
    stable, canary = RevisionCounters("stable"), RevisionCounters("canary")
    serve(stable, 200, 0.01, n=20)
    before = snapshot(stable)
    serve(stable, 200, 0.01, n=5)
    serve(canary, 200, 0.05, n=7, body=10)
    serve(canary, 500, 0.05, n=1)
    after = snapshot(stable, canary, version=2)

    window = window_measurements(before, after, 0, 10)

    assert set(window) == {"stable", "canary"}
    assert window["stable"].requests == 5
    assert (window["canary"].requests, window["canary"].errors) == (8, 1)
    assert window["canary"].bytes_out == 70
    assert window_measurements(None, after, 0, 10)["stable"].requests == 25


def test_revision_gone_from_the_later_snapshot_is_left_out() -> None:
    """Only revisions of the later snapshot are measured."""
    old, new = RevisionCounters("old"), RevisionCounters("new")
    serve(old, 200, 0.01, n=3)
    before = snapshot(old)
    serve(new, 200, 0.01, n=2)
    assert set(window_measurements(before, snapshot(new), 0, 1)) == {"new"}


def test_router_restart_counts_the_revision_from_zero() -> None:
    """When any counter went backwards the router restarted, and the later snapshot is the window."""
    first_life = RevisionCounters("stable")
    serve(first_life, 200, 0.01, n=1000, body=100)
    serve(first_life, 500, 0.01, n=50)
    before = snapshot(first_life)
    second_life = RevisionCounters("stable")  # the restarted router counts afresh
    serve(second_life, 200, 0.02, n=30, body=100)
    serve(second_life, 500, 0.02, n=3)
    after = snapshot(second_life)

    m = window_measurements(before, after, 0, 5)["stable"]

    assert (m.requests, m.errors, m.bytes_out) == (33, 3, 3000)
    assert m.latency is not None
    assert m.latency.total == 33


def test_one_counter_going_back_is_enough_to_reset() -> None:
    """Even if the restarted router already served more requests, a smaller byte count reveals it."""
    first_life = RevisionCounters("r")
    serve(first_life, 200, 0.01, n=10, body=10_000)
    before = snapshot(first_life)
    second_life = RevisionCounters("r")
    serve(second_life, 200, 0.01, n=20, body=10)
    m = window_measurements(before, snapshot(second_life), 0, 1)["r"]
    assert (m.requests, m.bytes_out) == (20, 200)


def test_quiet_window_has_no_requests_and_an_empty_histogram() -> None:
    """A window without traffic measures zero requests, so its error rate is no evidence."""
    counters = RevisionCounters("r")
    serve(counters, 500, 0.01, n=4)
    stats = snapshot(counters)
    m = window_measurements(stats, stats, 0, 30)["r"]
    assert (m.requests, m.errors, m.error_rate) == (0, 0, None)
    assert m.latency is not None
    assert m.latency.total == 0


def test_windows_merge_into_the_whole_span() -> None:
    """Consecutive windows merged equal one window over both, bytes included."""
    counters = RevisionCounters("r")
    snaps = []
    for status, n in ((200, 10), (500, 2), (200, 7)):
        serve(counters, status, 0.03, n=n, body=64)
        snaps.append(snapshot(counters))
    first = window_measurements(snaps[0], snaps[1], 10, 20)["r"]
    second = window_measurements(snaps[1], snaps[2], 20, 30)["r"]
    whole = window_measurements(snaps[0], snaps[2], 10, 30)["r"]

    merged = first.merge(second)

    assert (merged.requests, merged.errors, merged.bytes_in, merged.bytes_out) == (
        whole.requests,
        whole.errors,
        whole.bytes_in,
        whole.bytes_out,
    )
    assert merged.latency == whole.latency
    assert merged.env()["bytes_out"] == 9 * 64
    assert isinstance(merged, Measurement)
