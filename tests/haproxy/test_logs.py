"""HAProxy's request log read into per-revision latency histograms: hostile lines never crash the reader."""

from __future__ import annotations

import asyncio
import http.server
import resource
import subprocess
import threading
from pathlib import Path

import httpx
from hypothesis import given
from hypothesis import strategies as st

from gapless.haproxy.config import HaproxyConfig, render
from gapless.haproxy.logs import LatencyBook, LogLine, LogReader, parse_line
from gapless.router.config import Backend
from gapless.router.stats import LATENCY_BOUNDS, quantile
from tests.e2e.harness import free_port
from tests.haproxy.binary import require_haproxy

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
