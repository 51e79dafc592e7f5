"""HAProxy's request log, followed in its ring, read into per-revision latency histograms: hostile lines
never crash the reader, and every numbered line is either read once or counted as lost."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import resource
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
from gapless.haproxy.logs import (
    REORDER_WINDOW,
    LatencyBook,
    LineSequence,
    LogLine,
    RingReader,
    parse_line,
)
from gapless.platform.local import LocalPlatform
from gapless.router.config import Backend
from gapless.router.stats import LATENCY_BOUNDS, quantile
from tests.haproxy.binary import require_haproxy
from tests.ports import free_port

servers = st.from_regex(r"[A-Za-z0-9_:-]{1,8}\.[A-Za-z0-9_.:-]{1,8}", fullmatch=True)
timer = st.integers(-1, 86_400_000)


@given(st.binary(max_size=600))
def test_any_line_is_counted_never_raised(data: bytes) -> None:
    """Arbitrary bytes: parsed, or counted as malformed, unrouted or a notice; never an exception."""
    book = LatencyBook()
    book.add(data)
    assert book.lines + book.notices == 1


@given(st.one_of(st.none(), st.integers(1, 10**18)), servers, st.integers(100, 599), timer, timer)
def test_a_line_of_the_format_round_trips(
    seq: int | None, server: str, status: int, active: int, response: int
) -> None:
    """A line HAProxy writes in gapless's format is read back field by field."""
    number = "-" if seq is None else str(seq)
    line = f"gl2 {number} {server} {status} {active} {response}\n".encode()
    assert parse_line(line) == LogLine(seq, server, status, active, response)


def test_haproxys_own_messages_are_notices() -> None:
    """A proxy stopping and HAProxy's note of lines it could not write are not requests."""
    book = LatencyBook()
    book.add(b"Proxy gapless stopped (cumulated conns: FE: 60, BE: 0).")
    book.add(b"1 event dropped")
    book.add(b"34617 events dropped")
    assert (book.notices, book.announced_dropped, book.lines) == (3, 34618, 0)


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[int, list[int]]:
    """Numbers 1..n in an order a ring delivers: each a little late at most, some lost, some read twice."""
    n = draw(st.integers(0, 400))
    order = list(range(1, n + 1))
    for i in range(len(order) - 1):  # neighbours swapped: two threads writing in the other order
        if draw(st.integers(0, 9)) == 0:
            order[i], order[i + 1] = order[i + 1], order[i]
    kept = [x for x in order if draw(st.integers(0, 5)) > 0]
    again = draw(st.lists(st.sampled_from(kept), max_size=20)) if kept else []
    return n, kept + again


@given(arrivals())
def test_every_number_is_read_once_or_lost(case: tuple[int, list[int]]) -> None:
    """Lines read once plus lines lost plus lines still awaited cover every number up to the highest;
    a line read again is never counted twice; after ``finish`` nothing is awaited."""
    _, seen = case
    seq = LineSequence()
    accepted = sum(seq.accept(x) for x in seen)
    distinct = len(set(seen))
    assert accepted == distinct
    assert seq.duplicates == len(seen) - distinct
    top = max(seen, default=0)
    assert accepted + seq.lost + seq.awaited == top
    seq.finish()
    assert seq.awaited == 0
    assert accepted + seq.lost == top
    assert seq.lost == top - distinct


def test_a_late_line_within_the_window_is_not_lost() -> None:
    """A line arriving after later ones, within ``REORDER_WINDOW``, is counted and not lost; beyond it,
    the gap counts as lost and the late line as a duplicate (it was already given up)."""
    seq = LineSequence()
    assert seq.accept(2)
    assert (seq.lost, seq.awaited) == (0, 1)
    assert seq.accept(1)
    assert (seq.lost, seq.awaited) == (0, 0)
    far = 3 + REORDER_WINDOW + 10
    assert seq.accept(far)
    assert seq.lost == 10
    assert not seq.accept(3)
    assert seq.duplicates == 1


def test_a_worker_found_running_counts_from_its_first_line_read() -> None:
    """Lines before the first read of a worker this control plane did not start are not counted lost."""
    seq = LineSequence(start=None)
    assert seq.accept(5000)
    assert seq.accept(5001)
    assert (seq.lost, seq.awaited) == (0, 0)


@given(st.lists(st.integers(0, 5000), min_size=1, max_size=200))
def test_histogram_counts_each_request_in_its_bucket(ms: list[int]) -> None:
    """Each request lands in the bucket whose bounds hold n + 0.5 ms; sum and count add up; quantiles are near."""
    book = LatencyBook()
    for m in ms:
        book.add(f"gl2 - v2.i-1 200 {m} {m}".encode())
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
        b"gl",
        b"gl2",
        b"gl1 1 v1.a 200 1 1",
        b"gl2 v1.a 200 1 1",
        b"gl2 1 v1.a 200 1",
        b"gl2 1 v1.a 200 1 1 1",
        b"gl2 1 v1.a two 1 1",
        b"gl2 1 v1.a 200 1.5 1",
        b"gl2 1 v1.a 200 -2 1",
        b"gl2 1 v1.a 200 99999999999999 1",
        b"gl2 1 v1.a 200 \xff 1",
        b"gl2 1 v1.a 200 1 1" + b" " * 600,
        b"gl2 1  200 1 1",
        b"gl2 0 v1.a 200 1 1",
        b"gl2 x v1.a 200 1 1",
    ):
        book.add(bad)
    assert book.malformed == 15
    book.add(b"gl2 - <NOSRV> 400 0 -1")
    book.add(b"gl2 7 v1.a 502 -1 -1")
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


def _haproxy(
    tmp_path: Path, servers: dict[str, tuple[Backend, int]], **kw: object
) -> tuple[int, subprocess.Popen[bytes]]:
    """A real HAProxy of gapless's configuration (request log in the ring) in ``tmp_path``; its port."""
    port = free_port()
    cfg = tmp_path / "h.cfg"
    cfg.write_text(
        render(
            HaproxyConfig(
                rollout="web",
                listen=f"127.0.0.1:{port}",
                runtime_socket="unix@h.sock",
                servers=servers,
                request_log=True,
                open_files=resource.getrlimit(resource.RLIMIT_NOFILE)[1],
                **kw,  # type: ignore[arg-type]
            )
        )
    )
    proc = subprocess.Popen(
        [require_haproxy(), "-W", "-db", "-f", str(cfg)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return port, proc


async def _wait_listening(port: int) -> None:
    for _ in range(250):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        return
    raise AssertionError(f"HAProxy does not listen on {port}")


async def test_real_haproxy_logs_reach_the_book(tmp_path: Path) -> None:
    """A real HAProxy logs every request into its ring and the reader follows it: one count per request
    with its number, at about 20 ms, none lost."""
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    backend = Backend(id="i-1", port=upstream.server_address[1], revision="v7")
    port, proc = _haproxy(tmp_path, {"v7.i-1": (backend, 1)})
    reader = RingReader(tmp_path / "h.sock")
    try:
        await _wait_listening(port)
        reader.expect_new()
        await reader.follow()
        assert reader.worker is not None
        async with httpx.AsyncClient() as client:
            for _ in range(30):
                r = await client.get(f"http://127.0.0.1:{port}/")
                assert r.status_code == 200
        for _ in range(100):
            if reader.book.revisions.get("v7") and reader.book.revisions["v7"].count >= 30:
                break
            await asyncio.sleep(0.02)
        rev = reader.book.revisions["v7"]
        assert rev.count == 30
        assert (reader.book.malformed, reader.lost) == (0, 0)
        assert reader.wakeups <= 31
        p50 = quantile(0.5, LATENCY_BOUNDS, rev.counts)
        assert p50 is not None
        assert 0.018 <= p50 <= 0.060, p50
    finally:
        reader.close()
        proc.kill()
        proc.wait()
        upstream.shutdown()
        upstream.server_close()


def _reference(data: bytes) -> tuple[str, str | None, int | None]:
    """What the full parser makes of one line: (kind, revision, active ms)."""
    if not data.startswith(b"gl"):
        return "notice", None, None
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
            lambda q, s, st_, a, r, nl: f"gl2 {q} {s} {st_} {a} {r}{nl}".encode(),
            st.one_of(st.integers(-2, 10**19), st.just("-"), st.text(max_size=3)),
            st.one_of(servers, st.text(max_size=12)),
            st.integers(-5, 1200),
            edges,
            edges,
            st.sampled_from(["", "\n", "\n\n", " "]),
        ),
        st.binary(max_size=80),
    )
)
@example(b"gl2 1 v1.i 200 -1 -1")
@example(b"gl2 1 v1.i 200 10000000 1")
@example(b"gl2 1 v1.i 200 3 2\n\n")
@example(b"gl2 1 v1..i 200 3 2")
@example(b"gl2 1 .i 200 3 2")
@example(b"gl2 01 v1.i 200 3 2")
@example(b"gl2 1000000000000000000 v1.i 200 3 2")
def test_the_fast_path_agrees_with_the_parser(data: bytes) -> None:
    """The regular expression for usual lines classifies every line as ``parse_line`` does."""
    book = LatencyBook()
    book.add(data)
    kind, revision, active = _reference(data)
    assert book.lines + book.notices == 1
    if kind == "counted":
        assert revision is not None
        assert active is not None
        rev = book.revisions[revision]
        assert rev.count == 1
        assert abs(rev.total_seconds - (active + 0.5) / 1000) < 1e-9
    else:
        assert book.revisions == {}
        counts = {"malformed": (1, 0, 0), "unrouted": (0, 1, 0), "notice": (0, 0, 1)}
        assert (book.malformed, book.unrouted, book.notices) == counts[kind]


def test_sampling_renders_a_random_rule() -> None:
    """One in N: a random pick per request tracked for the line's number, the others ``silent`` (not
    HAProxy's every-Nth); every request tracked for N = 1; bounds checked."""
    b = Backend(id="i-1", port=8000, revision="v1")
    base = HaproxyConfig(
        rollout="web",
        listen="127.0.0.1:1",
        runtime_socket="unix@h.sock",
        servers={"v1.i-1": (b, 1)},
        request_log=True,
    )
    lines = render(base).splitlines()
    assert "    http-request track-sc0 int(0)" in lines
    assert "set-log-level" not in render(base)
    lines = render(replace(base, log_sampling=10)).splitlines()
    assert "    http-request track-sc0 int(0) if { rand(10) eq 0 }" in lines
    assert "    http-request set-log-level silent unless { sc0_tracked }" in lines
    assert "    log ring@gl len 512 format raw local0 info" in lines
    assert " sample " not in "\n".join(lines)
    for bad in (0, MAX_SAMPLING + 1):
        with pytest.raises(ValueError, match="log sampling"):
            render(replace(base, log_sampling=bad))
    assert "ring gl" not in render(replace(base, request_log=False))


_LONG = "r" * 60
"""A long revision name: lines of about 150 bytes fill HAProxy's buffers with fewer requests."""


