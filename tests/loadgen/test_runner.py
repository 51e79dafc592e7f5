"""run_load against real servers on 127.0.0.1: exact counts, every failure kind, versions, stopping."""

from __future__ import annotations

import asyncio
import time

import pytest

from gapless.loadgen import LoadReport, LoadSnapshot, run_load
from tests.loadgen.server import LocalServer


def assert_consistent(report: LoadReport) -> None:
    """The invariants every report keeps, whatever happened."""
    assert report.sent == report.ok + report.failed
    assert sum(report.failures.values()) == report.failed
    assert sum(report.versions.values()) == report.ok
    assert sum(report.status_codes.values()) == report.latency.count
    assert report.latency.count == report.scheduled_latency.count


async def test_counts_are_exact_at_200_rps(server: LocalServer) -> None:
    """Three seconds at 200 rps sends exactly 600 requests and matches the server's own counts."""
    report = await run_load(server.url("/every/5/503"), rps=200, duration=3)
    assert_consistent(report)
    assert report.sent == 600
    assert not report.stopped_early
    assert report.ok == server.responses[200] == 480
    assert report.failures == {"status_503": 120} == {"status_503": server.responses[503]}
    assert report.status_codes == {200: 480, 503: 120}
    assert report.achieved_rps == pytest.approx(200, rel=0.02)
    assert 2.95 <= report.elapsed < 3.5  # perf_counter vs the schedule: sub-ms early is fine
    assert server.connections < 50, "keep-alive connections are reused"


async def test_latency_percentiles_are_ordered_and_scheduled_latency_is_not_smaller(
    server: LocalServer,
) -> None:
    """Latency from the due time is never below latency from the start, and p50 <= p95 <= p99 <= max."""
    report = await run_load(server.url("/slow/0.05"), rps=40, duration=0.25)
    assert_consistent(report)
    assert report.ok == 10
    ordered: list[list[float]] = []
    for summary in (report.latency, report.scheduled_latency):
        assert summary.count == 10
        values = [summary.p50, summary.p95, summary.p99, summary.max]
        assert all(v is not None for v in values)
        ordered.append([v for v in values if v is not None])
    for values in ordered:
        assert (
            0.045 <= values[0] <= values[1] <= values[2] <= values[3] < 1.0
        )  # server sleeps 50 ms; clocks differ slightly
    latency, scheduled = ordered
    assert all(s >= a for a, s in zip(latency, scheduled, strict=True))


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/status/500", "status_500"),
        ("/status/404", "status_404"),
        ("/close", "connection_closed"),
        ("/reset", "connection_reset"),
        ("/hang", "timeout"),
    ],
)
async def test_each_failure_kind_is_counted(server: LocalServer, path: str, kind: str) -> None:
    """Every request to a failing path is counted as a failure of its own kind, none as ok or lost."""
    report = await run_load(server.url(path), rps=100, duration=0.1, timeout=0.2)
    assert_consistent(report)
    assert report.sent == 10
    assert report.ok == 0
    assert report.failures == {kind: 10}
    assert report.versions == {}


async def test_refused_connections_are_counted(refused_port: int) -> None:
    """Requests to a port nothing listens on all fail as connect_refused."""
    report = await run_load(f"http://127.0.0.1:{refused_port}/", rps=100, duration=0.1)
    assert_consistent(report)
    assert report.failures == {"connect_refused": 10}
    assert report.latency.count == 0
    assert report.latency.p50 is None


async def test_requests_beyond_the_cap_fail_as_overload(server: LocalServer) -> None:
    """With three requests hanging, every further due request is counted as an overload failure."""
    report = await run_load(server.url("/hang"), rps=100, duration=0.1, timeout=0.3, max_in_flight=3)
    assert_consistent(report)
    assert report.sent == 10
    assert report.failures == {"timeout": 3, "overload": 7}
    assert report.achieved_rps == pytest.approx(3 / 0.1)


async def test_versions_are_counted_from_the_header(server: LocalServer) -> None:
    """Ok responses are counted per X-Version value, switching mid-run, with latency per version."""
    load = asyncio.create_task(run_load(server.url("/ok"), rps=100, duration=0.4))
    await asyncio.sleep(0.2)
    server.version = "v2"
    report = await load
    assert_consistent(report)
    assert report.ok == 40
    assert set(report.versions) == {"v1", "v2"}
    assert all(n >= 10 for n in report.versions.values())
    assert set(report.version_latency) == {"v1", "v2"}
    assert sum(s.count for s in report.version_latency.values()) == 40


async def test_missing_version_header_counts_as_unknown(server: LocalServer) -> None:
    """A response without the version header is counted under "unknown"."""
    report = await run_load(server.url("/noversion"), rps=100, duration=0.1)
    assert report.versions == {"unknown": 10}


async def test_version_header_name_is_configurable(server: LocalServer) -> None:
    """Another header name can be counted; responses without it count as "unknown"."""
    report = await run_load(server.url("/v/blue"), rps=100, duration=0.1, version_header="x-version")
    assert report.versions == {"blue": 10}
    report = await run_load(server.url("/v/blue"), rps=100, duration=0.1, version_header="X-Revision")
    assert report.versions == {"unknown": 10}


@pytest.mark.parametrize("path", ["/chunked", "/eof", "/connection-close"])
async def test_response_framings_are_read_as_ok(server: LocalServer, path: str) -> None:
    """Chunked, close-delimited and Connection: close responses all complete as ok."""
    report = await run_load(server.url(path), rps=100, duration=0.1)
    assert_consistent(report)
    assert report.ok == 10, report.failures
    assert report.versions == {"v1": 10}


async def test_head_requests_do_not_wait_for_a_body(server: LocalServer) -> None:
    """A HEAD response whose Content-Length announces a body completes at its headers."""
    report = await run_load(server.url("/ok"), rps=100, duration=0.1, method="head", timeout=1)
    assert report.ok == 10, report.failures
    assert report.method == "HEAD"


async def test_stop_event_ends_the_run_early(server: LocalServer) -> None:
    """Setting stop ends scheduling at once and the report still balances."""
    stop = asyncio.Event()
    started = time.perf_counter()
    load = asyncio.create_task(run_load(server.url("/ok"), rps=100, duration=60, stop=stop))
    await asyncio.sleep(0.3)
    stop.set()
    report = await load
    assert time.perf_counter() - started < 1.0
    assert_consistent(report)
    assert report.stopped_early
    assert 20 <= report.sent <= 45
    assert report.send_window < 0.5
    assert report.achieved_rps == pytest.approx(100, rel=0.2)


async def test_stop_set_before_start_sends_nothing(server: LocalServer) -> None:
    """A stop event that is already set yields an empty, balanced report."""
    stop = asyncio.Event()
    stop.set()
    report = await run_load(server.url("/ok"), rps=100, duration=10, stop=stop)
    assert report.sent == report.ok == report.failed == 0
    assert server.connections == 0


async def test_progress_snapshots_balance_and_end_with_the_final_counts(server: LocalServer) -> None:
    """on_progress gets a snapshot about every 0.5 s, each balanced, the last equal to the report."""
    snapshots: list[LoadSnapshot] = []
    report = await run_load(server.url("/every/2/503"), rps=50, duration=1.1, on_progress=snapshots.append)
    assert len(snapshots) == 3  # at 0.5 s, 1.0 s and the final one
    for snapshot in snapshots:
        assert snapshot.sent == snapshot.ok + snapshot.failed + snapshot.in_flight
    assert [s.sent for s in snapshots] == sorted(s.sent for s in snapshots)
    assert snapshots[0].elapsed == pytest.approx(0.5, abs=0.1)
    assert snapshots[0].current_rps == pytest.approx(50, rel=0.3)
    last = snapshots[-1]
    assert (last.sent, last.ok, last.failed, last.in_flight) == (report.sent, report.ok, report.failed, 0)
    assert last.failures == report.failures == {"status_503": 27}


async def test_progress_callback_errors_propagate(server: LocalServer) -> None:
    """An exception raised by on_progress aborts the run instead of being swallowed."""

    def explode(snapshot: LoadSnapshot) -> None:
        raise RuntimeError("display broke")

    with pytest.raises(RuntimeError, match="display broke"):
        await run_load(server.url("/ok"), rps=20, duration=5, on_progress=explode)


async def test_localhost_name_is_accepted(server: LocalServer) -> None:
    """A URL naming localhost resolves to loopback and is loaded like an address."""
    report = await run_load(f"http://localhost:{server.port}/ok", rps=100, duration=0.1)
    assert report.ok == 10, report.failures
