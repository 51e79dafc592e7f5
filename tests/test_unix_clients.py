"""The clients of the control plane's and the router's APIs speak plain HTTP on a unix socket: no CA bundle.

A verifying httpx transport loads the certificate store when it is built, whether or not TLS is ever
used: 35 ms of CPU on every CLI command, and an error (swallowed by ``alive()`` as "not running") when
``SSL_CERT_FILE`` names a file that holds no certificate.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gapless.cli.client import ApiClient
from gapless.core.files import API_SOCKET, TOKEN_FILE
from gapless.router.client import RouterClient


@asynccontextmanager
async def _answering(path: Path) -> AsyncIterator[list[str]]:
    """A unix-socket HTTP server answering every request ``200 {"ok": true}``; the request lines it saw."""
    seen: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.split(b"\r\n", 1)[0].decode())
        body = b'{"ok": true}'
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(answer, path=str(path))
    async with server:
        yield seen


@pytest.fixture
def broken_ca_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SSL_CERT_FILE names a file without a certificate: building a verifying transport fails."""
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(bad))


@pytest.mark.usefixtures("broken_ca_bundle")
async def test_the_cli_reaches_the_control_plane_without_a_ca_bundle(tmp_path: Path) -> None:
    """`alive()` and a request answer through the socket however the CA bundle is set up."""
    state = tmp_path / "state"
    state.mkdir()
    (state / TOKEN_FILE).write_text("token\n")
    async with _answering(state / API_SOCKET) as seen, ApiClient(state) as client:
        assert await client.alive()
        assert await client.request("GET", "/api/v1/rollouts") == {"ok": True}
    assert seen == ["GET /healthz HTTP/1.1", "GET /api/v1/rollouts HTTP/1.1"]


@pytest.mark.usefixtures("broken_ca_bundle")
async def test_the_control_plane_reaches_its_router_without_a_ca_bundle(tmp_path: Path) -> None:
    """The router's admin client works through its socket however the CA bundle is set up."""
    socket = tmp_path / "router.sock"
    async with _answering(socket) as seen, RouterClient(socket, "token") as client:
        assert await client.healthz() == {"ok": True}
    assert seen == ["GET /healthz HTTP/1.1"]