async def _blast(port: int, requests: int, connections: int = 4) -> int:
    """Send ``requests`` GETs over ``connections`` kept-alive connections, pipelined; the 200s received."""

    async def one(n: int) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ok = 0
        try:
            for start in range(0, n, 50):
                batch = min(50, n - start)
                writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * batch)
                await writer.drain()
                got = 0
                buf = b""
                while got < batch:
                    chunk = await asyncio.wait_for(reader.read(65536), 10)
                    assert chunk, "HAProxy closed the connection"
                    buf += chunk
                    got = buf.count(b"HTTP/1.1 ")
                ok += buf.count(b"HTTP/1.1 200")
        finally:
            writer.close()
        return ok

    share = [requests // connections + (i < requests % connections) for i in range(connections)]
    return sum(await asyncio.gather(*(one(n) for n in share)))


async def _fast_upstream() -> asyncio.Server:
    """A small keep-alive HTTP server answering every request at once (fast enough to fill buffers)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def test_lines_the_ring_overwrote_are_counted_lost(tmp_path: Path) -> None:
    """Nobody follows a small ring while 1,500 requests are logged: the reader, attached afterwards to
    the worker it started, reads what the ring kept and counts every other line as lost, exactly."""
    upstream = await _fast_upstream()
    backend = Backend(id="i-1", port=upstream.sockets[0].getsockname()[1], revision=_LONG)
    port, proc = _haproxy(tmp_path, {f"{_LONG}.i-1": (backend, 1)}, ring_bytes=16384)
    reader = RingReader(tmp_path / "h.sock")
    try:
        await _wait_listening(port)
        assert await _blast(port, 1500) == 1500
        reader.expect_new()
        await reader.follow()
        for _ in range(50):
            await asyncio.sleep(0.02)
        read = reader.book.revisions[_LONG].count
        assert 10 < read < 1500
        assert reader.book.lines == read
        reader.close()  # the worker is not followed any more: what its numbers still await is lost
        assert read + reader.lost == 1500
    finally:
        reader.close()
        proc.kill()
        proc.wait()
        await asyncio.sleep(0.1)  # the upstream's connections end with HAProxy
        upstream.close()


async def test_a_slow_reader_loses_lines_and_counts_them(tmp_path: Path) -> None:
    """A reader attached but not reading while 8,000 requests are logged: HAProxy cannot write what does
    not fit (it says so in the ring), and lines read plus lines counted lost are exactly the requests;
    lines read again after a reconnection are not counted twice."""
    upstream = await _fast_upstream()
    backend = Backend(id="i-1", port=upstream.sockets[0].getsockname()[1], revision=_LONG)
    port, proc = _haproxy(tmp_path, {f"{_LONG}.i-1": (backend, 1)}, ring_bytes=16384)
    reader = RingReader(tmp_path / "h.sock")
    loop = asyncio.get_running_loop()
    try:
        await _wait_listening(port)
        reader.expect_new()
        await reader.follow()
        stream = reader._current
        assert stream is not None
        loop.remove_reader(stream.sock.fileno())  # the reader is stuck: nothing is read
        assert await _blast(port, 8000) == 8000
        assert reader.book.lines == 0
        loop.add_reader(stream.sock.fileno(), reader._drain, stream)
        assert await _blast(port, 10) == 10  # HAProxy notes its drops with the next line it can write
        for _ in range(100):
            await asyncio.sleep(0.02)
            if reader.book.lines + reader.lost >= 8010:
                break
        read = reader.book.revisions[_LONG].count
        assert read < 8010
        assert reader.lost > 0
        assert read + reader.lost + reader._sequences[stream.pid].awaited == 8010
        assert reader.book.announced_dropped > 0
        # The stream ends while the worker lives: the reader opens another and reads the ring again.
        reader._close(stream)
        await reader.follow()
        await asyncio.sleep(0.3)
        assert reader.book.revisions[_LONG].count == read
        assert reader._sequences[stream.pid].duplicates > 0
        reader.close()
        assert read + reader.lost == 8010
    finally:
        reader.close()
        proc.kill()
        proc.wait()
        await asyncio.sleep(0.1)  # the upstream's connections end with HAProxy
        upstream.close()


async def test_a_sampled_burst_matches_the_stats_and_nothing_is_lost(tmp_path: Path) -> None:
    """A real HAProxy run by the controller logging one request in 4: the lines read per revision are
    near a quarter of ``show stat``'s requests (a binomial bound), none lost; after a reload the new
    worker's lines are followed too."""
    ups = [await _fast_upstream() for _ in range(2)]
    state = (tmp_path / "s").resolve()
    state.mkdir()
    routers = HaproxyRouters(state, LocalPlatform(state, state_id="test"))
    port = free_port()
    try:
        await routers.ensure(
            "web", f"127.0.0.1:{port}", router=RouterChoice("haproxy", require_haproxy(), latency_sampling=4)
        )
        backends = [
            Backend(id=f"i{i}", port=u.sockets[0].getsockname()[1], revision=rev)
            for i, (u, rev) in enumerate(zip(ups, ("v1", "v2"), strict=True))
        ]
        await routers.set_backends("web", backends, Routing(weights={"v1": 1, "v2": 1}))
        url = f"http://127.0.0.1:{port}/"

        async def load(n: int) -> None:
            async with httpx.AsyncClient() as client:
                for _ in range(n):
                    r = await client.get(url)
                    assert r.status_code == 200

        await load(2000)
        await asyncio.sleep(0.2)
        stats = await routers.stats("web")
        assert stats is not None
        rlog = routers.request_log("web")
        assert rlog is not None
        assert rlog.sampling == 4
        assert rlog.dropped == 0
        for rev in ("v1", "v2"):
            n = stats.revisions[rev].requests
            got = stats.revisions[rev].latency_count
            sigma = (n * 0.25 * 0.75) ** 0.5
            assert abs(got - n / 4) <= 5 * sigma, (rev, n, got, rlog)
        before = rlog.lines
        old_worker = routers._logs["web"].worker
        # A reload (changed sampling): the new worker's ring is followed, the old stream let go.
        await routers.ensure(
            "web", f"127.0.0.1:{port}", router=RouterChoice("haproxy", require_haproxy(), latency_sampling=1)
        )
        assert routers._logs["web"].worker not in (None, old_worker)
        await load(200)
        await asyncio.sleep(0.2)
        await routers.stats("web")
        rlog = routers.request_log("web")
        assert rlog is not None
        assert rlog.lines == before + 200, rlog
        assert rlog.dropped == 0
        assert rlog.status()["linesDropped"] == 0
    finally:
        await routers.remove("web")
        await asyncio.sleep(0.1)  # the upstreams' connections end with HAProxy
        for u in ups:
            u.close()
