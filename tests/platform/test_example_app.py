"""The example app itself: HTTP/1.1 keep-alive, its endpoints, and enough throughput for the demo."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

from gapless.platform import LocalPlatform
from tests.platform.support import app_command, make_spec, wait_http


def exchange(sock: socket.socket, path: str) -> tuple[str, dict[str, str], bytes]:
    """Send one GET on an open keep-alive connection and read exactly one response by Content-Length."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the response headers"
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers["content-length"])
    while len(body) < length:
        body += sock.recv(65536)
    assert len(body) == length, "more bytes than Content-Length: the next response would be corrupt"
    return status, headers, body


def hammer(port: int, seconds: float) -> tuple[int, list[str]]:
    """Requests of / answered on one keep-alive connection within ``seconds``, and the statuses seen."""
    statuses = set()
    count = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            status, _, _ = exchange(sock, "/")
            statuses.add(status)
            count += 1
    return count, sorted(statuses)


async def test_endpoints_share_one_keep_alive_connection(platform: LocalPlatform, tmp_path: Path) -> None:
    """/, /slow, /healthz, /livez and a 404 are all answered on one HTTP/1.1 connection."""
    handle = await platform.start(make_spec(tmp_path, app_command("--version", "v2", "--never-ready")))
    await wait_http(handle.port)

    def run() -> list[tuple[str, dict[str, str], bytes]]:
        with socket.create_connection(("127.0.0.1", handle.port)) as sock:
            return [exchange(sock, p) for p in ("/", "/slow?ms=50", "/healthz", "/livez", "/nope", "/")]

    responses = await asyncio.to_thread(run)
    statuses = [status.split()[1] for status, _, _ in responses]
    assert statuses == ["200", "200", "503", "200", "404", "200"]
    assert responses[0][2] == b"hello from v2\n"
    assert responses[0][1]["x-version"] == "v2"
    assert responses[1][2] == b"slept 50 ms in v2\n"
    assert all(status.startswith("HTTP/1.1 ") for status, _, _ in responses)


async def test_app_serves_500_requests_per_second_on_keep_alive(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """One keep-alive connection gets well over 500 answered requests per second."""
    handle = await platform.start(make_spec(tmp_path, app_command()))
    await wait_http(handle.port)
    count, statuses = await asyncio.to_thread(hammer, handle.port, 1.0)
    assert statuses == ["HTTP/1.1 200 OK"]
    assert count >= 500


async def test_idle_keep_alive_connection_does_not_delay_shutdown(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """An idle keep-alive connection is closed on SIGTERM instead of holding the app open."""
    handle = await platform.start(make_spec(tmp_path, app_command()))
    await wait_http(handle.port)
    with socket.create_connection(("127.0.0.1", handle.port)) as sock:
        await asyncio.to_thread(exchange, sock, "/")
        result = await platform.stop(handle, pre_stop=None, grace_seconds=5)
        assert sock.recv(1) == b""  # the app closed it
    assert not result.killed
    assert result.seconds < 1.0
