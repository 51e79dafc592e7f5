"""HAProxy's request log read into per-revision latency histograms: hostile lines never crash the reader."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import resource
import socket
import subprocess
import threading
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gapless.controller.haproxy import HaproxyRouters
from gapless.controller.traffic import RouterChoice, Routing
from gapless.haproxy.config import MAX_SAMPLING, HaproxyConfig, parse_server_name, render
from gapless.haproxy.logs import LatencyBook, LogLine, LogReader, parse_line
from gapless.platform.local import LocalPlatform
from gapless.router.config import Backend
from gapless.router.stats import LATENCY_BOUNDS, quantile
from tests.haproxy.binary import require_haproxy
from tests.ports import free_port

servers = st.from_regex(r"[A-Za-z0-9_:-]{1,8}\.[A-Za-z0-9_.:-]{1,8}", fullmatch=True)
timer = st.integers(-1, 86_400_000)


@given(st.binary(max_size=600))
def test_any_datagram_is_counted_never_raised(data: bytes) -> None:
    """Arbitrary bytes: parsed or counted as malformed or unrouted, never an exception, never a negative bucket."""
    book = LatencyBook()
    book.add(data)
    assert book.malformed + book.unrouted + sum(r.count for r in book.revisions.values()) == 1


@given(servers, st.integers(100, 599), timer, timer)
def test_a_line_of_the_format_round_trips(server: str, status: int, active: int, response: int) -> None:
    """A line HAProxy writes in gapless's format is read back field by field."""
    line = f"gl1 {server} {status} {active} {response}\n".encode()
    assert parse_line(line) == LogLine(server, status, active, response)


@given(st.lists(st.integers(0, 5000), min_size=1, max_size=200))
def test_histogram_counts_each_request_in_its_bucket(ms: list[int]) -> None:
    """Each request lands in the bucket whose bounds hold n + 0.5 ms; sum and count add up; quantiles are near."""
    book = LatencyBook()
    for m in ms:
        book.add(f"gl1 v2.i-1 200 {m} {m}".encode())
    rev = book.revisions["v2"]
    assert rev.count == len(ms) == sum(rev.counts)
    assert abs(rev.total_seconds - sum((m + 0.5) / 1000 for m in ms)) < 1e-6
    for m in ms:
        i = next(i for i, b in enumerate(LATENCY_BOUNDS) if b >= (m + 0.5) / 1000)
        assert rev.counts[i] > 0
    p = quantile(1.0, LATENCY_BOUNDS, rev.counts)
    assert p is not None
    assert abs(p - (max(ms) + 0.5) / 1000) <= 0.05 * (max(ms) + 0.5) / 1000 + 1e-9


def test_malformed_and_unrouted_lines() -> None:
    """Wrong tag, field count, numbers, sizes, <NOSRV> or no timing: counted apart, no revision touched."""
    book = LatencyBook()
    for bad in (
        b"",
        b"gl1",
        b"gl2 v1.a 200 1 1",
        b"gl1 v1.a 200 1",
        b"gl1 v1.a 200 1 1 1",
        b"gl1 v1.a two 1 1",
        b"gl1 v1.a 200 1.5 1",
        b"gl1 v1.a 200 -2 1",
        b"gl1 v1.a 200 99999999999999 1",
        b"gl1 v1.a 200 \xff 1",
        b"gl1 v1.a 200 1 1" + b" " * 600,
        b"gl1  200 1 1",
    ):
        book.add(bad)
    assert book.malformed == 12
    book.add(b"gl1 <NOSRV> 503 0 -1")
    book.add(b"gl1 v1.a 502 -1 -1")
    assert book.unrouted == 2
    assert book.revisions == {}


class _Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        import time

        time.sleep(0.02)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


