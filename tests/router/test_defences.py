"""The router under attack and with sick backends: limits, timeouts, ejection and safe regexes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from gapless.loadgen import run_load
from gapless.router.config import (
    Backend,
    Limits,
    Route,
    RouteMatch,
    RouterConfig,
    StringMatch,
)
from gapless.router.exchange import Exchange
from gapless.router.reader import HeadTooLarge, RequestReader
from tests.router.backends import TestBackend
from tests.router.conftest import RouterHarness
from tests.router.test_process import RouterProcess, _free_port

MakeBackend = Callable[..., Awaitable[TestBackend]]
REPO = Path(__file__).resolve().parents[2]
APP = REPO / "examples" / "app.py"


def _low_open_file_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (600, 600))


async def test_slowloris_past_the_connection_limit_fails_no_request(
    tmp_path: Path, backends: MakeBackend
) -> None:
    """1,000 slowloris sockets against a router allowed 236 (open-file limit 600) fail no normal request."""
    b1 = await backends("b1")
    router = RouterProcess(tmp_path, _free_port(), secrets.token_hex(16))
    router.preexec = _low_open_file_limit
    attacker: subprocess.Popen[bytes] | None = None
    try:
        await router.start()
        config = RouterConfig(version=1, backends=(Backend(id="b1", port=b1.port, revision="a"),))
        await router.client.put_config(config)
        url = f"http://127.0.0.1:{router.port}/"
        attacker = subprocess.Popen(
            [sys.executable, "-m", "tests.router.slowloris", str(router.port), "1000", "6"],
            cwd=REPO,
            stdout=subprocess.PIPE,
        )
        await asyncio.sleep(1.5)  # the attack is in full swing before the clients come
        report = await run_load(url, rps=200, duration=4.0, timeout=5.0)
        stats = await router.client.stats()
        assert report.failed == 0, report.failures
        assert report.ok == 800
        assert stats.connections.limit == (600 - 128) // 2
        assert stats.connections.evicted > 500
        assert stats.connections.open <= stats.connections.limit
        out, _ = await asyncio.to_thread(attacker.communicate, timeout=20)
        assert json.loads(out)["closed_by_server"] > 500
    finally:
        if attacker is not None and attacker.poll() is None:
            attacker.kill()
            attacker.wait()
        await router.client.aclose()
        if router.proc is not None and router.proc.poll() is None:
            await router.stop()


class _Heads(RequestReader):
    """A request reader that keeps the exchanges it reads."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[Exchange] = []

    def _start(self, ex: Exchange) -> None:
        self.parsing = ex
        self.started.append(ex)


@pytest.mark.parametrize("slow_mode", [False, True])
def test_head_sent_one_byte_at_a_time_is_cut_at_the_limit(slow_mode: bool) -> None:
    """A head fed one byte at a time is refused just past the limit, in linear time, by both parsers."""
    reader = _Heads()
    reader.slow_mode = slow_mode
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 70_000
    started = time.perf_counter()
    fed = 0
    while fed < len(head):
        try:
            reader.read(head[fed : fed + 1])
        except HeadTooLarge:
            break
        fed += 1
    assert fed == reader.max_head  # the next byte was one too many
    assert time.perf_counter() - started < 2.0  # quadratic copying took minutes
    reader = _Heads()
    reader.slow_mode = slow_mode
    small = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    for i, byte in enumerate(small):
        reader.read(bytes([byte]))
        assert bool(reader.started) == (i == len(small) - 1)


async def _raw(url_port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", url_port)


async def test_partial_head_gets_408_and_idle_connection_is_closed(
    harness: RouterHarness, backends: MakeBackend
) -> None:
    """A head not finished within the header timeout gets a 408; a kept-alive connection closes when idle."""
    await harness.route([await backends("b1")], limits=Limits(header_timeout=0.5, idle_timeout=1.0))
    port = int(harness.router.listen.rpartition(":")[2])
    slow_r, slow_w = await _raw(port)
    idle_r, idle_w = await _raw(port)
    try:
        started = time.monotonic()
        slow_w.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        idle_w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answered = await asyncio.wait_for(idle_r.readuntil(b"hello from b1"), 2)
        assert answered.startswith(b"HTTP/1.1 200")
        assert (await asyncio.wait_for(slow_r.read(), 2)).startswith(b"HTTP/1.1 408 Request Timeout")
        assert 0.5 <= time.monotonic() - started < 1.2  # the timeout and a housekeeping period
        assert await asyncio.wait_for(idle_r.read(), 2) == b""
        assert 1.0 <= time.monotonic() - started < 2.0  # never early (tests/router/test_idle_clock.py)
        stats = harness.router.stats().connections
        assert (stats.header_timeouts, stats.idle_timeouts) == (1, 1)
    finally:
        # Closed even when an assertion fails: a transport left open fails later tests of the worker.
        slow_w.close()
        idle_w.close()


async def test_connection_limit_refuses_only_when_every_connection_is_busy(
    harness: RouterHarness, backends: MakeBackend
) -> None:
    """At the limit an idle connection makes room; with all busy the newcomer gets a 503 and a close."""
    b1 = await backends("b1")
    await harness.route([b1], limits=Limits(max_connections=2))
    port = int(harness.router.listen.rpartition(":")[2])
    idle_r, idle_w = await _raw(port)
    busy_r, busy_w = await _raw(port)
    busy_w.write(b"GET /stall HTTP/1.1\r\nHost: x\r\n\r\n")
    while harness.router.stats().revisions.get("a") is None:
        await asyncio.sleep(0.01)
    _, third_w = await _raw(port)
    assert await asyncio.wait_for(idle_r.read(), 2) == b""  # made room for the third
    third_w.write(b"GET /stall HTTP/1.1\r\nHost: x\r\n\r\n")
    while harness.router.stats().revisions["a"].in_flight < 2:
        await asyncio.sleep(0.01)
    fourth_r, fourth_w = await _raw(port)
    assert (await asyncio.wait_for(fourth_r.read(), 2)).startswith(b"HTTP/1.1 503")
    b1.release.set()
    assert (await asyncio.wait_for(busy_r.readuntil(b"}"), 2)).startswith(b"HTTP/1.1 200")
    stats = harness.router.stats().connections
    assert (stats.evicted, stats.refused) == (1, 1)
    for w in (idle_w, busy_w, third_w, fourth_w):
        w.close()


async def test_backtracking_regex_route_cannot_stall_the_router(
    harness: RouterHarness, backends: MakeBackend
) -> None:
    """A route regex like ^(a+)+$ runs in linear time: a flood of evil headers delays no other request."""
    a, b = await backends("a"), await backends("b")
    route = Route(
        match=(RouteMatch(header="X-User", value=StringMatch(regex="^(a+)+$")),),
        revision="b",
    )
    config = RouterConfig(
        version=1,
        backends=(Backend(id="a", port=a.port, revision="a"), Backend(id="b", port=b.port, revision="b")),
        weights={"a": 100, "b": 0},
        routes=(route,),
    )
    await harness.admin_client.put_config(config)
    evil = {"X-User": "a" * 26 + "!"}  # Python's re backtracks about 2**26 times: seconds per request

    async def flood() -> None:
        async with httpx.AsyncClient(base_url=harness.url, timeout=10) as http:
            for _ in range(200):
                assert (await http.get("/", headers=evil)).text == "hello from a"

    flooding = asyncio.create_task(flood())
    report = await run_load(harness.url + "/", rps=200, duration=2.0, timeout=3.0)
    await asyncio.wait_for(flooding, 10)
    assert report.failed == 0, report.failures
    assert report.latency.max is not None
    assert report.latency.max < 1.5  # with re, each evil header blocked the loop for seconds
    assert (await harness.http.get("/", headers={"X-User": "aaaa"})).text == "hello from b"


@contextlib.asynccontextmanager
async def _app_processes(n: int) -> AsyncIterator[list[tuple[subprocess.Popen[bytes], int]]]:
    """``n`` example services as real processes, each on a free port, killed at the end."""
    procs: list[tuple[subprocess.Popen[bytes], int]] = []
    try:
        for _ in range(n):
            port = _free_port()
            proc = subprocess.Popen(
                [sys.executable, str(APP), "--port", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs.append((proc, port))
        for _, port in procs:
            for _ in range(200):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                    break
                await asyncio.sleep(0.025)
        yield procs
    finally:
        for proc, _ in procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait()


async def test_stopped_instance_is_timed_out_retried_and_ejected(harness: RouterHarness) -> None:
    """A SIGSTOPped instance fails no GET: its requests are retried after the backend timeout, and it is ejected."""
    async with _app_processes(3) as apps:
        listed = [Backend(id=f"i{k}", port=port, revision="a") for k, (_, port) in enumerate(apps)]
        limits = Limits(backend_timeout=1.0, eject_after=2, ejection=30)
        await harness.push(listed, limits=limits)
        load = asyncio.create_task(run_load(harness.url + "/", rps=100, duration=5.0, timeout=4.0))
        await asyncio.sleep(1.0)
        os.kill(apps[0][0].pid, signal.SIGSTOP)
        report = await load
        stats = harness.router.stats()
    assert report.failed == 0, report.failures
    assert report.latency.max is not None
    assert report.latency.max < 1.0 + 0.5  # the timeout, a housekeeping period, and the retry
    stopped = stats.backends["i0"]
    assert stopped.ejected
    assert stopped.timeouts >= 2
    assert stats.backends["i1"].timeouts == 0


async def test_slow_backend_gets_504_for_post_and_get_after_every_attempt(
    harness: RouterHarness, backends: MakeBackend
) -> None:
    """A POST to a backend past its timeout gets a 504 (never replayed); a GET tried on every backend, too."""
    a, b = await backends("a"), await backends("b")
    await harness.route([a, b], limits=Limits(backend_timeout=0.3, eject_after=100))
    started = time.monotonic()
    r = await harness.http.post("/slow", params={"s": 2}, content=b"x")
    assert r.status_code == 504
    assert r.text == "no backend answered in time\n"
    assert 0.3 <= time.monotonic() - started < 0.9
    assert a.requests + b.requests == 1  # not replayed
    started = time.monotonic()
    r = await harness.http.get("/slow", params={"s": 2})
    assert r.status_code == 504
    assert 0.6 <= time.monotonic() - started < 1.8  # one timeout per backend
    assert a.requests + b.requests == 3
    stats = harness.router.stats()
    assert stats.backends["a"].timeouts + stats.backends["b"].timeouts == 3
    assert stats.revisions["a"].responses["5xx"] == 2
