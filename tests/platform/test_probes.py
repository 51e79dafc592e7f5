"""Probe and handler actions against real sockets and processes; failures are results, never raised."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gapless.platform.probes import run_handler, run_probe
from gapless.spec.models import PreStopHandler, Probe
from tests.platform.support import pid_alive, tiny_http, wait_for
from tests.ports import free_port


def probe(document: dict[str, object]) -> Probe:
    """A probe from its YAML form."""
    return Probe.model_validate(document)


async def test_http_probe_succeeds_on_2xx_and_3xx_with_headers() -> None:
    """An httpGet probe succeeds on 200 and 302, sends the configured path and headers to the port."""
    for status in (200, 302):
        async with tiny_http(status=status) as server:
            spec = probe(
                {"httpGet": {"path": "/healthz?deep=1", "httpHeaders": [{"name": "X-Probe", "value": "y"}]}}
            )
            result = await run_probe(spec, port=server.port, env={})
        assert result.success, result.message
        assert f"HTTP {status}" in result.message
        [seen] = server.seen
        assert seen["line"] == "GET /healthz?deep=1 HTTP/1.1"
        assert seen["x-probe"] == "y"
        assert seen["connection"] == "close"


async def test_http_probe_uses_an_explicit_port() -> None:
    """httpGet.port overrides the instance port."""
    async with tiny_http() as server:
        result = await run_probe(probe({"httpGet": {"port": server.port}}), port=free_port(), env={})
    assert result.success, result.message


async def test_http_probe_fails_on_5xx_with_the_body() -> None:
    """An httpGet probe fails on 503 and says so with the start of the body."""
    async with tiny_http(status=503, body=b"warming up") as server:
        result = await run_probe(probe({"httpGet": {"path": "/healthz"}}), port=server.port, env={})
    assert not result.success
    assert "HTTP 503" in result.message
    assert "warming up" in result.message


async def test_http_probe_times_out() -> None:
    """An httpGet probe whose server answers too late fails after timeoutSeconds."""
    async with tiny_http(delay=3) as server:
        began = time.monotonic()
        result = await run_probe(probe({"httpGet": {}, "timeoutSeconds": 0.3}), port=server.port, env={})
        elapsed = time.monotonic() - began
    assert not result.success
    assert "no response within 0.3s" in result.message
    assert elapsed < 1.0


async def test_http_probe_fails_on_refused_connection() -> None:
    """An httpGet probe of a port nobody listens on is a failed result, not an exception."""
    result = await run_probe(probe({"httpGet": {}}), port=free_port(), env={})
    assert not result.success
    assert "ConnectError" in result.message


async def test_http_probe_ignores_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY in the environment does not redirect a probe of the instance."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NO_PROXY", "")
    async with tiny_http() as server:
        result = await run_probe(probe({"httpGet": {}}), port=server.port, env={})
    assert result.success, result.message


async def test_tcp_probe_success_and_failure() -> None:
    """A tcpSocket probe succeeds when the port accepts and fails when it refuses."""
    async with tiny_http() as server:
        ok = await run_probe(probe({"tcpSocket": {}}), port=server.port, env={})
    refused = await run_probe(probe({"tcpSocket": {}}), port=free_port(), env={})
    assert ok.success, ok.message
    assert not refused.success
    assert "TCP 127.0.0.1:" in refused.message


async def test_exec_probe_success_sees_env() -> None:
    """An exec probe runs its argv with the given environment; exit 0 is success."""
    spec = probe({"exec": {"command": ["sh", "-c", 'test "$PORT" = 4321 && echo fine']}})
    result = await run_probe(spec, port=4321, env={"PORT": "4321", "PATH": "/usr/bin:/bin"})
    assert result.success, result.message
    assert "fine" in result.message


async def test_exec_probe_failure_reports_status_and_output() -> None:
    """An exec probe exiting non-zero fails with its status and output."""
    spec = probe({"exec": {"command": ["sh", "-c", "echo broken >&2; exit 3"]}})
    result = await run_probe(spec, port=1, env={"PATH": "/usr/bin:/bin"})
    assert not result.success
    assert "exit status 3" in result.message
    assert "broken" in result.message


async def test_exec_probe_missing_program_is_a_failed_result() -> None:
    """An exec probe whose program does not exist fails without raising."""
    result = await run_probe(probe({"exec": {"command": ["gapless-no-such-probe"]}}), port=1, env={})
    assert not result.success
    assert "cannot run" in result.message


async def test_exec_probe_timeout_kills_its_process_group(tmp_path: Path) -> None:
    """An exec probe that outlives timeoutSeconds fails, and its whole process group is killed."""
    pidfile = tmp_path / "helper.pid"
    script = f"sleep 30 & echo $! > {pidfile}; wait"
    spec = probe({"exec": {"command": ["sh", "-c", script]}, "timeoutSeconds": 0.3})
    began = time.monotonic()
    result = await run_probe(spec, port=1, env={"PATH": "/usr/bin:/bin"})
    assert time.monotonic() - began < 1.5
    assert not result.success
    assert "did not finish within 0.3s" in result.message
    helper = int(pidfile.read_text())
    await wait_for(lambda: not pid_alive(helper), timeout=2, what="the helper to be killed")


async def test_sleep_handler_is_bounded_by_the_timeout() -> None:
    """A preStop sleep longer than the time left is cut short and reported as such."""
    handler = PreStopHandler.model_validate({"sleep": {"seconds": 10}})
    began = time.monotonic()
    result = await run_handler(handler, port=1, env={}, timeout=0.2)
    assert time.monotonic() - began < 0.5
    assert not result.success
    assert "cut short" in result.message


async def test_http_probe_survives_hostile_peers() -> None:
    """Resets, early closes, garbage and half answers, 200 times over: each a failed result, never raised."""
    import asyncio
    import socket
    import struct

    behaviours = [b"reset", b"close", b"garbage\r\n\r\n", b"HTTP/1.1 200", b"HTTP/1.1 200 OK\r\n\r\n"]
    count = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        what = behaviours[count % len(behaviours)]
        count += 1
        sock = writer.get_extra_info("socket")
        if what == b"reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif what != b"close":
            writer.write(what)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        results = await asyncio.gather(
            *(run_probe(probe({"httpGet": {}, "timeoutSeconds": 2}), port=port, env={}) for _ in range(200))
        )
    assert all(isinstance(r.success, bool) for r in results)
    assert any(r.success for r in results)
    assert not all(r.success for r in results)


async def test_an_unexpected_error_of_the_http_client_is_a_failed_probe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The HTTP client raising what it should not (here a stand-in for httpcore's AttributeError on a
    connection closed under it) fails the probe instead of ending the instance's prober."""
    import httpx

    def broken(*args: object, **kwargs: object) -> object:
        raise AttributeError("'NoneType' object has no attribute 'getpeername'")

    monkeypatch.setattr(httpx.AsyncClient, "stream", broken)
    result = await run_probe(probe({"httpGet": {}}), port=free_port(), env={})
    assert not result.success
    assert "AttributeError" in result.message