async def test_real_haproxy_logs_reach_the_book(tmp_path: Path) -> None:
    """A real HAProxy logs every request to the reader's socket: one count per request, at about 20 ms."""
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    backend = Backend(id="i-1", port=upstream.server_address[1], revision="v7")
    reader = LogReader(tmp_path / "h.log.sock")
    await reader.start()
    assert (reader.path.stat().st_mode & 0o777) == 0o600
    cfg = tmp_path / "h.cfg"
    cfg.write_text(
        render(
            HaproxyConfig(
                rollout="web",
                listen=f"127.0.0.1:{port}",
                runtime_socket="unix@h.sock",
                servers={"v7.i-1": (backend, 1)},
                log_socket="unix@h.log.sock",
                open_files=resource.getrlimit(resource.RLIMIT_NOFILE)[1],
            )
        )
    )
    proc = subprocess.Popen(
        [require_haproxy(), "-W", "-db", "-f", str(cfg)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(250):
                try:
                    await client.get(f"http://127.0.0.1:{port}/")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.02)
            for _ in range(30):
                r = await client.get(f"http://127.0.0.1:{port}/")
                assert r.status_code == 200
        for _ in range(100):
            if reader.book.revisions.get("v7") and reader.book.revisions["v7"].count >= 31:
                break
            await asyncio.sleep(0.02)
        rev = reader.book.revisions["v7"]
        assert rev.count == 31
        assert reader.book.malformed == 0
        p50 = quantile(0.5, LATENCY_BOUNDS, rev.counts)
        assert p50 is not None
        assert 0.018 <= p50 <= 0.060, p50
    finally:
        proc.kill()
        proc.wait()
        reader.close()
        upstream.shutdown()
        upstream.server_close()
    assert not reader.path.exists()


def _reference(data: bytes) -> tuple[str, str | None, int | None]:
    """What the full parser makes of one datagram: (kind, revision, active ms)."""
    line = parse_line(data)
    if line is None:
        return "malformed", None, None
    parsed = parse_server_name(line.server)
    if parsed is None or line.active_ms < 0:
        return "unrouted", None, None
    return "counted", parsed[0], line.active_ms


edges = st.one_of(
    st.sampled_from([-3, -2, -1, 0, 1, 9_999_999, 10_000_000, 86_400_000, 86_400_001]),
    st.integers(-3, 99_999_999),
)
"""Timers around the fast path's and the parser's limits."""


@given(
    st.one_of(
        st.builds(
            lambda s, st_, a, r, nl: f"gl1 {s} {st_} {a} {r}{nl}".encode(),
            st.one_of(servers, st.text(max_size=12)),
            st.integers(-5, 1200),
            edges,
            edges,
            st.sampled_from(["", "\n", "\n\n", " "]),
        ),
        st.binary(max_size=80),
    )
)
@example(b"gl1 v1.i 200 -1 -1")
@example(b"gl1 v1.i 200 10000000 1")
@example(b"gl1 v1.i 200 3 2\n\n")
@example(b"gl1 v1..i 200 3 2")
@example(b"gl1 .i 200 3 2")
def test_the_fast_path_agrees_with_the_parser(data: bytes) -> None:
    """The regular expression for usual lines classifies every datagram as ``parse_line`` does."""
    book = LatencyBook()
    book.add(data)
    kind, revision, active = _reference(data)
    assert book.lines == 1
    if kind == "counted":
        assert revision is not None
        assert active is not None
        rev = book.revisions[revision]
        assert rev.count == 1
        assert abs(rev.total_seconds - (active + 0.5) / 1000) < 1e-9
    else:
        assert book.revisions == {}
        assert (book.malformed, book.unrouted) == ((1, 0) if kind == "malformed" else (0, 1))


async def test_a_burst_is_read_in_batches(tmp_path: Path) -> None:
    """Datagrams queued while the loop was busy are read in one wakeup each, none lost."""
    reader = LogReader(tmp_path / "b.sock")
    await reader.start()
    try:
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sender.setblocking(False)
        sent = 0
        for _ in range(200):  # the loop does not run in between: the kernel queue fills
            try:
                sender.sendto(b"gl1 v1.i 200 3 2", str(reader.path))
            except BlockingIOError:
                break
            sent += 1
        assert sent >= 5
        for _ in range(100):
            await asyncio.sleep(0.01)
            if reader.book.lines >= sent:
                break
        assert reader.book.revisions["v1"].count == sent
        assert reader.wakeups < sent  # several datagrams per wakeup
        sender.close()
    finally:
        reader.close()
    assert not reader.path.exists()


def test_sampling_renders_a_random_rule() -> None:
    """One in N: a random ``silent`` level per request (not HAProxy's every-Nth), none for N = 1, bounds checked."""
    b = Backend(id="i-1", port=8000, revision="v1")
    base = HaproxyConfig(
        rollout="web",
        listen="127.0.0.1:1",
        runtime_socket="unix@h.sock",
        servers={"v1.i-1": (b, 1)},
        log_socket="unix@l.sock",
    )
    assert "set-log-level" not in render(base)
    text = render(replace(base, log_sampling=10))
    assert "    http-request set-log-level silent if { rand(10) gt 0 }" in text.splitlines()
    assert " sample " not in text
    for bad in (0, MAX_SAMPLING + 1):
        with pytest.raises(ValueError, match="log sampling"):
            render(replace(base, log_sampling=bad))


async def test_a_sampled_burst_matches_the_stats_and_drops_are_counted(tmp_path: Path) -> None:
    """A real HAProxy logging one request in 4: the lines read per revision are near a quarter of
    ``show stat``'s requests (a binomial bound), and lines lost while nobody reads are counted by
    HAProxy (``DroppedLogs``) and reported by the controller, never silently missing."""
    ups = []
    for _ in range(2):
        u = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Fast)
        threading.Thread(target=u.serve_forever, daemon=True).start()
        ups.append(u)
    state = (tmp_path / "s").resolve()
    state.mkdir()
    routers = HaproxyRouters(state, LocalPlatform(state, state_id="test"))
    port = free_port()
    try:
        await routers.ensure(
            "web", f"127.0.0.1:{port}", router=RouterChoice("haproxy", require_haproxy(), latency_sampling=4)
        )
        backends = [
            Backend(id=f"i{i}", port=u.server_address[1], revision=rev)
            for i, (u, rev) in enumerate(zip(ups, ("v1", "v2"), strict=True))
        ]
        await routers.set_backends("web", backends, Routing(weights={"v1": 1, "v2": 1}))
        url = f"http://127.0.0.1:{port}/"
        sent = 0
        async with httpx.AsyncClient() as client:
            for _ in range(2000):
                r = await client.get(url)
                assert r.status_code == 200
                sent += 1
        await asyncio.sleep(0.2)
        stats = await routers.stats("web")
        assert stats is not None
        rlog = routers.request_log("web")
        assert rlog is not None
        assert rlog.sampling == 4
        for rev in ("v1", "v2"):
            n = stats.revisions[rev].requests
            got = stats.revisions[rev].latency_count
            sigma = (n * 0.25 * 0.75) ** 0.5
            assert abs(got + 0 - n / 4) <= 5 * sigma + rlog.dropped, (rev, n, got, rlog)
        assert rlog.lines + rlog.dropped >= 0.2 * sent
        # Nobody reads: the kernel queue fills and HAProxy counts what it could not send.
        reader = routers._logs["web"]
        loop = asyncio.get_running_loop()
        assert reader._sock is not None
        loop.remove_reader(reader._sock.fileno())
        read_before = reader.book.lines
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                await client.get(url)
        stats = await routers.stats("web")
        rlog = routers.request_log("web")
        assert rlog is not None
        assert reader.book.lines == read_before
        assert rlog.dropped > 0, rlog
        assert rlog.status()["linesDropped"] == rlog.dropped
        assert 0 < rlog.dropped_share < 1
    finally:
        await routers.remove("web")
        for u in ups:
            u.shutdown()
            u.server_close()


class _Fast(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):
            super().handle()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass
